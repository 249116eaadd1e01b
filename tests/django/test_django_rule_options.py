"""Rule options (events, watch_fields, condition) through Django saves, with captured old values."""

from __future__ import annotations

from typing import Any

import pytest
from cwdj_support import invalidated, transactional
from testapp.models import Article

pytestmark = [transactional()]

NAMES = ("section_page", "section_count")


def sent(recorded: Any) -> set[Any]:
    return invalidated(recorded, only=NAMES)


def test_watch_fields_work_without_update_fields(recorded: Any) -> None:
    """drf-restflow bug 3.3.3: a plain save() never fired a watched rule."""
    Article.objects.create(section="news", status="published")
    article = Article.objects.get()
    recorded.clear()
    article.views = 10
    article.save()  # no watched field changed
    assert sent(recorded) == set()
    article.status = "archived"
    article.save()  # watched, and it was published: the old state invalidates
    assert sent(recorded) == {("section_page", (("section", "news"),))}


def test_update_fields_narrow_the_watch(recorded: Any) -> None:
    article = Article.objects.create(section="news", status="published")
    recorded.clear()
    article.section = "sport"
    article.save(update_fields=["views"])  # the section change is not saved
    assert sent(recorded) == set()


def test_watch_and_condition_are_both_applied(recorded: Any) -> None:
    """drf-restflow bug 3.3.2: a watched change skipped invalidate_when."""
    Article.objects.create(section="news", status="draft")
    article = Article.objects.get()
    recorded.clear()
    article.section = "sport"
    article.save()  # watched field changed, but a draft is on no page
    assert sent(recorded) == set()


def test_a_condition_sees_rows_enter_and_leave(recorded: Any) -> None:
    Article.objects.create(section="news", status="draft")
    article = Article.objects.get()
    recorded.clear()
    article.status = "published"
    article.save()
    assert sent(recorded) == {("section_page", (("section", "news"),))}
    recorded.clear()
    article.status = "draft"
    article.section = "sport"
    article.save()  # leaves the news page (old state published), enters nothing
    assert sent(recorded) == {("section_page", (("section", "news"),))}


def test_events_choose_what_fires(recorded: Any) -> None:
    article = Article.objects.create(section="news")
    assert ("section_count", (("section", "news"),)) in sent(recorded)
    recorded.clear()
    article.views = 3
    article.save()
    assert sent(recorded) == set()
    article.delete()
    assert sent(recorded) == {("section_count", (("section", "news"),))}


@pytest.mark.parametrize("deferred", [True, False])
def test_old_values_of_deferred_fields_are_read_before_the_save(
    recorded: Any, deferred: bool
) -> None:
    Article.objects.create(section="news", status="published")
    query = Article.objects.only("views") if deferred else Article.objects.all()
    article = query.get()
    recorded.clear()
    article.section = "sport"
    article.save()
    assert sent(recorded) == {
        ("section_page", (("section", "news"),)),
        ("section_page", (("section", "sport"),)),
    }
