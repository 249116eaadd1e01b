"""Write-side benchmarks: what a change event costs, what a payload costs, how fast pools drain.

Run: uv run python bench/dispatch.py [--quick]
Writes the "dispatch" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import decimal
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _common import write_section
from cachewire import Rule, cached, changed, collect
from cachewire.cache import InMemoryCacheAdapter
from cachewire.cache._cached import CachedFunction
from cachewire.dispatch import AsyncIODispatcher, ThreadPoolDispatcher, dispatch_stats
from cachewire.rules import _rule
from cachewire.rules._payload import decode_payload, encode_payload

TARGET_US_PER_RULE = 20.0


class Order:
    """The changed object: what an ORM row looks like to the core."""

    def __init__(self, customer_id: int, shop_id: int) -> None:
        self.customer_id = customer_id
        self.shop_id = shop_id


def declare(model: str, rules: int, dispatcher: str) -> tuple[list[CachedFunction[..., Any]], Any]:
    """``rules`` cached functions, each with one rule on ``model``; returns them and the cache."""
    cache = InMemoryCacheAdapter()
    functions = []
    for index in range(rules):

        def orders(customer_id: int, page: int = 1, index: int = index) -> list[int]:
            return [customer_id, page, index]

        functions.append(
            cached(
                cache=cache,
                partition=("customer_id",),
                name=f"bench.{model}.{dispatcher}.{index}",
                invalidates_on=[
                    Rule(
                        model=model,
                        field_mapping={"customer_id": "customer_id"},
                        dispatcher=dispatcher,
                    )
                ],
            )(orders)
        )
    return functions, cache


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def median_us(repeats: int, run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(repeats))


def per_call_us(call: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


def check_invalidates(functions: list[CachedFunction[..., Any]], model: str) -> None:
    """Fail loudly unless a change really makes every rule's partition stale."""
    for function in functions:
        function(7)
    before = [function.cache.get_stats()["creator_calls"] for function in functions[:1]]
    changed(model, Order(7, 1))
    for function in functions:
        function(7)
    after = functions[0].cache.get_stats()["creator_calls"]
    if after - before[0] != len(functions):
        raise SystemExit(f"{model}: a change recomputed {after - before[0]} of {len(functions)}")


def inline_costs(n: int, repeats: int) -> list[list[str]]:
    import _restflow

    rows = []
    for count in (1, 10):
        model = f"bench.Inline{count}"
        functions, _ = declare(model, count, "inline")
        check_invalidates(functions, model)
        order = Order(7, 1)

        def single_changes(model: str = model, order: Order = order) -> float:
            return per_call_us(lambda: changed(model, order), n)

        def batched(model: str = model) -> float:
            orders = [Order(i, 1) for i in range(n)]
            start = time.perf_counter()
            with collect():
                for each in orders:
                    changed(model, each)
            return (time.perf_counter() - start) / n * 1e6

        single = median_us(repeats, single_changes)
        peer = median_us(repeats, _restflow.change_cost(count, n))
        in_block = median_us(repeats, batched)
        for label, value in (
            (f"cachewire changed(), {count} rule(s)", single),
            (f"drf-restflow invalidate_for_instance, {count} rule(s)", peer),
            (f"cachewire changed() inside one collect() of {n}, {count} rule(s)", in_block),
        ):
            per_rule = value / count
            met = "yes" if per_rule < TARGET_US_PER_RULE else "**no**"
            if label.startswith("drf-restflow"):
                met = ""  # the target is ours
            ratio = f"{value / single:.2f}x"
            rows.append([label, f"{value:.2f}", f"{per_rule:.2f}", ratio, met])
    # The least any library can do: bump one version counter per rule in a plain function.
    versions: dict[tuple[str, int], int] = {}

    def floor(obj: Order, names: tuple[str, ...] = tuple(f"f{i}" for i in range(10))) -> None:
        for name in names:
            key = (name, obj.customer_id)
            versions[key] = versions.get(key, 0) + 1

    floor_us = median_us(repeats, lambda: per_call_us(lambda: floor(Order(7, 1)), n))
    rows.append(
        [
            "floor: plain function bumping 10 dict counters",
            f"{floor_us:.2f}",
            f"{floor_us / 10:.2f}",
            "",
            "",
        ]
    )
    return rows


