"""The Django part of ``cachewire demo`` runs the example shop end to end, then its durable
path through the queue."""

from __future__ import annotations

import io

import pytest

from cachewire_django import demo


@pytest.fixture(scope="module")
def demo_output() -> str:
    out = io.StringIO()
    assert demo.run(out) == 0, out.getvalue()
    return out.getvalue()


@pytest.mark.timeout(120)
def test_the_demo_runs_the_example_shop(demo_output: str) -> None:
    text = demo_output
    assert "9 requests computed: category_listing, category_listing, product_card" in text
    # Moving a product invalidates the old and the new category.
    moved = text.split("Hammer moved")[1].split("a product created")[0]
    assert "cachewire.category_listing(category_id=1)" in moved
    assert "cachewire.category_listing(category_id=2)" in moved
    assert "rolled back\n    invalidated (nothing)" in text
    assert "Garden now lists ['Hammer', 'Rake']" in text


@pytest.mark.timeout(120)
def test_the_demo_shows_the_durable_path(demo_output: str) -> None:
    text = demo_output
    durable = text.split("Durable: the db dispatcher")[1].split("Durable: schedule()")[0]
    lines = [line.strip() for line in durable.splitlines()]
    # The rule work is a job inside the transaction; a rollback takes it away.
    assert "inside the transaction, jobs queued: ['cachewire.rules']" in lines
    assert "after a rollback, jobs queued: none" in lines
    assert "after the commit, jobs queued: ['cachewire.rules']" in lines
    # Until a worker runs the job, the page is the cached one; then it is recomputed.
    assert "Saw on the Tools page before a worker ran: 20.00 (still cached)" in lines
    assert "manage.py flush_queue: ran 1 job(s), 0 failed" in lines
    assert "Saw on the Tools page after it: 19.00 (recomputed: category_listing)" in lines
    scheduled = text.split("Durable: schedule()")[1]
    assert "scheduled catalog.restock_report as job 2, state ready" in scheduled
    assert "manage.py flush_queue: ran 1 job(s), 0 failed" in scheduled
    assert "restock report of category 1: 1 product(s); job 2 is done, result 1" in scheduled
    assert "health() states: {'done': 2}" in scheduled
