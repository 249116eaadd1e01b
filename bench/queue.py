"""The durable queue on PostgreSQL: jobs/s drained by 2 worker processes, against django-tasks-db.

Both queues run no-op jobs from a database of this run's own (created and dropped here), with 2
worker processes each: ``manage.py cachewire_worker --concurrency 2`` and two
``manage.py db_worker`` processes (``--interval 0.05``, no startup delay). The workers are
started first and idle; the jobs are then written in one transaction and the clock runs from its
commit until every job is finished. Also measured: what ``schedule()`` adds to a transaction
that writes one row.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# These scripts are named after what they measure, and bench/queue.py after a standard module:
# their folder goes last on sys.path, so `import queue` or `import celery` finds the real one.
_BENCH = _os.path.dirname(_os.path.abspath(__file__))
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _BENCH] + [_BENCH]

import os
import sys

# This file is named like the standard library's ``queue``: keep its folder behind the stdlib.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0]) == _HERE:
    sys.path.pop(0)
    sys.path.append(_HERE)
#: the settings and jobs, in a folder of their own that worker processes get on their path
_APP = os.path.join(_HERE, "queue_worker")
sys.path.append(_APP)

import argparse
import signal
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable

from _common import postgres_admin

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
DB_NAME = f"cachewire_bench_queue_{os.getpid()}"


def _setup_django() -> None:
    os.environ["BENCH_QUEUE_DB"] = DB_NAME
    os.environ["DJANGO_SETTINGS_MODULE"] = "queue_bench_app"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _workers(command: list[str], count: int) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([_APP, os.environ.get("PYTHONPATH", "")]),
        "DJANGO_SETTINGS_MODULE": "queue_bench_app",
        "BENCH_QUEUE_DB": DB_NAME,
    }
    return [
        subprocess.Popen(
            [sys.executable, "-m", "django", *command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until(done: Callable[[], bool], limit: float = 300.0) -> None:
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not finish in time")
        time.sleep(0.01)


def _idle_workers_settle() -> None:
    # Worker processes import Django and connect; give them time to reach their idle wait.
    time.sleep(3.0)


def drain_cachewire(jobs: int) -> float:
    from django.db import transaction
    from queue_bench_app import noop

    from cachewire_django.queue import Job, JobState, schedule

    workers = _workers(["cachewire_worker", "--concurrency", "2"], 1)
    try:
        _idle_workers_settle()
        with transaction.atomic():
            for _ in range(jobs):
                schedule(noop)
            start = time.perf_counter()
        done = Job.objects.filter(state=JobState.DONE)
        _wait_until(lambda: done.count() >= jobs)
        elapsed = time.perf_counter() - start
        if Job.objects.exclude(state=JobState.DONE).exists():
            raise RuntimeError("a cachewire job did not finish as done")
        Job.objects.all().delete()
        return jobs / elapsed
    finally:
        _stop(workers)


def drain_django_tasks_db(jobs: int) -> float:
    from django.db import transaction
    from django_tasks_db.models import DBTaskResult
    from queue_bench_app import peer_noop

    command = ["db_worker", "--interval", "0.05", "--no-startup-delay", "--no-reload"]
    workers = _workers(command, 2)
    try:
        _idle_workers_settle()
        with transaction.atomic():
            for _ in range(jobs):
                peer_noop.enqueue()
            start = time.perf_counter()
        finished = DBTaskResult.objects.filter(status="SUCCESSFUL")
        _wait_until(lambda: finished.count() >= jobs)
        elapsed = time.perf_counter() - start
        DBTaskResult.objects.all().delete()
        return jobs / elapsed
    finally:
        _stop(workers)


def schedule_cost(rounds: int) -> list[list[str]]:
    """µs per transaction: one row alone, plus schedule(), plus django-tasks-db's enqueue()."""
    from django.db import connection, transaction
    from queue_bench_app import noop, peer_noop

    from cachewire_django.queue import Job, schedule

    table = f"bench_rows_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, value integer)")

    def row() -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} (value) VALUES (1)")

    def plain() -> None:
        with transaction.atomic():
            row()

    def with_schedule() -> None:
        with transaction.atomic():
            row()
            schedule(noop, args=[1])

    def with_peer() -> None:
        with transaction.atomic():
            row()
            peer_noop.enqueue()

    timings: dict[str, list[float]] = {"plain": [], "schedule": [], "peer": []}
    for _ in range(5):
        for name, call in (("plain", plain), ("schedule", with_schedule), ("peer", with_peer)):
            start = time.perf_counter()
            for _ in range(rounds):
                call()
            timings[name].append((time.perf_counter() - start) / rounds * 1e6)
    Job.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {table}")
    base = statistics.median(timings["plain"])
    rows = []
    for label, name in (
        ("transaction writing one row", "plain"),
        ("... and `schedule()` of a cachewire job", "schedule"),
        ("... and django-tasks-db `enqueue()`", "peer"),
    ):
        value = statistics.median(timings[name])
        added = "" if name == "plain" else f"+{value - base:.0f}"
        rows.append([label, f"{value:.0f}", added])
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs (a smoke run)")
    args = parser.parse_args()
    jobs = 1000 if args.quick else 5000
    with postgres_admin(DATABASE_URL) as admin:
        admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    try:
        _setup_django()
        ours = drain_cachewire(jobs)
        peer = drain_django_tasks_db(jobs)
        cost = schedule_cost(200 if args.quick else 1000)
    finally:
        from django.db import connections

        connections.close_all()
        with postgres_admin(DATABASE_URL) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    from _common import write_section

    body = "\n\n".join(
        [
            "`uv run python bench/queue.py"
            + (" --quick" if args.quick else "")
            + f"`: PostgreSQL on 127.0.0.1, {jobs} no-op jobs written in one transaction while "
            "2 worker processes wait; the clock runs from the commit until every job is finished.",
            table(
                ["queue", "jobs/s", "vs django-tasks-db"],
                [
                    [
                        "cachewire `cachewire_worker --concurrency 2`",
                        f"{ours:,.0f}",
                        f"{ours / peer:.1f}x",
                    ],
                    ["django-tasks-db, 2 x `db_worker`", f"{peer:,.0f}", "1.0x"],
                ],
            ),
            "Targets: at least 1,000 jobs/s, and at least 2x django-tasks-db.",
            "**What a job adds to a transaction** (µs per transaction, median of 5 rounds):",
            table(["transaction", "µs", "added µs"], cost),
        ]
    )
    print(body)
    write_section("queue", body)


if __name__ == "__main__":
    main()
