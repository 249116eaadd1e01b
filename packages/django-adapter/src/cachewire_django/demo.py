"""The Django part of ``cachewire demo``: the example shop, end to end, in memory.

`run` starts a child Python (Django is configured once per process) that loads ``examples/shop``
on an in-memory SQLite database and the local-memory cache, creates a catalogue, reads it through
the cache, changes it, and shows what each change invalidated and why. Then the durable path:
with the ``db`` dispatcher a change's rule work is a job of the queue, written in the change's
transaction, that ``manage.py flush_queue`` runs; and a task put in the queue with ``schedule()``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

__all__ = ["find_example", "run"]


def find_example() -> Path | None:
    """``examples/shop`` of the source tree this package runs from (or of the working
    directory), if there is one."""
    here = Path(__file__).resolve()
    for base in (*here.parents, Path.cwd(), *Path.cwd().parents):
        candidate = base / "examples" / "shop"
        if (candidate / "shopsite" / "settings.py").is_file():
            return candidate
    return None


def run(out: TextIO | None = None) -> int:
    """Run the demo in a child process, writing what it prints to ``out`` (stdout by default).
    Returns its exit status (0 on success)."""
    out = out if out is not None else sys.stdout
    example = find_example()
    if example is None:
        out.write("Django demo skipped: examples/shop is not in this source tree\n")
        return 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(example), *sys.path])}
    child = subprocess.run(
        [sys.executable, "-m", "cachewire_django.demo", "--in-process"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out.write(child.stdout)
    if child.returncode:
        out.write(child.stderr)
    return child.returncode


# --------------------------------------------------------------- in the child


def _story(out: TextIO) -> None:  # pragma: no cover - runs in the child process
    import django
    from django.conf import settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")
    os.environ["SHOP_DATABASE"] = ":memory:"
    django.setup()
    settings.DEBUG = False
    from django.core.management import call_command
    from django.db import transaction
    from django.test import Client
    from django.test.utils import override_settings, setup_test_environment

    from cachewire import register_dispatcher
    from cachewire.dispatchers import InlineDispatcher

    setup_test_environment()
    call_command("migrate", run_syncdb=True, verbosity=0)
    from catalog.cachewire import category_listing, product_card  # type: ignore[import-not-found]
    from catalog.models import Category, Product  # type: ignore[import-not-found]

    sent: list[str] = []

    @register_dispatcher
    class ExplainingDispatcher(InlineDispatcher):
        """Runs the work inline, and says what it runs."""

        name = "demo-explain"

        def dispatch(self, *, rule_ids: Sequence[str], rule_kwargs: Any, context: Any) -> None:
            for rule_id in rule_ids:
                for kwargs in rule_kwargs[rule_id]:
                    function = rule_id.split("@")[0].removeprefix("catalog.")
                    because = rule_id.split("@")[1].split("#")[0] if "@" in rule_id else "?"
                    sent.append(f"{function}({_args(kwargs)})  <- a {because} changed")
            super().dispatch(rule_ids=rule_ids, rule_kwargs=rule_kwargs, context=context)

    def title(text: str) -> None:
        out.write(f"\n{text}\n{'-' * len(text)}\n")

    def explain(what: str) -> None:
        out.write(f"  {what}\n")
        for line in sent or ["(nothing)"]:
            out.write(f"    invalidated {line}\n")
        sent.clear()

    client = Client()
    computed: list[str] = []
    for function in (category_listing, product_card):
        original = function.__wrapped__

        def counting(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            computed.append(_original.__name__)
            return _original(*args, **kwargs)

        function.__wrapped__ = counting

    with override_settings(
        CACHEWIRE={"DEFAULT_DISPATCHER": "demo-explain", "DEFAULT_CACHE": "default"}
    ):
        title("Django: the example shop (examples/shop), SQLite in memory, LocMem cache")
        with transaction.atomic():
            tools = Category.objects.create(name="Tools")
            garden = Category.objects.create(name="Garden")
            hammer = Product.objects.create(category=tools, name="Hammer", price="12.50")
            Product.objects.create(category=tools, name="Saw", price="20.00")
            Product.objects.create(category=garden, name="Rake", price="15.00")
        explain("created 2 categories and 3 products in one transaction: one dispatch at commit")

        title("Reads go through the cache")
        for _ in range(3):
            client.get(f"/api/categories/{tools.pk}/")
            client.get(f"/api/categories/{garden.pk}/")
            client.get(f"/api/products/{hammer.pk}/")
        out.write(f"  9 requests computed: {', '.join(computed)}\n")
        computed.clear()

        title("A change invalidates what it touches, at commit")
        hammer.price = "11.00"
        hammer.save()
        explain("Hammer's price changed")
        client.get(f"/api/categories/{garden.pk}/")
        out.write(f"  Garden page after that: {'recomputed' if computed else 'still cached'}\n")

        moved = Product.objects.get(pk=hammer.pk)
        moved.category = garden
        with transaction.atomic():
            moved.save()
            assert not sent  # nothing until the commit
        explain("Hammer moved from Tools to Garden: both categories, old and new")

        with transaction.atomic():
            Product.objects.create(category=tools, name="Drill", price="80.00")
            transaction.set_rollback(True)
        explain("a product created in a transaction that rolled back")

        computed.clear()
        page = client.get(f"/api/categories/{garden.pk}/").json()
        names = [p["name"] for p in page["products"]]
        out.write(f"  Garden now lists {names}; recomputed: {', '.join(computed) or 'nothing'}\n")
    _durable(out, client, computed, tools, title)
    out.write(
        "\nDjango summary: every read after a change was fresh (with the db dispatcher, once a "
        "worker ran the job\ncommitted with the change; a rollback left no job); unchanged pages "
        "stayed cached.\n"
    )


def _durable(
    out: TextIO, client: Any, computed: list[str], tools: Any, title: Any
) -> None:  # pragma: no cover - runs in the child process
    """The durable path: rule work written as a job in the change's transaction, run by a
    worker pass; and a task scheduled in the queue."""
    import io

    from catalog.models import Product  # type: ignore[import-not-found,unused-ignore]
    from django.core.management import call_command
    from django.db import transaction
    from django.test.utils import override_settings

    import cachewire
    from cachewire_django.queue import Job, health, schedule

    def price_on_page() -> str:
        page = client.get(f"/api/categories/{tools.pk}/").json()
        return str(next(p["price"] for p in page["products"] if p["name"] == "Saw"))

    def flush_queue() -> str:
        report = io.StringIO()
        call_command("flush_queue", stdout=report)
        return report.getvalue().strip()

    def ready_jobs() -> list[str]:
        return [job.task for job in Job.objects.filter(state="ready")]

    reports: list[str] = []

    @cachewire.task(name="catalog.restock_report")
    def restock_report(category_id: int) -> int:
        count = Product.objects.filter(category_id=category_id).count()
        reports.append(f"restock report of category {category_id}: {count} product(s)")
        return count

    with override_settings(CACHEWIRE={"DEFAULT_DISPATCHER": "db", "DEFAULT_CACHE": "default"}):
        title("Durable: the db dispatcher writes rule work as a job, in the same transaction")
        price_on_page()
        computed.clear()
        saw = Product.objects.get(name="Saw")
        with transaction.atomic():
            saw.price = "18.00"
            saw.save()
            out.write(f"  inside the transaction, jobs queued: {ready_jobs()}\n")
            transaction.set_rollback(True)
        out.write(f"  after a rollback, jobs queued: {ready_jobs() or 'none'}\n")
        with transaction.atomic():
            saw.price = "19.00"
            saw.save()
        out.write(f"  after the commit, jobs queued: {ready_jobs()}\n")
        before = price_on_page()
        out.write(f"  Saw on the Tools page before a worker ran: {before} (still cached)\n")
        out.write(f"  manage.py flush_queue: {flush_queue()}\n")
        after = price_on_page()
        out.write(
            f"  Saw on the Tools page after it: {after} "
            f"(recomputed: {', '.join(computed) or 'nothing'})\n"
        )

        title("Durable: schedule() a task, a worker pass runs it")
        with transaction.atomic():
            job = schedule(restock_report, args=[tools.pk], meta={"max_attempts": 3})
        out.write(f"  scheduled {job.task} as job {job.pk}, state {job.state}\n")
        out.write(f"  manage.py flush_queue: {flush_queue()}\n")
        job.refresh_from_db()
        out.write(f"  {reports[-1]}; job {job.pk} is {job.state}, result {job.result}\n")
        states = {state: n for state, n in health()["states"].items() if n}
        out.write(f"  health() states: {states}\n")


def _args(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))


if __name__ == "__main__":  # pragma: no cover
    if "--in-process" in sys.argv:
        _story(sys.stdout)
    else:
        sys.exit(run())
