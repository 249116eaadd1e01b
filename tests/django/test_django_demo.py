"""The Django part of ``cachewire demo`` runs the example shop end to end."""

from __future__ import annotations

import io

import pytest

from cachewire_django import demo


@pytest.mark.timeout(120)
def test_the_demo_runs_the_example_shop() -> None:
    out = io.StringIO()
    assert demo.run(out) == 0, out.getvalue()
    text = out.getvalue()
    assert "9 requests computed: category_listing, category_listing, product_card" in text
    # Moving a product invalidates the old and the new category.
    moved = text.split("Hammer moved")[1].split("a product created")[0]
    assert "cachewire.category_listing(category_id=1)" in moved
    assert "cachewire.category_listing(category_id=2)" in moved
    assert "rolled back\n    invalidated (nothing)" in text
    assert "Garden now lists ['Hammer', 'Rake']" in text
