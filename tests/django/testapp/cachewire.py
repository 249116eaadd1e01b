"""Rules of the test app, found by autodiscovery like an ``admin`` module."""

from __future__ import annotations

import time

from cachewire import Rule, TaskContext, cached, task
from cachewire_django import DjangoCacheAdapter

# Kept across a reload (see conftest._test_app_rules).
CALLS: dict[str, int] = globals().get("CALLS", {})


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


@cached(
    partition=["customer_id"],
    invalidates_on=[Rule(model="testapp.Order", field_mapping={"customer_id": "customer_id"})],
)
def orders_of(customer_id: int) -> int:
    _count("orders_of")
    return customer_id


@cached(
    partition=["customer_id"],
    invalidates_on=[Rule(model="testapp.Order", field_mapping={"customer_id": "customer.pk"})],
)
def totals_of(customer_id: int) -> int:
    _count("totals_of")
    return customer_id


@cached(
    partition=["city"],
    invalidates_on=[Rule(model="testapp.Place", field_mapping={"city": "city"})],
)
def places_in(city: str) -> str:
    _count("places_in")
    return city


@cached(
    partition=["post_id"],
    invalidates_on=[Rule(model="testapp.Post", field_mapping={"post_id": "id"})],
)
def post_page(post_id: int) -> int:
    _count("post_page")
    return post_id


@cached(
    partition=["tag_id"],
    invalidates_on=[Rule(model="testapp.Post_tags", field_mapping={"tag_id": "tag_id"})],
)
def posts_with_tag(tag_id: int) -> int:
    _count("posts_with_tag")
    return tag_id


@cached(
    partition=["label"],
    invalidates_on=[Rule(model="testapp.Watched", field_mapping={"label": "label"})],
)
def watched(label: str) -> str:
    _count("watched")
    return label


@cached(
    DjangoCacheAdapter("redis", key_prefix="e2e"),
    partition=["board_id"],
    invalidates_on=[
        Rule(
            model="testapp.Ticket",
            field_mapping={"board_id": "board_id"},
            dispatcher="django_q",
            dispatcher_config={"group": "cachewire-tests"},
        )
    ],
)
def board(board_id: int) -> int:
    _count("board")
    return CALLS["board"]


@cached(
    partition=["owner"],
    invalidates_on=[Rule(model="testapp.Note", field_mapping={"owner": "customer"})],
)
def notes_of(owner: int) -> int:
    return owner


def is_published(article: object) -> bool:
    return getattr(article, "status", None) == "published"


@cached(
    partition=["section"],
    invalidates_on=[
        Rule(
            model="testapp.Article",
            field_mapping={"section": "section"},
            watch_fields=["section", "status"],
            condition=is_published,
        )
    ],
)
def section_page(section: str) -> str:
    _count("section_page")
    return section


@cached(
    partition=["section"],
    invalidates_on=[
        Rule(
            model="testapp.Article",
            field_mapping={"section": "section"},
            events=["create", "delete"],
        )
    ],
)
def section_count(section: str) -> str:
    _count("section_count")
    return section


@task(name="testapp.slow", dispatcher="django_q", timeout=1)
def slow(seconds: float) -> str:
    """Runs on the django-q cluster; django-q stops it after its 1 s timeout."""
    time.sleep(seconds)
    return "finished"


@task(name="testapp.add", dispatcher="django_q", bind=True)
def add(context: TaskContext, a: int, b: int) -> dict[str, object]:
    return {"sum": a + b, "worker": context.worker_id, "uuid": context.uuid}
