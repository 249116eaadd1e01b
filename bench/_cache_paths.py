"""The paths users call, measured side by side: @cached and every adapter hit path, in memory and
on Redis, against the peers' decorators (as they ship and tuned) and the floors; large values;
memory per entry. Used by bench/cache.py.

Every op of a group is measured in short rounds that take turns, so drift on a shared machine
hits every row alike; a ratio is taken within each round (against the row it compares with,
measured in that same round) and the median of the rounds is reported.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import json
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import redis
import redis.asyncio as aioredis

from cachewire import cached
from cachewire.cache import InMemoryCacheAdapter, JsonCodec, RedisCacheAdapter
from cachewire.cache import _codec as codec_module

#: What the cached functions return: a small record, as a profile or a page would be.
VALUE = {"id": 7, "name": "Ada Lovelace", "roles": ["admin", "author"], "active": True}


class Op(NamedTuple):
    """One measured row: ``sites`` are call sites taken in turn (each row has the same number,
    so the loop costs every row the same)."""

    label: str
    sites: tuple[Callable[[], Any], ...]
    is_async: bool


class Compare(NamedTuple):
    """A ratio to report: ``label`` against the fastest of ``against`` in each round."""

    label: str
    against: tuple[str, ...]
    goal: float | None = None


def twice(call: Callable[[], Any]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    return (call, call)


async def _per_op_async(sites: tuple[Callable[[], Any], ...], n: int) -> float:
    first, second = sites
    start = time.perf_counter()
    for _ in range(n // 2):
        await first()
        await second()
    return (time.perf_counter() - start) / (n // 2 * 2) * 1e6


def _per_op_sync(sites: tuple[Callable[[], Any], ...], n: int) -> float:
    first, second = sites
    start = time.perf_counter()
    for _ in range(n // 2):
        first()
        second()
    return (time.perf_counter() - start) / (n // 2 * 2) * 1e6


async def alternate(ops: Sequence[Op], per_round: int, rounds: int) -> dict[str, list[float]]:
    """µs per op of each row, one sample per round; rows take turns within every round, in an
    order drawn afresh each round (a fixed order gives each row the same neighbours every time,
    and whatever one leaves behind, such as garbage to collect, lands on the next)."""
    samples: dict[str, list[float]] = {op.label: [] for op in ops}
    for op in ops:  # warm up: connections, scripts, memos
        if op.is_async:
            await _per_op_async(op.sites, 20)
        else:
            _per_op_sync(op.sites, 20)
    order = random.Random(8)
    for _ in range(rounds):
        shuffled = list(ops)
        order.shuffle(shuffled)
        gc.collect()
        for op in shuffled:
            if op.is_async:
                samples[op.label].append(await _per_op_async(op.sites, per_round))
            else:
                samples[op.label].append(_per_op_sync(op.sites, per_round))
    return samples


def ratio(samples: dict[str, list[float]], label: str, against: Sequence[str]) -> float:
    """Median over rounds of ``label`` / the fastest of ``against`` in that round."""
    rounds = zip(samples[label], *(samples[a] for a in against), strict=True)
    return statistics.median(row[0] / min(row[1:]) for row in rounds)


def compare_rows(samples: dict[str, list[float]], compares: Sequence[Compare]) -> list[list[str]]:
    rows = []
    for c in compares:
        value = ratio(samples, c.label, c.against)
        goal = "" if c.goal is None else f"<= {c.goal:g}x"
        met = "" if c.goal is None else ("yes" if value <= c.goal else "**no**")
        rows.append([c.label, " / ".join(c.against), f"{value:.2f}x", goal, met])
    return rows


def latency_rows(samples: dict[str, list[float]], digits: int) -> list[list[str]]:
    return [
        [label, f"{statistics.median(values):.{digits}f}", f"{min(values):.{digits}f}"]
        for label, values in samples.items()
    ]


# ------------------------------------------------------------------------------- in memory

MEM_ASYNC_CACHED = "cachewire @cached async hit, `await f(7, page=1)`"
MEM_AIO_SHIPPED = "aiocache @cached as shipped (5 s operation timeout)"
MEM_AIO_TUNED = "aiocache @cached(timeout=None)"
MEM_SYNC_CACHED = "cachewire @cached sync hit, `f(7, page=1)`"
MEM_DOGPILE = "dogpile cache_on_arguments (memory), `f(7, 1)`"
MEM_HIT = "InMemory get_or_create hit, one TTL"
MEM_TWO_TTLS = "InMemory get_or_create hit, two call sites: TTL 300 and 60"
MEM_COMPUTED = "InMemory get_or_create hit, computed TTL (a new float each call)"
MEM_GET = "InMemory get() hit"
MEM_TAGGED = "InMemory get_or_create hit, entry with two tags"
MEM_SYNC_DEFAULT = "InMemory .sync.get_or_create hit, default TTL"
MEM_SYNC_TTL = "InMemory .sync.get_or_create hit, explicit TTL"


async def memory_paths(per_round: int, rounds: int) -> tuple[list[list[str]], list[list[str]]]:
    """(latency rows, ratio rows) of every in-memory hit path and the peers' decorators."""
    import aiocache
    from dogpile.cache import make_region

    cache = InMemoryCacheAdapter()

    async def plain_async(user_id: int, page: int = 1) -> dict[str, Any]:
        return VALUE

    def plain_sync(user_id: int, page: int = 1) -> dict[str, Any]:
        return VALUE

    ours_async = cached(cache=cache, ttl=300, partition=("user_id",), name="bench.mem.a")(
        plain_async
    )
    ours_sync = cached(cache=cache, ttl=300, partition=("user_id",), name="bench.mem.s")(plain_sync)
    aio_shipped = aiocache.cached(ttl=300)(plain_async)
    aio_tuned = aiocache.cached(ttl=300, timeout=None)(plain_async)
    region = make_region().configure("dogpile.cache.memory", expiration_time=300)
    dogpile = region.cache_on_arguments()(plain_sync)  # its keys refuse keyword arguments
    tags = ("f:bench.tagged", "p:bench.tagged|i7~")

    def creator() -> dict[str, Any]:
        return VALUE

    await cache.set("k", VALUE, 300)
    await cache.set("kt", VALUE, 300, tags=tags)
    base_ttl = 300.0
    ops = [
        Op("floor: undecorated `await f(7, page=1)`", twice(lambda: plain_async(7, page=1)), True),
        Op(MEM_ASYNC_CACHED, twice(lambda: ours_async(7, page=1)), True),
        Op(MEM_AIO_SHIPPED, twice(lambda: aio_shipped(7, page=1)), True),
        Op(MEM_AIO_TUNED, twice(lambda: aio_tuned(7, page=1)), True),
        Op("floor: undecorated `f(7, page=1)`", twice(lambda: plain_sync(7, page=1)), False),
        Op(MEM_SYNC_CACHED, twice(lambda: ours_sync(7, page=1)), False),
        Op(MEM_DOGPILE, twice(lambda: dogpile(7, 1)), False),
        Op(MEM_HIT, twice(lambda: cache.get_or_create("k", creator, 300)), True),
        Op(
            MEM_TWO_TTLS,
            (
                lambda: cache.get_or_create("k", creator, 300),
                lambda: cache.get_or_create("k", creator, 60),
            ),
            True,
        ),
        Op(MEM_COMPUTED, twice(lambda: cache.get_or_create("k", creator, base_ttl * 1.0)), True),
        Op(MEM_GET, twice(lambda: cache.get("k")), True),
        Op(MEM_TAGGED, twice(lambda: cache.get_or_create("kt", creator, 300, tags=tags)), True),
        Op(MEM_SYNC_DEFAULT, twice(lambda: cache.sync.get_or_create("k", creator)), False),
        Op(MEM_SYNC_TTL, twice(lambda: cache.sync.get_or_create("k", creator, 300)), False),
    ]
    for op in ops:  # fill every cache once
        for site in op.sites:
            result = site()
            if op.is_async:
                await result
    samples = await alternate(ops, per_round, rounds)
    compares = [
        Compare(MEM_ASYNC_CACHED, (MEM_AIO_SHIPPED, MEM_AIO_TUNED), 0.5),
        Compare(MEM_SYNC_CACHED, (MEM_DOGPILE,), 0.5),
        Compare(MEM_TWO_TTLS, (MEM_HIT,), 1.1),
        Compare(MEM_COMPUTED, (MEM_HIT,), 1.1),
        Compare(MEM_GET, (MEM_HIT,), 1.1),
        Compare(MEM_TAGGED, (MEM_HIT,), 1.1),
        Compare(MEM_SYNC_TTL, (MEM_SYNC_DEFAULT,), 1.1),
        Compare(MEM_SYNC_TTL, (MEM_HIT,), 1.5),
    ]
    return latency_rows(samples, 3), compare_rows(samples, compares)


