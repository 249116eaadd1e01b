from __future__ import annotations

import asyncio
import inspect
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachewire import Rule, cached, changed
from cachewire.cache import InMemoryCacheAdapter, encode_key, get_cached_function
from cachewire.cache._key_plan import MEMO_ENTRIES
from cachewire.cache._keys import encode_value
from cachewire.errors import CachewireError, ConfigurationError


def counting(cache: InMemoryCacheAdapter, **options: Any) -> Any:
    calls: list[tuple[int, int]] = []

    @cached(cache=cache, partition=("user_id",), name=f"t.orders.{id(calls)}", **options)
    def orders(user_id: int, page: int = 1) -> tuple[int, int] | None:
        calls.append((user_id, page))
        return None if page == 0 else (user_id, page)

    return orders, calls


def test_hit_after_miss_and_default_arguments_share_a_key() -> None:
    orders, calls = counting(InMemoryCacheAdapter())
    assert orders(1) == (1, 1)
    assert orders(user_id=1, page=1) == (1, 1)
    assert orders(1, 1) == (1, 1)
    assert calls == [(1, 1)]


def test_cached_none_is_a_hit() -> None:
    orders, calls = counting(InMemoryCacheAdapter())
    assert orders(1, 0) is None
    assert orders(1, 0) is None
    assert calls == [(1, 0)]


def test_partition_invalidation_touches_only_that_partition() -> None:
    cache = InMemoryCacheAdapter()
    orders, calls = counting(cache)
    for user in (1, 2):
        for page in (1, 2, 3):
            orders(user, page)
    calls.clear()
    orders.invalidate(user_id=1)
    for user in (1, 2):
        for page in (1, 2, 3):
            orders(user, page)
    assert calls == [(1, 1), (1, 2), (1, 3)]


def test_exact_entry_and_whole_function_invalidation() -> None:
    orders, calls = counting(InMemoryCacheAdapter())
    orders(1, 1)
    orders(1, 2)
    calls.clear()
    orders.invalidate(user_id=1, page=2)
    orders(1, 1)
    orders(1, 2)
    assert calls == [(1, 2)]
    calls.clear()
    orders.invalidate_all()
    orders(1, 1)
    assert calls == [(1, 1)]


def test_partition_invalidation_is_a_constant_amount_of_work() -> None:
    cache = InMemoryCacheAdapter()
    orders, _ = counting(cache)
    for page in range(1000):
        orders(1, page + 1)
    tags_before = cache.get_stats()["tags"]
    orders.invalidate(user_id=1)
    # One tag version bumped; no entry was visited or deleted.
    assert cache.get_stats()["size"] == 1000
    assert cache.get_stats()["tags"] == tags_before + 1


