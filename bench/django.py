"""The Django adapter's cost: what rules add to a model's save(), and what capturing old values
adds to loading rows, side by side with drf-restflow's InvalidationRule in the same run.

Run: uv run python bench/django.py [--quick]

Times are CPU time of the measuring thread (`time.thread_time`): everything measured runs in that
thread (SQLite in memory, the inline dispatcher), and on a shared machine wall time mostly measures
the other tenants. Django runs on an in-memory SQLite database. Each save is an UPDATE outside a transaction, so both
libraries invalidate at once (their on-commit callbacks run immediately); each rule invalidates the
saved row's customer partition of its own cached function, on the ``inline`` dispatcher and the
in-memory cache (drf-restflow: its inline dispatcher and the local-memory cache). Every setup is
checked: after a save, each rule's function must compute again.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# These scripts are named after what they measure, and bench/queue.py after a standard module:
# their folder goes last on sys.path, so `import queue` or `import celery` finds the real one.
_BENCH = _os.path.dirname(_os.path.abspath(__file__))
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _BENCH] + [_BENCH]

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is named django.py: look for packages before this folder, or it would import itself.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]

import _restflow
from _common import postgres_admin, write_section

#: The qcluster's settings and rule module (a folder of their own: this one shadows packages).
DJQ_WORKER = Path(_HERE) / "djq_worker"
DJQ_DB = f"cachewire_bench_djq_{os.getpid()}"
DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")


def setup_django() -> None:
    import django
    from django.conf import settings

    os.environ["CW_DJQ_BENCH_DB"] = DJQ_DB
    sys.path.append(str(DJQ_WORKER))
    from cw_bench_djq_settings import BROKER_DB

    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "restflow.caching",
            "django_q",
            "cachewire_django",
        ],
        Q_CLUSTER={"name": "bench", "orm": "default", "timeout": 60, "retry": 120},
        SECRET_KEY="bench-only",
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
            "qbroker": BROKER_DB,  # the end-to-end run's broker, shared with its qcluster
        },
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "OPTIONS": {"MAX_ENTRIES": 1_000_000},
            }
        },
        CACHEWIRE={"DEFAULT_DISPATCHER": "inline"},
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    _restflow._setup_done = True  # the peer shares this Django


def model(name: str) -> Any:
    from django.db import connection, models

    cls = type(
        name,
        (models.Model,),
        {
            "__module__": __name__,
            "customer_id": models.IntegerField(),
            "status": models.CharField(max_length=20, default="new"),
            "total": models.IntegerField(default=0),
            "Meta": type("Meta", (), {"app_label": "contenttypes"}),
        },
    )
    with connection.schema_editor() as editor:
        editor.create_model(cls)
    return cls


class Ours:
    library = "cachewire"

    def __init__(self, rules: int) -> None:
        from cachewire import Rule, cached

        self.calls = 0
        self.model = model(f"CwOrder{rules}")
        self.functions: list[Any] = []
        for index in range(rules):

            def orders(customer_id: int, index: int = index) -> list[int]:
                self.calls += 1
                return [customer_id, index]

            rule = Rule(model=self.model, field_mapping={"customer_id": "customer_id"})
            name = f"bench.django.orders_{rules}_{index}"
            self.functions.append(
                cached(name=name, partition=["customer_id"], invalidates_on=[rule])(orders)
            )
        from cachewire_django import rewire

        rewire()

    def prime(self, customer: int) -> None:
        for function in self.functions:
            function(customer)

    def check(self, instance: Any) -> None:
        self.prime(instance.customer_id)
        before = self.calls
        instance.save()
        self.prime(instance.customer_id)
        if self.calls - before != len(self.functions):
            raise SystemExit(
                f"cachewire: {self.calls - before} of {len(self.functions)} recomputed"
            )


class Theirs(_restflow._Setup):
    def __init__(self, rules: int) -> None:
        super().__init__(f"Save{rules}", rules, "inline", {})
        from django.db import connection

        with connection.schema_editor() as editor:
            editor.create_model(self.model)

    def check(self, instance: Any) -> None:
        self.prime([instance.customer_id])
        self.check_recomputes([], "")  # no-op: keeps the counter honest
        before = self.calls
        instance.save()
        self.prime([instance.customer_id])
        if self.calls - before != len(self.functions):
            raise SystemExit(
                f"drf-restflow: {self.calls - before} of {len(self.functions)} recomputed"
            )


def per_save(rows: dict[Any, Any], saves: int, rounds: int) -> dict[Any, float]:
    """Best µs per ``save()`` of each row over ``rounds`` interleaved rounds of ``saves`` saves
    (the minimum: the machine is shared, and noise only ever adds time)."""
    results: dict[Any, list[float]] = {key: [] for key in rows}
    for _ in range(rounds):
        for key, instance in rows.items():
            gc.collect()
            start = time.thread_time()
            for i in range(saves):
                instance.total = i
                instance.save()
            results[key].append((time.thread_time() - start) / saves * 1e6)
    return {key: min(values) for key, values in results.items()}


def receivers_cost(rows: dict[Any, Any], number: int, rounds: int) -> dict[Any, float]:
    """Best µs per pre_save + post_save pair sent for each row: exactly what a library's
    receivers add to one update (the UPDATE itself excluded, whose noise would hide it)."""
    from django.db.models.signals import post_save, pre_save

    results: dict[Any, list[float]] = {key: [] for key in rows}
    for _ in range(rounds):
        for key, instance in rows.items():
            sender = type(instance)
            gc.collect()
            start = time.thread_time()
            for i in range(number):
                instance.total = i
                pre_save.send(
                    sender=sender, instance=instance, raw=False, using="default", update_fields=None
                )
                post_save.send(
                    sender=sender,
                    instance=instance,
                    created=False,
                    update_fields=None,
                    raw=False,
                    using="default",
                )
            results[key].append((time.thread_time() - start) / number * 1e6)
    return {key: min(values) for key, values in results.items()}


def load_time(cls: Any, rounds: int) -> float:
    """Median ms to load every row of ``cls``."""
    results = []
    for _ in range(rounds):
        gc.collect()
        start = time.thread_time()
        rows = list(cls.objects.all())
        results.append((time.thread_time() - start) * 1e3)
        del rows
    return statistics.median(results)


def django_q_dispatch(number: int, rounds: int) -> tuple[float, float]:
    """(µs per `DjangoQDispatcher.dispatch` of one rule's work, µs per django-q ``async_task`` of
    the same body): the enqueue is a row in the ORM broker's table, here in-memory SQLite."""
    from django.db import connection
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    from cachewire import DispatchContext
    from cachewire.wire import encode_rule_work
    from cachewire_django.django_q import DEFAULT_FUNCTION_PATH, DjangoQDispatcher

    with connection.schema_editor() as editor:
        editor.create_model(OrmQ)
    dispatcher = DjangoQDispatcher()
    rule_ids = ["bench.orders@contenttypes.Order#1"]
    rule_kwargs = {rule_ids[0]: [{"customer_id": 42}]}
    context = DispatchContext(origin="django", using="default")
    body = encode_rule_work(rule_ids, rule_kwargs, context.for_wire())

    def ours_once() -> None:
        dispatcher.dispatch(rule_ids=rule_ids, rule_kwargs=rule_kwargs, context=context)

    def raw_once() -> None:
        async_task(DEFAULT_FUNCTION_PATH, body)

    ours: list[float] = []
    raw: list[float] = []
    for index in range(rounds):
        pair = [(ours_once, ours), (raw_once, raw)]
        for call, results in pair if index % 2 == 0 else pair[::-1]:  # neither always first
            OrmQ.objects.all().delete()
            gc.collect()
            start = time.thread_time()
            for _ in range(number):
                call()
            results.append((time.thread_time() - start) / number * 1e6)
    OrmQ.objects.all().delete()
    return min(ours), min(raw)


