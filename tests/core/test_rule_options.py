"""Rule options: events, watch_fields, condition and rewarm."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

from cachewire import cached, errors
from cachewire.cache import InMemoryCacheAdapter
from cachewire.dispatch import dispatch_stats
from cachewire.dispatchers import AsyncIODispatcher
from cachewire.rules import Rule, changed, collect


@attrs.define
class Article:
    id: int
    author_id: int
    title: str = "t"
    published: bool = True


@pytest.fixture
def target(recording_target: Any) -> Any:
    return recording_target("blog.by_author", ("author_id",), ("author_id",))


def rule(target: Any, **options: Any) -> Rule:
    return Rule(model=Article, field_mapping={"author_id": "author_id"}, function=target, **options)


def authors(target: Any) -> list[int]:
    return sorted(call["author_id"] for call in target.calls)


# ------------------------------------------------------------------ events


@pytest.mark.parametrize(
    ("events", "fired"),
    [
        (("create", "update", "delete"), ["create", "update", "delete", "save", "save-with-old"]),
        (("update",), ["update", "save", "save-with-old"]),
        (("create",), ["create", "save"]),
        (("delete",), ["delete"]),
        (("update", "delete"), ["update", "delete", "save", "save-with-old"]),
    ],
)
def test_events_select_which_changes_fire(
    recording_target: Any, events: tuple[str, ...], fired: list[str]
) -> None:
    seen: list[str] = []
    for case in ("create", "update", "delete", "save", "save-with-old"):
        target = recording_target(f"blog.{case}", ("author_id",), ("author_id",))
        rule(target, events=events, name=f"{case}-{'-'.join(events)}")
        event, _, with_old = case.partition("-with-")
        old = {"author_id": 1} if with_old else None
        changed(Article, Article(1, 1), old=old, event=event)
        if target.calls:
            seen.append(case)
        from cachewire.rules import _rule

        _rule.unregister_all()
    assert seen == fired


def test_events_are_checked_at_declaration(target: Any) -> None:
    with pytest.raises(errors.ConfigurationError, match="events="):
        rule(target, events=("created",))
    with pytest.raises(errors.ConfigurationError, match="events="):
        rule(target, events=())


def test_a_single_event_may_be_given_as_a_string(target: Any) -> None:
    assert rule(target, events="delete").events == ("delete",)


# ------------------------------------------------------------------ watch_fields


def test_watch_fields_fire_only_when_a_watched_value_changed(target: Any) -> None:
    rule(target, watch_fields=("title",))
    new = Article(1, 3, title="new")
    assert changed(Article, new, old=Article(1, 3, title="old"), event="update") == 1
    assert changed(Article, new, old=Article(1, 3, title="new"), event="update") == 0
    assert changed(Article, new, old={"title": "new"}, event="update") == 0
    assert changed(Article, new, old={"title": "old"}, event="update") == 1
    assert authors(target) == [3, 3]


def test_watch_fields_compare_values_even_when_update_fields_names_them(target: Any) -> None:
    rule(target, watch_fields=("title",))
    new = Article(1, 3, title="same")
    # update_fields lists the field, but its value did not change: nothing to do.
    assert changed(Article, new, old={"title": "same"}, update_fields=["title"]) == 0
    # update_fields does not list it: the save did not write it, whatever the old values say.
    assert changed(Article, new, old={"title": "old"}, update_fields=["published"]) == 0
    assert changed(Article, new, old={"title": "old"}, update_fields=["title"]) == 1


def test_watch_fields_fire_when_nothing_tells_what_changed(target: Any) -> None:
    rule(target, watch_fields=("title",))
    assert changed(Article, Article(1, 3), event="update") == 1
    # Old values that do not include the watched field say nothing about it.
    assert changed(Article, Article(1, 4), old={"author_id": 4}, event="update") == 1
    # With only update_fields, a watched field in it is enough.
    assert changed(Article, Article(1, 5), update_fields=["title"]) == 1
    assert changed(Article, Article(1, 6), update_fields=["published"]) == 0
    assert authors(target) == [3, 4, 5]


def test_watch_fields_do_not_gate_creates_and_deletes(target: Any) -> None:
    rule(target, watch_fields=("title",))
    assert changed(Article, Article(1, 3), event="create", update_fields=[]) == 1
    assert changed(Article, Article(1, 4), event="delete") == 1


def test_watch_fields_with_a_moved_row_invalidate_both_partitions(target: Any) -> None:
    rule(target, watch_fields=("author_id",))
    changed(Article, Article(1, 8), old=Article(1, 7), event="update")
    assert authors(target) == [7, 8]


def test_a_watched_path_missing_on_the_object_is_named(target: Any) -> None:
    r = rule(target, watch_fields=("titel",))
    with pytest.raises(errors.RulePathError, match=rf"{r.id!r}.*'titel'"):
        changed(Article, Article(1, 3), old=Article(1, 3), event="update")


# ------------------------------------------------------------------ condition


def test_condition_selects_the_objects_that_fire(target: Any) -> None:
    rule(target, condition=lambda article: article.published)
    assert changed(Article, Article(1, 3, published=True)) == 1
    assert changed(Article, Article(2, 4, published=False)) == 0
    assert authors(target) == [3]


def test_condition_holding_only_for_the_old_state_still_invalidates_it(target: Any) -> None:
    """An article unpublished and moved: the old author's published list held it."""
    rule(target, condition=lambda article: article.published)
    changed(Article, Article(1, 8, published=False), old={"published": True, "author_id": 7})
    assert authors(target) == [7]


