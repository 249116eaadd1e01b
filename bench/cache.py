"""Read-side benchmarks: cachewire against the peers and the physical limits, in one run.

Run: uv run python bench/cache.py [--quick]
Writes the "cache" section of bench/RESULTS.md.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# These scripts are named after what they measure, and bench/queue.py after a standard module:
# their folder goes last on sys.path, so `import queue` or `import celery` finds the real one.
_BENCH = _os.path.dirname(_os.path.abspath(__file__))
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _BENCH] + [_BENCH]

import argparse
import asyncio
import logging
import multiprocessing
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from types import TracebackType
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

import redis.asyncio as aioredis

# Running a script puts its folder first on sys.path, where bench/taskiq.py would stand in for the
# taskiq package the peers import: the folder goes last, after the installed packages.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]
import _cache_paths as paths
from _common import CommandCounter, private_redis, write_section
from cachewire.cache import InMemoryCacheAdapter, RedisCacheAdapter

# A database the machine's other users leave alone; this run only ever deletes its own keys,
# whose names all contain RUN.
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
RUN = f"cwbench-{os.getpid()}-{secrets.token_hex(3)}"
CALLS_KEY = "bench:creator-calls"
SLOW_CREATOR = 2.0  # seconds the creator runs while the waiters' commands are counted
# taskiq-flow logs every failed call at ERROR; the tables count those errors instead.
logging.getLogger("taskiq_flow").setLevel(logging.CRITICAL)
Creator = Callable[[], Awaitable[Any]]


def error_names(results: list[Any]) -> Counter[str]:
    return Counter(type(r).__name__ for r in results if isinstance(r, BaseException))


async def stampede(
    label: str, adapter: Any, call: Callable[..., Awaitable[Any]], callers: int, fail: bool = False
) -> tuple[str, int, float, Counter[str]]:
    calls = 0

    async def creator() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        if fail:
            raise ValueError("creator failed")
        return 42

    start = time.perf_counter()
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(call(adapter, f"{RUN}:stampede-{fail}", creator) for _ in range(callers)),
                return_exceptions=True,
            ),
            timeout=20,
        )
    except TimeoutError:
        return (label + " (hung: stopped after 20 s)", calls, 20.0, Counter({"hung": callers}))
    return (label, calls, time.perf_counter() - start, error_names(results))


async def stampedes(callers: int, waiters: int) -> list[tuple[str, int, float, Counter[str]]]:
    """``callers`` callers of a missing key; then a failing creator with ``waiters`` waiters."""
    from taskiq_flow.cache import RedisCacheAdapter as TaskiqRedis

    ours_call = lambda a, k, c: a.get_or_create(k, c, 300)  # noqa: E731
    taskiq_call = lambda a, k, c: a.get_or_create(k, c, ttl_seconds=300)  # noqa: E731
    rows = []
    for fail in (False, True):
        count = waiters + 1 if fail else callers
        suffix = f" (failing creator, 1 + {waiters} waiters)" if fail else f" ({callers} callers)"
        rows.append(
            await stampede(
                "cachewire InMemory" + suffix, InMemoryCacheAdapter(), ours_call, count, fail
            )
        )
        redis_ours = RedisCacheAdapter(REDIS, namespace=f"{RUN}-st{fail}")
        rows.append(await stampede("cachewire Redis" + suffix, redis_ours, ours_call, count, fail))
        await redis_ours.aclose()
        # taskiq-flow's in-memory adapter holds a threading.Lock across the awaited creator, which
        # blocks the whole event loop with an async creator: it is not run here.
        rows.append(
            (
                "taskiq-flow InMemory" + suffix + ": not run, blocks the event loop",
                0,
                0.0,
                Counter(),
            )
        )
        rows.append(
            await stampede(
                "taskiq-flow Redis" + suffix,
                TaskiqRedis(redis_url=REDIS, default_ttl=300, lock_timeout=10),
                taskiq_call,
                count,
                fail,
            )
        )
    return rows


# ------------------------------------------- Redis commands, as a private server receives them


class RedisPeer(Protocol):
    """One library's stampede-protected read-through call on Redis."""

    async def get_or_create(self, key: str, creator: Creator) -> Any: ...

    async def aclose(self) -> None: ...