# ---------------------------------------------------------------------------------- Redis

RED_FLOOR = "floor: redis-py asyncio GET + json.loads"
RED_SYNC_FLOOR = "floor: redis-py GET + json.loads (sync)"
RED_MGET_FLOOR = "floor: redis-py asyncio MGET of the value and two tag keys + json.loads"
RED_SYNC_MGET_FLOOR = "floor: redis-py MGET of the value and two tag keys + json.loads (sync)"
RED_HIT = "cachewire Redis get_or_create hit, one TTL"
RED_CACHED = "cachewire @cached async hit on Redis (two tags: one MGET)"
RED_SYNC_CACHED = "cachewire @cached sync hit on Redis"
RED_TWO_TTLS = "cachewire Redis hit, two call sites: TTL 300 and 60"
RED_COMPUTED = "cachewire Redis hit, computed TTL"
RED_GET = "cachewire Redis get() hit"
RED_TAGGED = "cachewire Redis hit, entry with two tags"
RED_SYNC_TTL = "cachewire Redis .sync.get_or_create hit, explicit TTL"
RED_AIO_SHIPPED = "aiocache @cached RedisCache as shipped (5 s operation timeout)"
RED_AIO_TUNED = "aiocache @cached RedisCache (timeout=None)"
RED_DOGPILE = "dogpile cache_on_arguments, redis backend (pickle)"
RED_NEAR = "cachewire @cached async hit on Redis, local_tag_versions=True (one GET)"
RED_SYNC_NEAR = "cachewire @cached sync hit on Redis, local_tag_versions=True (one GET)"
RED_NEAR_TAGGED = "cachewire Redis hit, entry with two tags, local_tag_versions=True"


