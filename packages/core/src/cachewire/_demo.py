"""``cachewire demo``: a short tour of what the library does, with no services needed."""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import sys
from typing import Any

import attrs

__all__ = ["run_demo"]


def _title(text: str) -> None:
    print()
    print(text)
    print("-" * len(text))


def _row(label: str, value: object) -> None:
    print(f"  {label:<46} {value}")


@attrs.define
class _Story:
    """What each part showed, for the closing one-line summary."""

    callers: int = 0
    computations: int = 0
    stale_reads: int = 0
    partition_recomputed: int = 0
    partition_kept: int = 0
    dispatchers: list[str] = attrs.field(factory=list)
    moved_ok: bool = True
    runs_by_policy: dict[str, int] = attrs.field(factory=dict)
    timed_out: int = 0

    def summary(self) -> str:
        runs = ", ".join(f"{policy} {runs}" for policy, runs in self.runs_by_policy.items())
        moved = "precise" if self.moved_ok else "NOT precise"
        return (
            f"summary: {self.callers} callers -> {self.computations} computation; "
            f"{self.stale_reads} stale reads served during a refresh; one partition invalidated, "
            f"{self.partition_recomputed} entries recomputed, {self.partition_kept} stayed cached; "
            f"rule invalidation {moved} on {', '.join(self.dispatchers)}; "
            f"5 duplicate submissions ran {runs} time(s); {self.timed_out} task timed out; "
            "no services used."
        )


async def _stampede(story: _Story) -> None:
    from cachewire.cache import InMemoryCacheAdapter

    _title("1. A thousand callers, one computation")
    cache = InMemoryCacheAdapter(default_ttl=60)
    calls = 0
    release = asyncio.Event()

    async def load_report() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await release.wait()
        return {"orders": 1234}

    callers = [
        asyncio.create_task(cache.get_or_create("report:today", load_report)) for _ in range(1000)
    ]
    while cache.get_stats()["coalesced"] < 999:
        await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*callers)
    _row("callers", len(results))
    _row("creator calls", calls)
    _row("every caller got the same value", all(r == {"orders": 1234} for r in results))
    stats = cache.get_stats()
    _row("stats: misses / coalesced waiters", f"{stats['misses']} / {stats['coalesced']}")
    story.callers, story.computations = len(results), calls


async def _serve_stale(story: _Story) -> None:
    from cachewire.cache import InMemoryCacheAdapter

    _title("2. Stale values served while one caller refreshes")
    now = [0.0]
    cache = InMemoryCacheAdapter(default_ttl=10, stale_ttl=30, clock=lambda: now[0])
    version = 0
    refresh_started = asyncio.Event()
    finish_refresh = asyncio.Event()

    async def price() -> str:
        nonlocal version
        version += 1
        if version > 1:
            refresh_started.set()
            await finish_refresh.wait()
        return f"price v{version}"

    first = await cache.get_or_create("price:42", price)
    _row("first read (computed)", first)
    now[0] = 15.0  # past the 10 s TTL, inside the 30 s grace
    during = [await cache.get_or_create("price:42", price) for _ in range(5)]
    await refresh_started.wait()
    _row("5 reads after expiry, during the refresh", sorted(set(during)))
    finish_refresh.set()
    while (await cache.get("price:42")) != "price v2":
        await asyncio.sleep(0)
    _row("read after the refresh finished", await cache.get("price:42"))
    _row("creator calls (1 initial + 1 refresh)", version)
    story.stale_reads = cache.get_stats()["stale_hits"]
    _row("stale hits counted", story.stale_reads)


def _partitions(story: _Story) -> None:
    from cachewire.cache import InMemoryCacheAdapter, cached

    _title("3. Partition invalidation in O(1)")
    cache = InMemoryCacheAdapter()
    computed: list[tuple[int, int]] = []

    @cached(cache=cache, partition=("user_id",), name="demo.orders_page")
    def orders_page(user_id: int, page: int) -> str:
        computed.append((user_id, page))
        return f"user {user_id} page {page}"

    everything = [(user_id, page) for user_id in (1, 2) for page in (1, 2, 3)]
    for user_id, page in everything:
        orders_page(user_id, page)
    _row("pages cached for users 1 and 2", len(computed))
    computed.clear()
    orders_page.invalidate(user_id=1)
    for user_id, page in everything:
        orders_page(user_id, page)
    kept = [entry for entry in everything if entry not in computed]
    _row("recomputed after invalidate(user_id=1)", computed)
    _row("stayed cached (served as hits)", kept)
    _row("stats", {k: cache.get_stats()[k] for k in ("hits", "misses", "hit_rate", "size")})
    story.partition_recomputed, story.partition_kept = len(computed), len(kept)


@attrs.define
class _Order:
    id: int
    customer_id: int


