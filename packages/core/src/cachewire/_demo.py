"""``cachewire demo``: a short tour of what the library does, with no services needed."""

from __future__ import annotations

import asyncio

import attrs

__all__ = ["run_demo"]


def _title(text: str) -> None:
    print()
    print(text)
    print("-" * len(text))


def _row(label: str, value: object) -> None:
    print(f"  {label:<44} {value}")


async def _stampede() -> None:
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


async def _serve_stale() -> None:
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
    _row("stale hits counted", cache.get_stats()["stale_hits"])


def _partitions() -> None:
    from cachewire.cache import InMemoryCacheAdapter, cached

    _title("3. Partition invalidation in O(1)")
    cache = InMemoryCacheAdapter()
    computed: list[tuple[int, int]] = []

    @cached(cache=cache, partition=("user_id",), name="demo.orders_page")
    def orders_page(user_id: int, page: int) -> str:
        computed.append((user_id, page))
        return f"user {user_id} page {page}"

    for user_id in (1, 2):
        for page in (1, 2, 3):
            orders_page(user_id, page)
    _row("pages cached for users 1 and 2", len(computed))
    computed.clear()
    orders_page.invalidate(user_id=1)
    for user_id in (1, 2):
        for page in (1, 2, 3):
            orders_page(user_id, page)
    _row("recomputed after invalidate(user_id=1)", computed)
    _row("stats", {k: cache.get_stats()[k] for k in ("hits", "misses", "hit_rate", "size")})


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


def _write_side() -> None:
    _title("4. A data change invalidates the right partition, on each built-in dispatcher")
    print("  order 1 moves from customer 7 to customer 8; customers 7, 8 and 9 were cached")
    for dispatcher in ("inline", "threadpool", "asyncio"):
        _row(f"{dispatcher}: customers recomputed afterwards", _one_dispatcher(dispatcher))


def run_demo() -> int:
    print("cachewire demo: everything below runs in this process, no services needed.")
    asyncio.run(_stampede())
    asyncio.run(_serve_stale())
    _partitions()
    _write_side()
    print()
    return 0