async def redis_paths(
    url: str, prefix: str, per_round: int, rounds: int
) -> tuple[list[list[str]], list[list[str]], dict[str, Any]]:
    """(latency rows, ratio rows, the local tag versions' counters) of every Redis hit path; keys
    all start with ``prefix``."""
    from urllib.parse import urlsplit

    import aiocache
    from cashews import Cache as Cashews
    from dogpile.cache import make_region
    from taskiq_flow.cache import RedisCacheAdapter as TaskiqRedis

    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0)
    encoded = json.dumps(VALUE).encode()
    raw = aioredis.Redis.from_url(url)
    raw_sync = redis.Redis.from_url(url)
    await raw.set(f"{prefix}:raw", encoded)
    cache = RedisCacheAdapter(url, namespace=f"{prefix}-ours")
    near = RedisCacheAdapter(url, namespace=f"{prefix}-near", local_tag_versions=True)

    async def plain_async(user_id: int, page: int = 1) -> dict[str, Any]:
        return VALUE

    def plain_sync(user_id: int, page: int = 1) -> dict[str, Any]:
        return VALUE

    ours_async = cached(cache=cache, ttl=300, partition=("user_id",), name="bench.red.a")(
        plain_async
    )
    ours_sync = cached(cache=cache, ttl=300, partition=("user_id",), name="bench.red.s")(plain_sync)
    near_async = cached(cache=near, ttl=300, partition=("user_id",), name="bench.near.a")(
        plain_async
    )
    near_sync = cached(cache=near, ttl=300, partition=("user_id",), name="bench.near.s")(plain_sync)
    aio_options = {
        "cache": aiocache.Cache.REDIS,
        "endpoint": parts.hostname,
        "port": parts.port or 6379,
        "db": db,
        "namespace": f"{prefix}-aio",
    }
    aio_shipped = aiocache.cached(ttl=300, **aio_options)(plain_async)
    aio_tuned = aiocache.cached(ttl=300, timeout=None, **aio_options)(plain_async)
    region = make_region(key_mangler=lambda key: f"{prefix}-dogpile:{key}").configure(
        "dogpile.cache.redis",
        expiration_time=300,
        arguments={"url": url, "redis_expiration_time": 600},
    )
    dogpile = region.cache_on_arguments()(plain_sync)
    taskiq = TaskiqRedis(redis_url=url, default_ttl=300, lock_timeout=10)
    cashews = Cashews()
    cashews.setup(url)
    tags = ("f:bench.tagged", "p:bench.tagged|i7~")

    async def creator() -> dict[str, Any]:
        return VALUE

    async def raw_get() -> Any:
        return json.loads(await raw.get(f"{prefix}:raw"))  # type: ignore[arg-type]

    def raw_sync_get() -> Any:
        return json.loads(raw_sync.get(f"{prefix}:raw"))  # type: ignore[arg-type]

    # What a tagged read has to fetch: the value and its two tags' versions, in one MGET.
    tag_keys = (f"{prefix}:raw", f"{prefix}:tag-f", f"{prefix}:tag-p")

    async def raw_mget() -> Any:
        return json.loads((await raw.mget(*tag_keys))[0])

    def raw_sync_mget() -> Any:
        return json.loads(raw_sync.mget(*tag_keys)[0])  # type: ignore[index]

    await cache.set("k", VALUE, 300)
    await cache.set("kt", VALUE, 300, tags=tags)
    await near.set("kt", VALUE, 300, tags=tags)
    await cashews.set(f"{prefix}:cashews", VALUE, expire=300)
    base_ttl = 300.0
    ops = [
        Op(RED_FLOOR, twice(raw_get), True),
        Op(RED_MGET_FLOOR, twice(raw_mget), True),
        Op(RED_HIT, twice(lambda: cache.get_or_create("k", creator, 300)), True),
        Op(RED_CACHED, twice(lambda: ours_async(7, page=1)), True),
        Op(
            RED_TWO_TTLS,
            (
                lambda: cache.get_or_create("k", creator, 300),
                lambda: cache.get_or_create("k", creator, 60),
            ),
            True,
        ),
        Op(RED_COMPUTED, twice(lambda: cache.get_or_create("k", creator, base_ttl * 1.0)), True),
        Op(RED_GET, twice(lambda: cache.get("k")), True),
        Op(RED_TAGGED, twice(lambda: cache.get_or_create("kt", creator, 300, tags=tags)), True),
        Op(RED_NEAR, twice(lambda: near_async(7, page=1)), True),
        Op(
            RED_NEAR_TAGGED,
            twice(lambda: near.get_or_create("kt", creator, 300, tags=tags)),
            True,
        ),
        Op(RED_AIO_SHIPPED, twice(lambda: aio_shipped(7, page=1)), True),
        Op(RED_AIO_TUNED, twice(lambda: aio_tuned(7, page=1)), True),
        Op(
            "taskiq-flow Redis get_or_create hit",
            twice(lambda: taskiq.get_or_create(f"{prefix}:taskiq", creator, ttl_seconds=300)),
            True,
        ),
        Op("cashews redis get", twice(lambda: cashews.get(f"{prefix}:cashews")), True),
        Op(RED_SYNC_FLOOR, twice(raw_sync_get), False),
        Op(RED_SYNC_MGET_FLOOR, twice(raw_sync_mget), False),
        Op(RED_SYNC_TTL, twice(lambda: cache.sync.get_or_create("k", plain_sync, 300)), False),
        Op(RED_SYNC_CACHED, twice(lambda: ours_sync(7, page=1)), False),
        Op(RED_DOGPILE, twice(lambda: dogpile(7, 1)), False),
        Op(RED_SYNC_NEAR, twice(lambda: near_sync(7, page=1)), False),
    ]
    for op in ops:  # fill every cache once
        for site in op.sites:
            result = site()
            if op.is_async:
                await result
    await asyncio.to_thread(settle_local_versions, near)
    samples = await alternate(ops, per_round, rounds)
    compares = [
        Compare(RED_CACHED, (RED_FLOOR,), 1.1),
        Compare(RED_CACHED, (RED_MGET_FLOOR,)),
        Compare(RED_HIT, (RED_FLOOR,), 1.1),
        Compare(RED_SYNC_CACHED, (RED_SYNC_FLOOR,), 1.1),
        Compare(RED_SYNC_CACHED, (RED_SYNC_MGET_FLOOR,)),
        Compare(RED_SYNC_TTL, (RED_SYNC_FLOOR,), 1.1),
        Compare(RED_MGET_FLOOR, (RED_FLOOR,)),
        Compare(RED_SYNC_MGET_FLOOR, (RED_SYNC_FLOOR,)),
        Compare(RED_TWO_TTLS, (RED_HIT,), 1.1),
        Compare(RED_COMPUTED, (RED_HIT,), 1.1),
        Compare(RED_GET, (RED_HIT,), 1.1),
        Compare(RED_TAGGED, (RED_HIT,), 1.1),
        Compare(RED_TAGGED, (RED_MGET_FLOOR,)),
        Compare(RED_SYNC_TTL, (RED_HIT,), 1.5),
        Compare(RED_AIO_SHIPPED, (RED_CACHED,)),
        Compare(RED_AIO_TUNED, (RED_CACHED,)),
        Compare(RED_DOGPILE, (RED_SYNC_CACHED,)),
        Compare(RED_NEAR, (RED_FLOOR,), 1.1),
        Compare(RED_SYNC_NEAR, (RED_SYNC_FLOOR,), 1.1),
        Compare(RED_NEAR_TAGGED, (RED_HIT,), 1.1),
        Compare(RED_NEAR, (RED_CACHED,)),
        Compare(RED_SYNC_NEAR, (RED_SYNC_CACHED,)),
    ]
    await aio_shipped.cache.close()
    await aio_tuned.cache.close()
    await taskiq._redis.aclose()  # taskiq-flow offers no close()
    await cashews.close()
    await cache.aclose()
    report = near.get_stats()["local_tag_versions"]
    await near.aclose()
    await raw.aclose()
    raw_sync.close()
    return latency_rows(samples, 1), compare_rows(samples, compares), report