class OursRedis:
    label = "cachewire RedisCacheAdapter"

    def __init__(self, url: str) -> None:
        self._cache = RedisCacheAdapter(url, namespace="bench", lock_timeout=10)

    async def get_or_create(self, key: str, creator: Creator) -> Any:
        return await self._cache.get_or_create(key, creator, 300)

    async def aclose(self) -> None:
        await self._cache.aclose()


class TaskiqRedisPeer:
    label = "taskiq-flow RedisCacheAdapter"

    def __init__(self, url: str) -> None:
        from taskiq_flow.cache import RedisCacheAdapter as TaskiqRedis

        self._cache = TaskiqRedis(redis_url=url, default_ttl=300, lock_timeout=10)

    async def get_or_create(self, key: str, creator: Creator) -> Any:
        return await self._cache.get_or_create(key, creator, ttl_seconds=300)

    async def aclose(self) -> None:
        await self._cache._redis.aclose()  # taskiq-flow offers no close()


class CashewsLocked:
    """cashews' stampede protection: ``@cache(ttl=..., lock=True)`` on one decorated function."""

    label = "cashews @cache(lock=True)"

    def __init__(self, url: str) -> None:
        from cashews import Cache

        self._cache = Cache()
        self._cache.setup(url)

        @self._cache(ttl=300, key="{key}", lock=True)
        async def call(make: Creator, key: str) -> Any:
            return await make()

        self._call = call

    async def get_or_create(self, key: str, creator: Creator) -> Any:
        return await self._call(creator, key=key)

    async def aclose(self) -> None:
        await self._cache.close()


class AiocacheStampede:
    """aiocache's stampede protection: ``@cached_stampede`` (a Redis lock) on one function."""

    label = "aiocache @cached_stampede"

    def __init__(self, url: str) -> None:
        from aiocache import Cache, cached_stampede

        parts = urlsplit(url)

        @cached_stampede(
            lease=10,
            ttl=300,
            key_builder=lambda _f, _make, key: key,
            cache=Cache.REDIS,
            namespace="bench",
            endpoint=parts.hostname,
            port=parts.port or 6379,
            db=int(parts.path.strip("/") or 0),
        )
        async def call(make: Creator, key: str) -> Any:
            return await make()

        self._call = call

    async def get_or_create(self, key: str, creator: Creator) -> Any:
        return await self._call(creator, key=key)

    async def aclose(self) -> None:
        await self._call.cache.close()


# By label; a spawned process is told which one to use by its label.
PEERS: dict[str, Callable[[str], RedisPeer]] = {
    OursRedis.label: OursRedis,
    TaskiqRedisPeer.label: TaskiqRedisPeer,
    CashewsLocked.label: CashewsLocked,
    AiocacheStampede.label: AiocacheStampede,
}


class Outcome(NamedTuple):
    """What one measured run did: the server's commands, creator calls, errors, wall time."""

    commands: Counter[str]
    creator_calls: int
    errors: Counter[str]
    wall: float


def counted_creator(
    client: aioredis.Redis, seconds: float, started: asyncio.Event | None = None
) -> Creator:
    """A creator that INCRs ``CALLS_KEY`` on the server (so every process counts), then sleeps."""

    async def creator() -> int:
        await client.incr(CALLS_KEY)
        if started is not None:
            started.set()
        await asyncio.sleep(seconds)
        return 42

    return creator


async def call_counter(url: str, callers: int) -> aioredis.Redis:
    """A client for ``counted_creator`` with its connections for ``callers`` already open."""
    client = aioredis.Redis.from_url(url)
    await asyncio.gather(*(client.ping() for _ in range(callers)))
    return client


async def warm(peer: RedisPeer, callers: int) -> None:
    """Open the connections ``callers`` concurrent hits need and load any scripts, unmeasured."""

    async def one() -> int:
        return 1

    await peer.get_or_create("warm", one)
    await asyncio.gather(*(peer.get_or_create("warm", one) for _ in range(callers)))


