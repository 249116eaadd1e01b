"""``manage.py flush_queue``: one pass over the jobs due now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cachewire_django.queue._worker import QueueWorker


class Command(BaseCommand):
    help = (
        "Run the jobs of the cachewire queue that are due now, once each, in queue order. "
        "Exits with status 1 when a job failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue", action="append", dest="queues", help="only this queue (repeatable)"
        )
        parser.add_argument("--database", default=None, help="database alias of the queue")
        parser.add_argument(
            "--stop-on-error",
            action="store_true",
            help="stop at the first job that fails (the rest stay queued)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        worker = QueueWorker(using=options["database"], queues=options["queues"])
        ran, failed = worker.run_pass(stop_on_error=options["stop_on_error"])
        self.stdout.write(f"ran {ran} job(s), {failed} failed")
        if failed:
            raise CommandError(f"{failed} job(s) failed", returncode=1)
