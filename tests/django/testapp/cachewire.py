"""Rules of the test app, found by autodiscovery like an ``admin`` module."""

from __future__ import annotations

from cachewire import Rule, cached

CALLS: dict[str, int] = {}


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