async def run_callers(
    peer: RedisPeer, callers: int, creator: Creator, timeout: float
) -> tuple[Counter[str], float]:
    """Errors by type and wall seconds of ``callers`` concurrent calls of the key ``slow``."""
    start = time.perf_counter()
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(peer.get_or_create("slow", creator) for _ in range(callers)),
                return_exceptions=True,
            ),
            timeout,
        )
    except TimeoutError:
        return Counter({f"hung after {timeout:g} s": callers}), timeout
    return error_names(results), time.perf_counter() - start


def library_commands(counter: CommandCounter, before: int) -> Outcome:
    """The commands since ``before`` less the creators' INCRs, and the creator calls."""
    seen = counter.since(before)
    calls = counter.number(CALLS_KEY)
    seen.subtract({"incrby": calls})  # redis-py sends INCR as INCRBY
    return Outcome(+seen, calls, Counter(), 0.0)


def per_call(seen: Counter[str], calls: int) -> str:
    return ", ".join(f"{count / calls:g} {name}" for name, count in seen.most_common()) or "none"


async def round_trips(url: str, counter: CommandCounter, n: int) -> list[tuple[str, ...]]:
    """Commands the server sees per hit and per miss whose caller computes (the leader)."""

    async def value() -> int:
        return 1

    rows: list[tuple[str, ...]] = []
    for label, factory in PEERS.items():
        counter.flush()
        peer = factory(url)
        await warm(peer, 1)
        before = counter.snapshot()
        for i in range(n):
            await peer.get_or_create(f"miss-{i}", value)
        misses = counter.since(before)
        before = counter.snapshot()
        for _ in range(n):
            await peer.get_or_create("warm", value)
        hits = counter.since(before)
        await peer.aclose()
        rows.append(
            (
                label,
                f"{hits.total() / n:g}",
                f"{misses.total() / n:g}",
                per_call(hits, n),
                per_call(misses, n),
            )
        )
    return rows


#: Seconds spawned worker processes may take to start, connect and warm up.
STARTUP_LIMIT = 600


class Workers:
    """Spawned processes that each run ``callers`` callers of the key ``slow`` together.

    They import at once, connect when ``ready()`` is called (which returns once all of them are
    connected and warm) and call when ``go()`` is; ``results()`` gives each one's errors and wall.
    """

    def __init__(self, label: str, url: str, *, processes: int, callers: int, seconds: float):
        context = multiprocessing.get_context("spawn")
        self._begin, self._go = context.Event(), context.Event()
        self._ready = context.Barrier(processes + 1)
        self._out: Queue[tuple[Counter[str], float]] = context.Queue()
        args = (label, url, callers, seconds, self._begin, self._ready, self._go, self._out)
        self._processes = [
            context.Process(target=worker_main, args=args, daemon=True) for _ in range(processes)
        ]
        for process in self._processes:
            process.start()

    def ready(self) -> None:
        self._begin.set()
        # Spawned processes import the whole stack: on a loaded machine that alone has taken
        # over two minutes.
        self._ready.wait(timeout=STARTUP_LIMIT)

    def go(self) -> None:
        self._go.set()

    def results(self) -> list[tuple[Counter[str], float]]:
        return [self._out.get(timeout=120) for _ in self._processes]

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._begin.set()
        self._go.set()
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()


def worker_main(
    label: str,
    url: str,
    callers: int,
    seconds: float,
    begin: Event,
    ready: Barrier,
    go: Event,
    out: Queue[tuple[Counter[str], float]],
) -> None:
    begin.wait(timeout=300)
    out.put(asyncio.run(worker_calls(label, url, callers, seconds, ready, go)))


async def worker_calls(
    label: str, url: str, callers: int, seconds: float, ready: Barrier, go: Event
) -> tuple[Counter[str], float]:
    peer = PEERS[label](url)
    client = await call_counter(url, callers)
    await warm(peer, callers)
    ready.wait(timeout=STARTUP_LIMIT)
    go.wait(timeout=STARTUP_LIMIT)
    result = await run_callers(peer, callers, counted_creator(client, seconds), seconds * 5 + 10)
    await peer.aclose()
    await client.aclose()
    return result