async def test_async_functions_and_async_invalidation() -> None:
    cache = InMemoryCacheAdapter()
    calls = 0

    @cached(cache=cache, partition=("user_id",), name="t.async_profile")
    async def profile(user_id: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return {"id": user_id}

    assert await profile(1) == {"id": 1}
    assert await profile(1) == {"id": 1}
    assert calls == 1
    await profile.ainvalidate(user_id=1)
    assert await profile(1) == {"id": 1}
    assert calls == 2


async def test_partition_invalidation_during_a_computation_prevents_stale_write_back() -> None:
    cache = InMemoryCacheAdapter()
    started, release = asyncio.Event(), asyncio.Event()
    version = 0

    @cached(cache=cache, partition=("user_id",), name="t.slow_profile")
    async def profile(user_id: int) -> int:
        nonlocal version
        version += 1
        started.set()
        await release.wait()
        return version

    first = asyncio.create_task(profile(1))
    await started.wait()
    await profile.ainvalidate(user_id=1)
    release.set()
    assert await first == 1
    assert await profile(1) == 2


def test_bad_declarations_fail_early() -> None:
    with pytest.raises(ConfigurationError, match="names no parameter"):

        @cached(partition=("nope",), name="t.bad1")
        def f(a: int) -> int:
            return a

    with pytest.raises(ConfigurationError, match="needs name="):
        cached()(lambda a: a)

    orders, _ = counting(InMemoryCacheAdapter())
    with pytest.raises(ConfigurationError, match="unmapped"):
        orders.invalidate(page=1)
    with pytest.raises(ConfigurationError, match="no parameter"):
        orders.invalidate(nobody=1)


def test_functions_are_registered_by_stable_id() -> None:
    orders, _ = counting(InMemoryCacheAdapter())
    assert get_cached_function(orders.cache_id) is orders
    with pytest.raises(ConfigurationError, match="no cached function"):
        get_cached_function("missing.id")


@attrs.define
class Post:
    author_id: int
    title: str


def test_rules_invalidate_the_right_partition_end_to_end() -> None:
    cache = InMemoryCacheAdapter()
    calls: list[int] = []

    @cached(
        cache=cache,
        partition=("author_id",),
        name="t.posts_by_author",
        invalidates_on=[Rule(model=Post, field_mapping={"author_id": "author_id"})],
    )
    def posts_by_author(author_id: int, page: int = 1) -> str:
        calls.append(author_id)
        return f"{author_id}:{page}"

    for author in (1, 2, 3):
        posts_by_author(author)
    calls.clear()
    # The post moved from author 1 to author 2.
    changed(Post, Post(author_id=2, title="x"), old={"author_id": 1})
    for author in (1, 2, 3):
        posts_by_author(author)
    assert sorted(calls) == [1, 2]


def test_a_rule_mapping_a_missing_parameter_fails_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="no parameter"):

        @cached(
            partition=("author_id",),
            name="t.bad_rule",
            invalidates_on=[Rule(model=Post, field_mapping={"writer": "author_id"})],
        )
        def f(author_id: int) -> int:
            return author_id


@pytest.mark.redis
def test_partition_invalidation_on_redis_is_one_command_whatever_the_partition_size(
    redis_db_url: str, sent_commands: Any
) -> None:
    import redis

    from cachewire.cache import RedisCacheAdapter

    cache = RedisCacheAdapter(redis_db_url, namespace="cached")
    calls: list[tuple[int, int]] = []

    @cached(cache=cache, partition=("user_id",), name="t.redis_orders")
    def orders(user_id: int, page: int) -> list[int]:
        calls.append((user_id, page))
        return [user_id, page]

    for page in range(1000):
        orders(1, page)
    orders(2, 0)
    sent = sent_commands(cache, blocking=True)
    orders.invalidate(user_id=1)
    assert sent == ["EVALSHA"]  # one version bump (a script); no SCAN, KEYS or DEL over entries
    calls.clear()
    orders(1, 5)
    orders(2, 0)
    assert calls == [(1, 5)]
    server = redis.Redis.from_url(redis_db_url)
    assert server.dbsize() >= 1001  # the stale entries were left to expire, not scanned
    server.close()
    asyncio.run(cache.aclose())


# ------------------------------------------------------------------ key plans

plain_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-3, max_value=3),
    st.text(max_size=8),
    st.text(alphabet=":|*?[]~%= \n\té", max_size=8),
    st.text(min_size=60, max_size=80),
)
other_values = st.one_of(
    st.floats(allow_nan=False),
    st.binary(max_size=4),
    st.tuples(plain_values, plain_values),
    st.lists(plain_values, max_size=3),
    st.dictionaries(st.text(max_size=3), plain_values, max_size=2),
)
any_value = plain_values | other_values


def _bound_key(function: Any, *args: Any, **kwargs: Any) -> str:
    """The key encode_key gives for a call: the reference the plan must match."""
    bound = inspect.signature(function.__wrapped__).bind(*args, **kwargs)
    bound.apply_defaults()
    return encode_key(function.cache_id, dict(bound.arguments))