def settle_local_versions(cache: RedisCacheAdapter) -> None:
    """Wait until ``cache``'s tracking connection is up and has applied every change so far (the
    fills above wrote tag keys, whose invalidations arrive after them): a change of a key under
    the tag prefix is sent after those, so once it is applied, they were."""
    local = cache._tag_versions
    client = cache._sync_client
    assert local is not None
    assert client is not None
    local.start()
    if not local.wait_for(lambda: local.trusted, 30):
        raise RuntimeError("the tag version tracking connection did not come up")
    sentinel = cache.core.tag_key("~settle")
    local.versions[sentinel] = b"0"
    client.incr(sentinel)
    if not local.wait_for(lambda: sentinel not in local.versions, 30):
        raise RuntimeError("the tag version tracking connection did not report a change")


# ---------------------------------------------------------------------------- large values

BIG_FLOOR = "floor: json.dumps + SET"
BIG_SET = "cachewire Redis set()"
BIG_MISS = "cachewire Redis get_or_create, leader miss"
BIG_UNCHECKED = "cachewire Redis set(), a codec that only runs json.dumps (no strict check)"
BIG_UNCHECKED_MISS = "cachewire Redis leader miss, the same codec"
BIG_DUMPS = "json.dumps alone"
BIG_ENCODE = "JsonCodec.encode alone (strict)"
BIG_SET_JSON = "cachewire Redis set(), JsonCodec without orjson (json alone)"
BIG_MISS_JSON = "cachewire Redis leader miss, JsonCodec without orjson"
BIG_ENCODE_JSON = "JsonCodec.encode alone (strict), without orjson"