async def in_process(
    label: str, url: str, counter: CommandCounter, callers: int, seconds: float
) -> Outcome:
    """``callers`` callers in this process of a key whose creator runs ``seconds``."""
    counter.flush()
    peer = PEERS[label](url)
    client = await call_counter(url, callers)
    await warm(peer, callers)
    before = counter.snapshot()
    errors, wall = await run_callers(
        peer, callers, counted_creator(client, seconds), seconds * 5 + 10
    )
    outcome = library_commands(counter, before)
    await peer.aclose()
    await client.aclose()
    return outcome._replace(errors=errors, wall=wall)


async def beside_leader(
    label: str, url: str, counter: CommandCounter, others: Workers, seconds: float
) -> Outcome:
    """One caller here computes for ``seconds``; ``others`` call the same key once it has begun."""
    counter.flush()
    peer = PEERS[label](url)
    client = await call_counter(url, 1)
    await warm(peer, 1)
    others.ready()
    before = counter.snapshot()
    started = asyncio.Event()
    leader = asyncio.ensure_future(
        run_callers(peer, 1, counted_creator(client, seconds, started), seconds * 5 + 10)
    )
    await started.wait()
    others.go()
    errors, wall = await leader
    for their_errors, their_wall in await asyncio.to_thread(others.results):
        errors += their_errors
        wall = max(wall, their_wall)
    outcome = library_commands(counter, before)
    await peer.aclose()
    await client.aclose()
    return outcome._replace(errors=errors, wall=wall)


def minus(outcome: Outcome, leader: Outcome) -> Outcome:
    """``outcome`` without the commands the leader sends on its own."""
    return outcome._replace(commands=outcome.commands - leader.commands)


async def waiter_traffic(
    url: str, counter: CommandCounter, callers: int, seconds: float
) -> list[tuple[str, str, Outcome]]:
    """Per library: the leader alone, then waiters in its process, then in a second process."""
    rows = []
    for label in PEERS:
        # The second process imports while this one measures; it connects only when asked.
        with Workers(label, url, processes=1, callers=callers, seconds=seconds) as others:
            alone = await in_process(label, url, counter, 1, seconds)
            shared = await in_process(label, url, counter, callers, seconds)
            crossed = await beside_leader(label, url, counter, others, seconds)
        rows += [
            (label, "the leader alone (subtracted below)", alone),
            (label, f"leader + {callers - 1} waiters in one process", minus(shared, alone)),
            (label, f"{callers} callers in a second process", minus(crossed, alone)),
        ]
    return rows


def cross_process_stampede(
    url: str, counter: CommandCounter, processes: int, callers: int, seconds: float
) -> list[tuple[str, Outcome]]:
    """Per library: ``processes`` spawned processes x ``callers`` callers of one missing key."""
    rows = []
    for label in PEERS:
        counter.flush()
        with Workers(label, url, processes=processes, callers=callers, seconds=seconds) as workers:
            workers.ready()
            before = counter.snapshot()
            workers.go()
            results = workers.results()
            outcome = library_commands(counter, before)
        errors = sum((errors for errors, _ in results), Counter[str]())
        wall = max(wall for _, wall in results)
        rows.append((label, outcome._replace(errors=errors, wall=wall)))
    return rows


def hiredis_parser() -> bool:
    """Whether redis-py parses replies with hiredis here."""
    from redis.utils import HIREDIS_AVAILABLE

    return bool(HIREDIS_AVAILABLE)


def is_number(cell: str) -> bool:
    try:
        float(cell.rstrip("x").replace(",", ""))
    except ValueError:
        return False
    return True


def table(title: str, head: list[str], rows: list[list[str]], note: str = "") -> list[str]:
    """A markdown table under a ``###`` title; columns of numbers are right-aligned."""
    lines = ["", f"### {title}", ""]
    if note:
        lines += [note, ""]
    lines.append("| " + " | ".join(head) + " |")
    numeric = [all(is_number(row[i]) for row in rows) for i in range(len(head))]
    lines.append("|" + "".join(" ---: |" if right else " --- |" for right in numeric))
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def errors_text(errors: Counter[str]) -> str:
    return ", ".join(f"{count} {name}" for name, count in errors.most_common()) or "none"