def _outcome(function: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    try:
        return ("key", function(*args, **kwargs))
    except CachewireError as error:
        return (type(error).__name__, str(error).split(" argument ")[-1])


@cached(cache=InMemoryCacheAdapter(), name="t.plan.mixed", partition=("b", "a"))
def mixed(a: Any, /, b: Any, c: Any = 3, *, d: Any = None, len: Any = "shadows a builtin") -> Any:
    return None


@given(a=any_value, b=any_value, c=any_value, d=any_value, shadow=any_value)
def test_plan_keys_are_exactly_encode_keys(a: Any, b: Any, c: Any, d: Any, shadow: Any) -> None:
    assert mixed._key_of is not None
    calls = [
        ((a, b), {}),
        ((a,), {"b": b}),
        ((a, b, c), {"d": d}),
        ((a,), {"d": d, "c": c, "b": b, "len": shadow}),
    ]
    for args, kwargs in calls:
        # The same key, or the same refusal of a value the policy does not take.
        assert _outcome(mixed.key_for, *args, **kwargs) == _outcome(
            _bound_key, mixed, *args, **kwargs
        )
    expected_tag = "p:t.plan.mixed|" + encode_value(b) + encode_value(a)
    assert mixed._key_and_tags((a, b), {})[1] == ("f:t.plan.mixed", expected_tag)


@given(values=st.lists(st.integers(-2, 2) | st.booleans() | st.sampled_from(["1", "", None])))
def test_remembered_encodings_keep_true_1_and_1_0_apart(values: list[Any]) -> None:
    for value in [*values, 1.0, 1, True, "1"]:
        assert mixed.key_for(value, value) == _bound_key(mixed, value, value)
    assert len({mixed.key_for(v, 0) for v in (1, 1.0, True, "1")}) == 4


def test_plans_stay_exact_past_their_memo_bound() -> None:
    count = MEMO_ENTRIES * 2 + 10
    keys = {mixed.key_for(i, str(i)) for i in range(count)}
    assert len(keys) == count
    assert mixed.key_for(7, "7") == _bound_key(mixed, 7, "7")


def test_calls_the_function_refuses_raise_its_type_error() -> None:
    orders, calls = counting(InMemoryCacheAdapter())
    with pytest.raises(TypeError, match="user_id"):
        orders()
    with pytest.raises(TypeError, match="nobody"):
        orders(1, nobody=2)
    with pytest.raises(TypeError):
        orders(1, 2, 3)
    with pytest.raises(TypeError):
        mixed(a=1, b=2)  # a is positional-only
    assert calls == []


def test_variadic_and_reserved_parameter_names_fall_back_to_binding() -> None:
    cache = InMemoryCacheAdapter()
    calls: list[Any] = []

    @cached(cache=cache, name="t.plan.variadic")
    def variadic(a: int, *rest: int, **options: int) -> int:
        calls.append((a, rest, options))
        return a + sum(rest) + sum(options.values())

    @cached(cache=cache, name="t.plan.reserved")
    def reserved(_cw_key: int, _cw_c0: int = 1) -> int:
        calls.append((_cw_key, _cw_c0))
        return _cw_key + _cw_c0

    assert variadic._key_of is None
    assert reserved._key_of is None
    assert variadic(1, 2, x=3) == variadic(1, 2, x=3) == 6
    assert variadic.key_for(1, 2, x=3) == _bound_key(variadic, 1, 2, x=3)
    assert variadic.key_for(1, 2, x=3) != variadic.key_for(1, 2, y=3)
    assert reserved(1) == reserved(_cw_key=1, _cw_c0=1) == 2
    assert reserved.key_for(5, 6) == _bound_key(reserved, 5, 6)
    assert len(calls) == 2


def test_a_value_the_policy_refuses_fails_on_every_call() -> None:
    orders, calls = counting(InMemoryCacheAdapter())
    for _ in range(2):
        with pytest.raises(CachewireError, match="argument 'page'"):
            orders(1, object())  # type: ignore[arg-type]
    assert calls == []


async def test_every_hit_path_serves_the_cached_value_and_counts_it() -> None:
    cache = InMemoryCacheAdapter()
    calls = 0

    @cached(cache=cache, partition=("user_id",), name="t.plan.hits")
    async def profile(user_id: int, page: int = 1) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"id": user_id, "page": page}

    first = await profile(7, page=1)
    key = profile.key_for(7)
    tags = profile._key_and_tags((7,), {})[1]
    assert await profile(7) == await profile(user_id=7, page=1) == first
    assert await cache.get(key, tags=tags) == first
    for ttl in (300, 60, 300.0 * 0.5, None):  # other TTLs, a computed one: still hits
        assert await cache.get_or_create(key, _never_called, ttl, tags=tags) == first
        assert cache.sync.get_or_create(key, _never_called, ttl, tags=tags) == first
    assert calls == 1
    assert cache.get_stats()["hits"] == 11
    await profile.ainvalidate(user_id=7)
    assert await profile(7) == first
    assert calls == 2