def payload_costs(n: int, repeats: int) -> list[list[str]]:
    rule_ids = [f"bench.rule.{i}" for i in range(3)]
    kwargs = {
        "customer_id": 7,
        "code": "EU-12",
        "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "amount": decimal.Decimal("12.50"),
        "at": dt.datetime(2026, 11, 25, 8, 30, tzinfo=dt.UTC),
    }
    rule_kwargs = {rule_id: [kwargs] for rule_id in rule_ids}
    text = encode_payload(rule_ids, rule_kwargs)
    if decode_payload(text)[1] != rule_kwargs:
        raise SystemExit("the payload does not round-trip")
    encode = median_us(
        repeats, lambda: per_call_us(lambda: encode_payload(rule_ids, rule_kwargs), n)
    )
    decode = median_us(repeats, lambda: per_call_us(lambda: decode_payload(text), n))
    return [
        [
            "encode_payload (3 rules, int/str/UUID/Decimal/datetime)",
            f"{encode:.2f}",
            str(len(text)),
        ],
        ["decode_payload (the same)", f"{decode:.2f}", str(len(text))],
    ]


async def throughput(dispatcher: str, events: int) -> float:
    """Change events per second through ``dispatcher``, until every rule has run."""
    model = f"bench.Throughput.{dispatcher}"
    declare(model, 1, dispatcher)
    ran_before = dispatch_stats.invalidations
    start = time.perf_counter()
    for index in range(events):
        changed(model, Order(index, 1))
    if dispatcher == "asyncio":
        await AsyncIODispatcher.drain()
    elif not ThreadPoolDispatcher.flush(timeout=120):
        raise SystemExit("the thread pool did not drain")
    elapsed = time.perf_counter() - start
    ran = dispatch_stats.invalidations - ran_before
    if ran != events:
        raise SystemExit(f"{dispatcher} ran {ran} of {events} invalidations")
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, repeats, events = (2_000, 3, 5_000) if args.quick else (20_000, 5, 50_000)
    inline = inline_costs(n, repeats)
    payload = payload_costs(n, repeats)
    pool = statistics.median(asyncio.run(throughput("threadpool", events)) for _ in range(repeats))
    loop = statistics.median(asyncio.run(throughput("asyncio", events)) for _ in range(repeats))
    _rule.unregister_all()

    lines = [f"Command: `uv run python bench/dispatch.py{' --quick' if args.quick else ''}`", ""]
    lines += ["### Cost of one change event on the inline dispatcher", ""]
    lines += [
        "Each rule invalidates the changed customer's entries of one in-memory cached function; the",
        "figure includes that invalidation. cachewire bumps the partition's version (the function",
        "also has a `page` parameter); drf-restflow, on Django's local-memory cache, deletes the",
        "one key of a function whose only argument is the customer (its partition deletes need",
        "django-redis). Ratios are to cachewire's changed() with as many rules.",
        f"Target: under {TARGET_US_PER_RULE:.0f} µs per rule.",
        "",
    ]
    lines += markdown_table(
        ["case", "µs per event", "µs per rule", "ratio", "under target"], inline
    )
    lines += ["", "### Wire payload", ""]
    lines += markdown_table(["operation", "µs", "bytes"], payload)
    lines += ["", f"### Throughput ({events} change events, 1 rule each, until all ran)", ""]
    lines += markdown_table(
        ["dispatcher", "events per second"],
        [["threadpool (4 workers)", f"{pool:,.0f}"], ["asyncio", f"{loop:,.0f}"]],
    )
    text = "\n".join(lines)
    print(text)
    write_section("dispatch", text)


if __name__ == "__main__":
    main()