def _one_dispatcher(dispatcher: str) -> list[int]:
    from cachewire import Rule, cached, changed, collect
    from cachewire.cache import InMemoryCacheAdapter
    from cachewire.dispatchers import AsyncIODispatcher, ThreadPoolDispatcher

    computed: list[int] = []

    @cached(
        cache=InMemoryCacheAdapter(),
        partition=("customer_id",),
        name=f"demo.customer_orders.{dispatcher}",
        invalidates_on=[
            Rule(
                model="demo.Order",
                field_mapping={"customer_id": "customer_id"},
                dispatcher=dispatcher,
            )
        ],
    )
    def customer_orders(customer_id: int) -> str:
        computed.append(customer_id)
        return f"orders of customer {customer_id}"

    for customer in (7, 8, 9):
        customer_orders(customer)
    computed.clear()

    async def change_and_wait() -> None:
        with collect():
            # The order moved from customer 7 to customer 8: both partitions are stale.
            changed("demo.Order", _Order(id=1, customer_id=8), old={"customer_id": 7})
        await asyncio.to_thread(ThreadPoolDispatcher.flush, 10)
        await AsyncIODispatcher.drain()

    asyncio.run(change_and_wait())
    for customer in (7, 8, 9):
        customer_orders(customer)
    return computed


def _write_side(story: _Story) -> None:
    _title("4. A data change invalidates the right partition, on each built-in dispatcher")
    print("  order 1 moves from customer 7 to customer 8; customers 7, 8 and 9 were cached")
    for dispatcher in ("inline", "threadpool", "asyncio"):
        recomputed = _one_dispatcher(dispatcher)
        kept = [customer for customer in (7, 8, 9) if customer not in recomputed]
        _row(f"{dispatcher}: customers recomputed afterwards", recomputed)
        _row(f"{dispatcher}: customers that stayed cached", kept)
        story.dispatchers.append(dispatcher)
        story.moved_ok = story.moved_ok and recomputed == [7, 8] and kept == [9]


class _Collected(logging.Handler):
    """Keeps the library's log lines so the demo can show them in place."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def _duplicates(policy: str, registry: Any) -> tuple[int, dict[str, int]]:
    from cachewire import task
    from cachewire.dispatchers import AsyncIODispatcher

    runs = 0

    @task(
        name=f"demo.rebuild_report.{policy}",
        registry=registry,
        dispatcher="asyncio",
        on_duplicate=policy,
    )
    async def rebuild_report(customer_id: int) -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0)

    # Five identical submissions before the first one has run: the duplicate guard decides.
    outcomes = collections.Counter(rebuild_report.delay(42).outcome for _ in range(5))
    await AsyncIODispatcher.drain()
    return runs, dict(sorted(outcomes.items()))


async def _timeout(registry: Any, logs: _Collected) -> int:
    from cachewire import task
    from cachewire.dispatchers import AsyncIODispatcher
    from cachewire.tasks import task_stats

    @task(name="demo.slow_export", registry=registry, dispatcher="asyncio", timeout=0.05)
    async def slow_export() -> None:
        await asyncio.Event().wait()  # never finishes on its own

    before = task_stats().get("timed_out", 0)
    slow_export.delay()
    await AsyncIODispatcher.drain()
    timed_out = task_stats().get("timed_out", 0) - before
    _row("asyncio, timeout=0.05 s: runs that timed out", timed_out)
    logged = [re.sub(r" \[\w+\]", "", m) for m in logs.messages if "timeout" in m]
    if logged:
        line = logged[-1].split(": ")[0]
        _row("logged (and counted as timed_out)", line)
    return timed_out


def _tasks(story: _Story) -> None:
    from cachewire import task
    from cachewire.errors import ConfigurationError
    from cachewire.tasks import TaskRegistry

    _title("5. Tasks: duplicates and timeouts")
    registry = TaskRegistry("cachewire-demo")
    print("  the same task and arguments submitted 5 times, before the first one has run")
    for policy in ("parallel", "discard", "serial", "queue_one"):
        runs, outcomes = asyncio.run(_duplicates(policy, registry))
        _row(f"on_duplicate={policy!r}: runs, outcomes", f"{runs}  {outcomes}")
        story.runs_by_policy[policy] = runs
    logs = _Collected()
    library = logging.getLogger("cachewire")
    library.addHandler(logs)  # shown below instead of printed to stderr
    try:
        story.timed_out = asyncio.run(_timeout(registry, logs))
    finally:
        library.removeHandler(logs)
    try:
        task(name="demo.inline_export", registry=registry, dispatcher="inline", timeout=5)(
            lambda: None
        )
        refused = "accepted (unexpected)"
    except ConfigurationError as exc:
        refused = str(exc).split(":", 1)[1].split(";")[0].strip()
    _row("inline, timeout=5: refused at decoration", refused)


def run_demo() -> int:
    print("cachewire demo: everything below runs in this process, no services needed.")
    story = _Story()
    asyncio.run(_stampede(story))
    asyncio.run(_serve_stale(story))
    _partitions(story)
    _write_side(story)
    _tasks(story)
    status = _framework_parts()
    print()
    print(story.summary())
    return status


def _framework_parts() -> int:
    """The demos of installed framework adapters (found by name, so the core imports none)."""
    import importlib

    for distribution, module in (("cachewire-django", "cachewire_django.demo"),):
        try:
            demo = importlib.import_module(module)
        except ModuleNotFoundError:
            print(f"\n({distribution} is not installed: its part of the demo is skipped)")
            continue
        print()
        sys.stdout.flush()
        status: int = demo.run(sys.stdout)
        if status:
            return status
    return 0