def _never_called() -> Any:
    raise AssertionError("a hit must not compute")


async def test_an_invalid_ttl_is_refused_even_when_the_key_is_cached() -> None:
    cache = InMemoryCacheAdapter()
    await cache.set("k", 1)
    for ttl in (-1, float("nan"), True, "60"):
        with pytest.raises(ConfigurationError):
            await cache.get_or_create("k", _never_called, ttl)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError):
            cache.sync.get_or_create("k", _never_called, ttl)  # type: ignore[arg-type]


def test_tagged_hits_see_every_invalidation_and_only_their_own() -> None:
    cache = InMemoryCacheAdapter()
    orders, calls = counting(cache)
    for user in (1, 2, 3):
        orders(user)
    for round_ in range(3):
        calls.clear()
        orders.invalidate(user_id=2)
        cache.sync.invalidate_tags(["an unrelated tag"])
        for _ in range(2):  # the second round of hits finds the tags current without a look
            for user in (1, 2, 3):
                assert orders(user) == (user, 1)
        assert calls == [(2, 1)], round_
    calls.clear()
    cache.sync.clear()
    orders(1)
    orders(1)
    assert calls == [(1, 1)]


class Shelf:
    def __init__(self, owner: str) -> None:
        self.owner = owner

    @cached(cache=InMemoryCacheAdapter(), name="t.plan.shelf.books", partition=("genre",))
    def books(self, genre: Any, page: Any = 1) -> str:
        return f"{self.owner}:{genre}:{page}"

    @cached(cache=InMemoryCacheAdapter(), name="t.plan.shelf.mine", self_key=lambda s: s.owner)
    def mine(self, genre: Any) -> str:
        return f"{self.owner}:{genre}"


@given(owner=plain_values.map(str), genre=any_value, page=any_value)
def test_method_keys_leave_the_instance_out_or_hold_self_key(
    owner: str, genre: Any, page: Any
) -> None:
    shelf = Shelf(owner)
    assert Shelf.books._key_of is not None
    assert Shelf.mine._key_of is not None
    assert shelf.books.key_for(genre, page) == encode_key(
        "t.plan.shelf.books", {"genre": genre, "page": page}
    )
    assert shelf.mine.key_for(genre) == encode_key(
        "t.plan.shelf.mine", {"self": owner, "genre": genre}
    )
    assert shelf.books._key_and_tags((shelf, genre, page), {})[1] == (
        "f:t.plan.shelf.books",
        "p:t.plan.shelf.books|" + encode_value(genre),
    )


def _reversed_layout(prefix: str, arguments: Any) -> str:
    """A key policy of another shape: arguments in reverse name order, behind a version."""
    body = "".join(
        f"{name}:{encode_value(value)};" for name, value in sorted(arguments.items(), reverse=True)
    )
    return f"v2/{prefix}/{body}"


@pytest.mark.parametrize("policy", ["prefixed", "reordered"])
def test_plans_follow_a_changed_key_policy_or_step_aside(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cachewire.cache._cached as cached_module
    import cachewire.cache._key_plan as plan_module

    original = plan_module.encode_key

    def prefixed(prefix: str, arguments: Any) -> str:
        return "v2|" + original(prefix, arguments)

    changed_policy = prefixed if policy == "prefixed" else _reversed_layout
    monkeypatch.setattr(plan_module, "encode_key", changed_policy)
    monkeypatch.setattr(cached_module, "encode_key", changed_policy)

    @cached(cache=InMemoryCacheAdapter(), name=f"t.plan.policy.{policy}")
    def f(a: Any, b: Any = 2) -> Any:
        return (a, b)

    # A new layout of the same pieces is learned; one the plan cannot express turns it off.
    assert (f._key_of is not None) == (policy == "prefixed")
    for args in [(1,), ("x", None), (True, 2.5), ((1, 2), "é")]:
        bound = inspect.signature(f.__wrapped__).bind(*args)
        bound.apply_defaults()
        assert f.key_for(*args) == changed_policy(f.cache_id, dict(bound.arguments))
        assert f(*args) == f(*args)