def test_condition_sees_old_values_over_the_new_object(target: Any) -> None:
    seen: list[tuple[int, bool]] = []

    def condition(article: Any) -> bool:
        seen.append((article.author_id, article.published))
        return True

    rule(target, condition=condition)
    changed(Article, Article(1, 8, published=False), old={"published": True})
    assert seen == [(8, False), (8, True)]


def test_condition_and_watch_fields_are_both_required(target: Any) -> None:
    rule(target, watch_fields=("title",), condition=lambda a: a.published)
    new = Article(1, 3, title="new", published=False)
    assert changed(Article, new, old=Article(1, 3, title="old", published=False)) == 0
    assert changed(Article, Article(1, 3), old=Article(1, 3)) == 0
    assert changed(Article, Article(1, 3, title="x"), old=Article(1, 3)) == 1


def test_a_failing_condition_names_the_rule(target: Any) -> None:
    r = rule(target, condition=lambda article: article.missing)
    with pytest.raises(AttributeError) as raised:
        changed(Article, Article(1, 3))
    assert any(r.id in note for note in raised.value.__notes__)


def test_condition_must_be_callable(target: Any) -> None:
    with pytest.raises(errors.ConfigurationError, match="condition="):
        rule(target, condition=True)


def test_options_tell_rules_apart_without_changing_plain_ids(target: Any) -> None:
    plain = rule(target)
    on_delete = rule(target, events=("delete",))
    watched = rule(target, watch_fields=("title",))
    assert len({plain.id, on_delete.id, watched.id}) == 3
    # A plain rule's id is what it was before the options existed.
    assert plain.id == "blog.by_author@" + plain.label + "#" + plain.id.rsplit("#", 1)[1]
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps([["author_id", "author_id"]]).encode()).hexdigest()[:12]
    assert plain.id.endswith("#" + digest)


def test_redeclaring_with_another_condition_under_one_name_is_an_error(target: Any) -> None:
    def published(article: Any) -> bool:
        return bool(article.published)

    def draft(article: Any) -> bool:
        return not article.published

    rule(target, condition=published, name="r")
    rule(target, condition=published, name="r")  # the same declaration again: replaces
    with pytest.raises(errors.DuplicateRuleError):
        rule(target, condition=draft, name="r")


# ------------------------------------------------------------------ rewarm


def make_profile(cache: InMemoryCacheAdapter, **rule_options: Any) -> tuple[Any, list[int]]:
    computed: list[int] = []

    @cached(
        cache=cache,
        name="users.profile",
        invalidates_on=[Rule(model="users.User", field_mapping={"user_id": "id"}, **rule_options)],
    )
    def profile(user_id: int) -> dict[str, int]:
        computed.append(user_id)
        return {"user": user_id, "version": len(computed)}

    return profile, computed


def test_rewarm_recomputes_the_entry_right_after_invalidating_it() -> None:
    cache = InMemoryCacheAdapter()
    profile, computed = make_profile(cache, rewarm=True)
    profile(1)
    profile(2)
    changed("users.User", {"id": 1})
    assert computed == [1, 2, 1]  # recomputed by the rule, not by a reader
    assert profile(1) == {"user": 1, "version": 3}
    assert computed == [1, 2, 1]  # the next read is a hit
    assert dispatch_stats.snapshot()["invalidations"] == 1


def test_without_rewarm_the_entry_is_only_dropped() -> None:
    cache = InMemoryCacheAdapter()
    profile, computed = make_profile(cache)
    profile(1)
    changed("users.User", {"id": 1})
    assert computed == [1]
    profile(1)
    assert computed == [1, 1]