async def counted_runs(
    trip_calls: int,
) -> tuple[list[tuple[str, ...]], list[tuple[str, str, Outcome]], list[tuple[str, Outcome]]]:
    """The measurements that count commands, on a private redis-server of their own."""
    with private_redis() as url:
        counter = CommandCounter(url)
        trips = await round_trips(url, counter, trip_calls)
        print("round trips done", flush=True)
        traffic = await waiter_traffic(url, counter, callers=50, seconds=SLOW_CREATOR)
        print("waiter traffic done", flush=True)
        crossed = await asyncio.to_thread(
            cross_process_stampede, url, counter, processes=4, callers=50, seconds=0.2
        )
        print("cross-process stampedes done", flush=True)
        counter.close()
    return trips, traffic, crossed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    per_round, rounds = (1_000, 10) if quick else (2_000, 40)
    redis_per_round, redis_rounds = (100, 10) if quick else (200, 40)
    callers = 200 if quick else 1000
    entries = 10_000 if quick else 100_000
    try:
        mem_latency, mem_ratios = asyncio.run(paths.memory_paths(per_round, rounds))
        print("memory hit paths done", flush=True)
        red_latency, red_ratios, near_report = asyncio.run(
            paths.redis_paths(REDIS, RUN, redis_per_round, redis_rounds)
        )
        print("redis hit paths done", flush=True)
        big_size, big_rows = asyncio.run(paths.large_values(REDIS, RUN, 3 if quick else 8))
        print("large values done", flush=True)
        stam = asyncio.run(stampedes(callers, waiters=100))
        print("stampedes done", flush=True)
    finally:
        print(f"deleted {paths.delete_keys(REDIS, RUN)} keys of this run", flush=True)
    trip_calls = 100 if quick else 1000
    trips, traffic, crossed = asyncio.run(counted_runs(trip_calls))
    per_entry = paths.memory_peer_sizes(entries)
    cached_sizes = paths.cached_entry_sizes(entries)

    lines = [
        f"Command: `uv run python bench/cache.py{' --quick' if quick else ''}`",
        "",
        "Every row of a table is measured in short rounds that take turns with the other rows "
        f"({rounds} rounds in memory, {redis_rounds} on Redis), in an order drawn afresh each "
        "round; a ratio is the median over the rounds of the row against the row it compares "
        "with, measured in the same round. The machine is shared, so absolute figures drift; "
        "ratios are what to read.",
    ]
    lines += table(
        "Hit paths, in memory: ratios",
        ["path", "against (the fastest of)", "ratio", "goal", "met"],
        mem_ratios,
    )
    lines += table(
        "Hit paths, in memory: latency",
        ["path", "µs/op (median)", "µs/op (best round)"],
        mem_latency,
        "aiocache's `@cached` wraps every cache operation in `asyncio.wait_for` unless "
        "`timeout=None`; dogpile's default key generator refuses keyword arguments, so it is "
        "called positionally.",
    )
    lines += table(
        "Hit paths, Redis on loopback: ratios",
        ["path", "against (the fastest of)", "ratio", "goal", "met"],
        red_ratios,
        "The floors read the same JSON value the cached functions return, with the same "
        f"redis-py client ({'hiredis' if hiredis_parser() else 'the pure-Python'} reply parser; "
        "the `cachewire[redis]` extra installs hiredis). A hit takes a connection from the "
        "client's pool and sends its read on it, without the client's per-command layers. "
        "A `@cached` "
        "function's entries carry two tags (the function and its partition), so its hit is one "
        "MGET of the value and the two tag versions. With `local_tag_versions=True` the tag "
        "versions are kept in the process (Redis client tracking drops them when a tag key "
        "changes), so the hit is one GET; the tracking connection of that adapter applied "
        f"{near_report['messages']} invalidation messages, and "
        f"{near_report['fetches']} tagged reads fetched their versions from Redis: the first "
        "reads, and those that found a message unread (the reader pings after a second of "
        "silence, and the reply is such a message).",
    )
    lines += table(
        "Hit paths, Redis on loopback: latency",
        ["path", "µs/op (median)", "µs/op (best round)"],
        red_latency,
    )
    lines += table(
        f"Large values ({big_size / 1e6:.2f} MB of JSON), Redis on loopback",
        ["operation", "ms (median)", "against", "ratio", "goal", "met"],
        big_rows,
        "The strict JSON codec refuses a value that would not come back equal; its encode rows "
        "(that check included) are against a bare `json.dumps` of the same value. It encodes "
        "with orjson when it is installed (as here: the `cachewire[redis]` and `cachewire[orjson]` "
        "extras bring it) and with json otherwise; the rows without orjson show the second case. The dumps-only codec rows "
        "show what json with no check at all reaches.",
    )
    lines += table(
        "Same-key misses in one process (creator sleeps 0.2 s)",
        ["case", "creator calls", "wall s", "callers that got an error", "errors"],
        [
            [label, str(calls), f"{wall:.2f}", str(errors.total()), errors_text(errors)]
            for label, calls, wall, errors in stam
        ],
    )
    lines += table(
        "Redis commands per call",
        ["library", "per hit", "per leader miss", "a hit sends", "a leader miss sends"],
        [list(row) for row in trips],
        "Commands a private `redis-server` received from clients (read with MONITOR; a script "
        "counts once, as the EVAL/EVALSHA that carried it), averaged over "
        f"{trip_calls} hits of one key and {trip_calls} misses of distinct keys whose caller "
        "computes, one call at a time, after a warm-up (connections open, scripts loaded).",
    )
    lines += table(
        f"Redis commands from waiters while a {SLOW_CREATOR:g} s creator runs",
        [
            "library",
            "case",
            f"commands in the {SLOW_CREATOR:g} s",
            "per second",
            "creator calls",
            "errors",
            "what was sent",
        ],
        [
            [
                label,
                case,
                str(o.commands.total()),
                f"{o.commands.total() / SLOW_CREATOR:.0f}",
                str(o.creator_calls),
                errors_text(o.errors),
                per_call(o.commands, 1),
            ]
            for label, case, o in traffic
        ],
        f"Commands counted as above. One caller computes (`await asyncio.sleep({SLOW_CREATOR:g})`); "
        "what the leader sends when alone is subtracted from the rows below it, and so are the "
        'creators\' INCRs of a call counter. "A second process" is a spawned process whose '
        "callers start once the leader is computing. Target: under 50 commands/s per process.",
    )
    lines += table(
        "4 processes x 50 callers of one missing key (creator sleeps 0.2 s)",
        [
            "library",
            "creator calls",
            "wall s",
            "callers that got an error",
            "Redis commands",
            "errors",
        ],
        [
            [
                label,
                str(o.creator_calls),
                f"{o.wall:.2f}",
                str(o.errors.total()),
                str(o.commands.total()),
                errors_text(o.errors),
            ]
            for label, o in crossed
        ],
        "Spawned processes released together by an event; the creator INCRs a counter key on the "
        "server (those INCRs are not in the command count, which covers all four processes). "
        "Target: 1 creator call.",
    )
    lines += table(
        f"Memory ({entries:,} keys)",
        ["adapter", "bytes per entry", "bytes left after clear()"],
        [[label, f"{per:.0f}", f"{left:.0f}"] for label, per, left in per_entry],
    )
    lines += table(
        f"Memory of @cached entries ({entries:,} entries)",
        ["entries", "plain entries, same keys", "@cached entries", "difference"],
        cached_sizes,
        "Bytes per entry, traced while filling an in-memory adapter: the same keys stored "
        "with `get_or_create` and no tags, then through the `@cached` function (its tags, its "
        "key plan's memo and everything else it keeps included).",
    )
    text = "\n".join(lines)
    print(text)
    write_section("cache", text)


if __name__ == "__main__":
    main()