def _wait_for(count: Any, target: int, cluster: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 600
    while count() < target:
        if cluster.poll() is not None:
            raise SystemExit(f"qcluster exited: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"qcluster did {count()} of {target} in 600 s")
        time.sleep(0.005)


def django_q_end_to_end(events: int) -> list[list[str]]:
    """Invalidations per second through a real ``qcluster`` on the ORM broker (PostgreSQL), from
    the first change until the cluster has done every invalidation: rows of the results table."""
    import redis
    from _common import private_redis
    from django.db import connections
    from django_q.conf import Conf
    from django_q.tasks import async_task

    from cachewire import changed, collect
    from cachewire.dispatch import dispatch_stats

    with postgres_admin(DATABASE_URL) as admin:
        admin.execute(f'CREATE DATABASE "{DJQ_DB}"')
    log = Path(tempfile.mkstemp(prefix="cw-bench-qcluster-", suffix=".log")[1])
    cluster: subprocess.Popen[bytes] | None = None
    try:
        with private_redis() as url, log.open("wb") as log_file:
            os.environ["CW_DJQ_BENCH_URL"] = url  # read by the rule module, here and there
            paths = [
                str(DJQ_WORKER),
                *(p for p in sys.path if Path(p or ".").resolve() != Path(_HERE)),
                _HERE,  # last, for `_common` (the rule module's counting target)
            ]
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(paths),
                "DJANGO_SETTINGS_MODULE": "cw_bench_djq_settings",
            }
            django_cmd = [sys.executable, "-m", "django"]
            subprocess.run([*django_cmd, "migrate", "--verbosity", "0"], env=env, check=True)
            cluster = subprocess.Popen(
                [*django_cmd, "qcluster"], env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
            import cw_bench_djq_rules as rules

            from cachewire_django import rewire

            rewire()
            client = redis.Redis.from_url(url)

            def count() -> int:
                return int(client.get(rules.DONE) or 0)

            Conf.ORM = "qbroker"  # this process enqueues where the cluster takes work from
            async_task("cw_bench_djq_rules.count_one")  # the cluster is up once it ran
            _wait_for(count, 1, cluster, log)
            floor = None
            rows = []
            errors = dispatch_stats.snapshot()["dispatch_errors"]
            for label, batch in (
                ("django-q tasks doing only the INCR (floor)", 0),
                ("no batching", 1),
                ("`collect()` of 10", 10),
                ("`collect()` of 100", 100),
            ):
                client.delete(rules.DONE)
                start = time.perf_counter()
                for first in range(0, events, batch or 1):
                    if not batch:
                        async_task("cw_bench_djq_rules.count_one")
                    elif batch == 1:
                        changed(rules.MODEL, {"id": first})
                    else:
                        with collect():
                            for i in range(first, first + batch):
                                changed(rules.MODEL, {"id": i})
                enqueued = time.perf_counter() - start
                _wait_for(count, events, cluster, log)
                rate = events / (time.perf_counter() - start)
                if count() != events or dispatch_stats.snapshot()["dispatch_errors"] != errors:
                    raise SystemExit(f"{label}: {count()} invalidations for {events} changes")
                floor = floor or rate
                tasks = events // (batch or 1)
                rows.append(
                    [
                        label,
                        f"{events:,}",
                        f"{tasks:,}",
                        f"{enqueued:.1f}",
                        f"{rate:,.0f}",
                        f"{rate / floor:.2f}x",
                    ]
                )
                print(f"django_q end to end, {label}: {rate:,.0f}/s", flush=True)
            client.close()
            return rows
    finally:
        if cluster is not None:
            cluster.terminate()
            try:
                cluster.wait(30)
            except subprocess.TimeoutExpired:
                cluster.kill()
                cluster.wait(10)
        connections.close_all()
        with postgres_admin(DATABASE_URL) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{DJQ_DB}" WITH (FORCE)')
        log.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    saves, rounds = (200, 3) if args.quick else (1000, 5)
    setup_django()
    from cachewire_django import wiring

    # --------------------------------------------------------------- save()
    floor_model = model("FloorOrder")
    floor_row = floor_model.objects.create(customer_id=1)
    ours = {n: Ours(n) for n in (0, 1, 10)}
    theirs = {n: Theirs(n) for n in (1, 10)}
    rows: dict[tuple[str, int], Any] = {}
    for n, setup in ours.items():
        rows["cachewire", n] = setup.model.objects.create(customer_id=1)
        if n:
            setup.check(rows["cachewire", n])
    for n, peer in theirs.items():
        rows["drf-restflow", n] = peer.model.objects.create(customer_id=1)
        peer.check(rows["drf-restflow", n])

    from django.apps import apps

    classes = apps.get_models(include_auto_created=True)
    floors, timings = [], {}
    for _ in range(3):  # the floor (no receiver connected at all) between the measured rows
        wiring.disconnect(classes)
        floors.append(per_save({"floor": floor_row}, saves, rounds)["floor"])
        wiring.connect(classes)
        for key, value in per_save(rows, saves, rounds).items():
            timings[key] = min(value, timings.get(key, value))
    floor = min(floors)
    for n, setup in ours.items():  # still correct after the timed saves
        if n:
            setup.check(rows["cachewire", n])

    costs = receivers_cost(rows, saves * 5, rounds)
    lines = [
        f"Command: `uv run python bench/django.py{' --quick' if args.quick else ''}`",
        "",
        "### What rules add to save()",
        "",
        "The receivers' cost: a `pre_save` and a `post_save` sent for a saved row, as `save()` "
        "sends them, including each rule's invalidation, in CPU µs (best of "
        f"{rounds} rounds of {saves * 5}). The UPDATE is left out: on a shared machine its noise "
        "is larger than what is measured.",
        "",
        "| rules | cachewire µs | drf-restflow µs | ours / theirs |",
        "| ---: | ---: | ---: | ---: |",
        f"| 0 | {costs['cachewire', 0]:.1f} | | |",
    ]
    for n in (1, 10):
        mine, peer = costs["cachewire", n], costs["drf-restflow", n]
        lines.append(f"| {n} | {mine:.1f} | {peer:.1f} | {mine / peer:.2f}x |")
    lines += [
        "",
        f"Whole `save()` of one row, outside a transaction (best of 3 x {rounds} x {saves}): "
        f"no receiver {floor:.0f} µs; cachewire "
        + ", ".join(f"{n} rule(s) {timings['cachewire', n]:.0f} µs" for n in (0, 1, 10))
        + "; drf-restflow "
        + ", ".join(f"{n} rule(s) {timings['drf-restflow', n]:.0f} µs" for n in (1, 10))
        + ".",
    ]

    # ------------------------------------------------------- loading rows
    rows_count = 2_000 if args.quick else 10_000
    plain, ruled = model("LoadPlain"), model("LoadRuled")
    from cachewire import Rule, cached

    @cached(
        name="bench.django.loaded",
        partition=["customer_id"],
        invalidates_on=[Rule(model=ruled, field_mapping={"customer_id": "customer_id"})],
    )
    def loaded(customer_id: int) -> int:
        return customer_id

    wiring.rewire()
    for cls in (plain, ruled):
        cls.objects.bulk_create(cls(customer_id=i % 100) for i in range(rows_count))
    load_rounds = 5 if args.quick else 11
    times = {}
    for _ in range(2):  # interleaved, so drift hits both
        for cls in (plain, ruled):
            times.setdefault(cls.__name__, []).append(load_time(cls, load_rounds))
    t_plain = min(times["LoadPlain"])
    t_ruled = min(times["LoadRuled"])
    if "_cachewire_loaded" not in ruled.objects.first().__dict__:
        raise SystemExit("the rule's model captured no old values")
    lines += [
        "",
        f"### Loading {rows_count:,} rows (best of 2 x median of {load_rounds})",
        "",
        "| model | ms | per row µs | vs no rules |",
        "| --- | ---: | ---: | ---: |",
        f"| no rules | {t_plain:.1f} | {t_plain / rows_count * 1e3:.2f} | 1.00x |",
        f"| one rule (captures `customer_id` at load) | {t_ruled:.1f} | "
        f"{t_ruled / rows_count * 1e3:.2f} | {t_ruled / t_plain:.2f}x |",
        "",
        "A model no rule reads has no `post_init` receiver, so loading it costs what it costs "
        "without cachewire.",
    ]
    # ------------------------------------------------------------ django_q
    import logging

    logging.getLogger("django-q").setLevel(logging.WARNING)
    ours_q, raw_q = django_q_dispatch(200 if args.quick else 1000, 3 if args.quick else 5)
    lines += [
        "",
        "### The django_q dispatcher: one dispatch against django-q's own enqueue",
        "",
        "One rule's work handed to `DjangoQDispatcher.dispatch` (encoding included) against "
        "`django_q.tasks.async_task` of the same message body, on the ORM broker (in-memory "
        "SQLite), CPU µs per call:",
        "",
        "| cachewire dispatch | raw async_task | ratio |",
        "| ---: | ---: | ---: |",
        f"| {ours_q:.1f} | {raw_q:.1f} | {ours_q / raw_q:.2f}x |",
        "",
        "What is added is the encoding of cachewire's versioned message "
        "(`cachewire.wire.encode_rule_work`) and the option lookups.",
    ]
    events = 2_000 if args.quick else 10_000
    e2e = django_q_end_to_end(events)
    lines += [
        "",
        "### The django_q dispatcher: invalidations per second through a real cluster",
        "",
        f"{events:,} changes (`cachewire.changed`) from this process until a running "
        "`manage.py qcluster` (2 workers, `bulk` 10, `poll` 0.05 s, no result rows) has done "
        "every invalidation; each invalidation is one INCR on a private Redis. The ORM broker is "
        "a PostgreSQL database of the benchmark's own. No batching: one django-q task per change; "
        "`collect()` of 10 or 100: one task carries that many changes. The floor enqueues plain "
        "django-q tasks whose function only does the INCR: what django-q itself costs per task. "
        "Each enqueue is its own committed transaction in the broker database (the producer runs "
        "in autocommit), which is what bounds the unbatched rows; `enqueue s` is how long the "
        "producer took to hand every change over.",
        "",
        "| run | changes | django-q tasks | enqueue s | invalidations/s | vs floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in e2e]
    body = "\n".join(lines)
    print(body)
    write_section("django", body)


if __name__ == "__main__":
    main()