def test_rewarm_of_a_partition_invalidates_it_and_recomputes_only_the_default_entry() -> None:
    cache = InMemoryCacheAdapter()
    computed: list[tuple[int, int]] = []

    @cached(
        cache=cache,
        name="shop.orders_page",
        partition=("customer_id",),
        invalidates_on=[
            Rule(model="shop.Order", field_mapping={"customer_id": "customer_id"}, rewarm=True)
        ],
    )
    def orders_page(customer_id: int, page: int = 1) -> str:
        computed.append((customer_id, page))
        return f"{customer_id}:{page}:{len(computed)}"

    for page in (1, 2, 3):
        orders_page(7, page)
    computed.clear()
    changed("shop.Order", {"customer_id": 7})
    assert computed == [(7, 1)]  # the default page, recomputed by the rule
    for page in (1, 2, 3):
        orders_page(7, page)
    assert computed == [(7, 1), (7, 2), (7, 3)]  # the rest of the partition was dropped


def test_rewarm_of_a_partition_with_required_parameters_only_invalidates() -> None:
    cache = InMemoryCacheAdapter()
    computed: list[tuple[int, int]] = []

    @cached(
        cache=cache,
        name="shop.orders_page_required",
        partition=("customer_id",),
        invalidates_on=[
            Rule(model="shop.Order", field_mapping={"customer_id": "customer_id"}, rewarm=True)
        ],
    )
    def orders_page(customer_id: int, page: int) -> str:
        computed.append((customer_id, page))
        return f"{customer_id}:{page}"

    orders_page(7, 1)
    changed("shop.Order", {"customer_id": 7})
    assert computed == [(7, 1)]
    orders_page(7, 1)
    assert computed == [(7, 1), (7, 1)]


def test_a_failing_rewarm_follows_the_error_policy_and_leaves_the_entry_invalidated() -> None:
    cache = InMemoryCacheAdapter()
    fail = [False]
    computed: list[int] = []

    @cached(
        cache=cache,
        name="users.flaky",
        invalidates_on=[Rule(model="users.User", field_mapping={"user_id": "id"}, rewarm=True)],
    )
    def flaky(user_id: int) -> int:
        if fail[0]:
            raise RuntimeError("database down")
        computed.append(user_id)
        return len(computed)

    assert flaky(1) == 1
    fail[0] = True
    changed("users.User", {"id": 1})  # swallowed by the default policy, but counted
    assert dispatch_stats.snapshot()["rule_errors"] == 1
    fail[0] = False
    assert flaky(1) == 2  # not the stale 1


async def test_rewarm_of_an_async_function_on_the_asyncio_dispatcher() -> None:
    cache = InMemoryCacheAdapter()
    computed: list[int] = []

    @cached(
        cache=cache,
        name="users.aprofile",
        invalidates_on=[
            Rule(
                model="users.User",
                field_mapping={"user_id": "id"},
                rewarm=True,
                dispatcher="asyncio",
            )
        ],
    )
    async def aprofile(user_id: int) -> int:
        computed.append(user_id)
        return len(computed)

    assert await aprofile(1) == 1
    changed("users.User", {"id": 1})
    await AsyncIODispatcher.drain()
    assert computed == [1, 1]
    assert await aprofile(1) == 2


async def test_rewarm_of_an_async_function_from_inline_dispatch_inside_a_loop() -> None:
    cache = InMemoryCacheAdapter()
    computed: list[int] = []
    done = asyncio.Event()

    @cached(
        cache=cache,
        name="users.aprofile_inline",
        invalidates_on=[Rule(model="users.User", field_mapping={"user_id": "id"}, rewarm=True)],
    )
    async def aprofile(user_id: int) -> int:
        computed.append(user_id)
        if len(computed) > 1:
            done.set()
        return len(computed)

    assert await aprofile(1) == 1
    with collect():
        changed("users.User", {"id": 1})
    await done.wait()
    assert await aprofile(1) == 2
    assert computed == [1, 1]


def test_rewarm_of_an_async_function_without_a_loop_only_invalidates() -> None:
    cache = InMemoryCacheAdapter()
    computed: list[int] = []

    @cached(
        cache=cache,
        name="users.aprofile_noloop",
        invalidates_on=[Rule(model="users.User", field_mapping={"user_id": "id"}, rewarm=True)],
    )
    async def aprofile(user_id: int) -> int:
        computed.append(user_id)
        return len(computed)

    assert asyncio.run(aprofile(1)) == 1
    changed("users.User", {"id": 1})
    assert computed == [1]
    assert asyncio.run(aprofile(1)) == 2


def test_rewarm_must_be_a_bool(target: Any) -> None:
    with pytest.raises(errors.ConfigurationError, match="rewarm="):
        rule(target, rewarm="yes")


def test_paths_lists_what_an_adapter_must_snapshot(target: Any) -> None:
    r = rule(target, watch_fields=("title", "author_id"))
    assert r.paths == ("author_id", "title")