class DumpsOnlyCodec:
    """What JsonCodec costs without its strict check: the floor a folded-in check aims for."""

    codec_id = "json1-unchecked"

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


def big_value(size: int) -> dict[str, Any]:
    """A JSON-able record of about ``size`` bytes once encoded: many small rows."""
    row = {"id": 0, "name": "customer", "email": "someone@example.org", "score": 0.5, "ok": True}
    rows = [dict(row, id=i) for i in range(size // len(json.dumps(row)))]
    return {"rows": rows, "total": len(rows)}


async def large_values(url: str, prefix: str, rounds: int) -> tuple[int, list[list[str]]]:
    """(bytes, ratio rows): storing a 1 MB value, against json.dumps + SET."""
    value = big_value(1_000_000)
    size = len(json.dumps(value))
    raw = aioredis.Redis.from_url(url)
    cache = RedisCacheAdapter(url, namespace=f"{prefix}-big")
    unchecked = RedisCacheAdapter(url, namespace=f"{prefix}-big", codec=DumpsOnlyCodec())
    codec = JsonCodec()
    fresh = itertools.count()

    async def floor() -> None:
        await raw.set(f"{prefix}:big", json.dumps(value).encode(), ex=300)

    def creator() -> dict[str, Any]:
        return value

    async def dumps_only() -> None:
        json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    async def encode_only() -> None:
        codec.encode(value)

    orjson_dumps = codec_module._orjson_dumps

    def without_orjson(call: Callable[[], Any]) -> Callable[[], Any]:
        """``call`` with JsonCodec as it runs when the orjson extra is not installed."""

        async def run() -> None:
            codec_module._orjson_dumps = None
            try:
                await call()
            finally:
                codec_module._orjson_dumps = orjson_dumps

        return run

    ops = [
        Op(BIG_FLOOR, twice(floor), True),
        Op(BIG_SET, twice(lambda: cache.set("big", value, 300)), True),
        Op(
            BIG_MISS,
            twice(lambda: cache.get_or_create(f"miss-{next(fresh)}", creator, 300)),
            True,
        ),
        Op(BIG_UNCHECKED, twice(lambda: unchecked.set("big-unchecked", value, 300)), True),
        Op(
            BIG_UNCHECKED_MISS,
            twice(lambda: unchecked.get_or_create(f"miss-u{next(fresh)}", creator, 300)),
            True,
        ),
        Op(BIG_DUMPS, twice(dumps_only), True),
        Op(BIG_ENCODE, twice(encode_only), True),
    ]
    if orjson_dumps is not None:
        ops += [
            Op(BIG_SET_JSON, twice(without_orjson(lambda: cache.set("big-j", value, 300))), True),
            Op(
                BIG_MISS_JSON,
                twice(
                    without_orjson(
                        lambda: cache.get_or_create(f"miss-j{next(fresh)}", creator, 300)
                    )
                ),
                True,
            ),
            Op(BIG_ENCODE_JSON, twice(without_orjson(encode_only)), True),
        ]
    samples = await alternate(ops, 2, rounds)
    compares = [
        Compare(BIG_SET, (BIG_FLOOR,), 1.3),
        Compare(BIG_MISS, (BIG_FLOOR,), 1.3),
        Compare(BIG_UNCHECKED, (BIG_FLOOR,), 1.3),
        Compare(BIG_UNCHECKED_MISS, (BIG_FLOOR,), 1.3),
        Compare(BIG_ENCODE, (BIG_DUMPS,)),
    ]
    if orjson_dumps is not None:
        compares += [
            Compare(BIG_SET_JSON, (BIG_FLOOR,), 1.3),
            Compare(BIG_MISS_JSON, (BIG_FLOOR,), 1.3),
            Compare(BIG_ENCODE_JSON, (BIG_DUMPS,)),
        ]
    rows = compare_rows(samples, compares)
    for row, c in zip(rows, compares, strict=True):
        row.insert(1, f"{statistics.median(samples[c.label]) / 1000:.2f}")
    await cache.aclose()
    await unchecked.aclose()
    await raw.aclose()
    return size, rows


# --------------------------------------------------------------------------- memory per entry


def _traced(fill: Callable[[], None]) -> float:
    gc.collect()
    tracemalloc.start()
    fill()
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return float(used)


def _fill_cached(decorated: Any, calls: list[tuple[int, ...]]) -> None:
    for args in calls:
        decorated(*args)


def _fill_plain(
    adapter: InMemoryCacheAdapter, decorated: Any, calls: list[tuple[int, ...]]
) -> None:
    # The same keys, made here so that both sides pay for their key strings.
    for i, args in enumerate(calls):
        adapter.sync.get_or_create(decorated.key_for(*args), lambda i=i: i, 300)


def cached_entry_sizes(count: int) -> list[list[str]]:
    """Bytes per entry of @cached entries against plain entries of the same keys."""
    rows = []
    cases: list[tuple[str, tuple[str, ...], list[tuple[int, ...]]]] = [
        ("@cached, no partition (one tag)", (), [(i,) for i in range(count)]),
        (
            "@cached, partitions of 10 entries (two tags)",
            ("user_id",),
            [(i // 10, i % 10) for i in range(count)],
        ),
    ]
    for number, (label, partition, calls) in enumerate(cases, start=1):

        def function(user_id: int, page: int = 1) -> int:
            return user_id

        decorated = cached(
            cache=InMemoryCacheAdapter(), ttl=300, partition=partition, name=f"bench.size{number}"
        )(function)
        with_tags = _traced(functools.partial(_fill_cached, decorated, calls)) / count
        plain = (
            _traced(functools.partial(_fill_plain, InMemoryCacheAdapter(), decorated, calls))
            / count
        )
        rows.append([label, f"{plain:.0f}", f"{with_tags:.0f}", f"{with_tags - plain:+.0f}"])
    return rows


def memory_peer_sizes(count: int) -> list[tuple[str, float, int]]:
    from taskiq_flow.cache import InMemoryCacheAdapter as TaskiqMemory

    rows = []
    for label, factory, ttl_kw in (
        ("cachewire InMemory", InMemoryCacheAdapter, {}),
        ("taskiq-flow InMemory", TaskiqMemory, {"ttl_seconds": 300}),
    ):
        gc.collect()
        tracemalloc.start()
        adapter = factory()

        async def fill(adapter: Any = adapter, ttl_kw: dict[str, Any] = ttl_kw) -> None:
            for i in range(count):
                await adapter.get_or_create(f"key-{i}", lambda i=i: i, **ttl_kw)

        asyncio.run(fill())
        used = tracemalloc.get_traced_memory()[0]
        asyncio.run(adapter.clear())
        gc.collect()
        left = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        rows.append((label, used / count, left))
    return rows


def delete_keys(url: str, prefix: str) -> int:
    """Delete this run's keys (names containing ``prefix``) and nothing else; how many."""
    client = redis.Redis.from_url(url)
    removed = 0
    batch: list[bytes] = []
    for name in client.scan_iter(match=f"*{prefix}*", count=1000):
        batch.append(name)
        if len(batch) >= 500:
            removed += client.unlink(*batch)
            batch = []
    if batch:
        removed += client.unlink(*batch)
    client.close()
    return removed
