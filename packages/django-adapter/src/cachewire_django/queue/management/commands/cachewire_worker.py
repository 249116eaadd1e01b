"""``manage.py cachewire_worker``: run the queue's jobs until stopped."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cachewire_django.queue._supervisor import Supervisor


class Command(BaseCommand):
    help = (
        "Run jobs of the cachewire queue in worker processes until SIGTERM or Ctrl-C, which "
        "let every process finish its current job."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-c", "--concurrency", type=int, default=1, help="worker processes (default 1)"
        )
        parser.add_argument(
            "--queue", action="append", dest="queues", help="only this queue (repeatable)"
        )
        parser.add_argument("--database", default=None, help="database alias of the queue")
        parser.add_argument("--name", default=None, help="worker name shown on its jobs")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        supervisor = Supervisor(
            concurrency=options["concurrency"],
            using=options["database"],
            queues=options["queues"],
            name=options["name"],
        )
        self.stdout.write(
            f"cachewire worker {supervisor.name}: {supervisor.concurrency} process(es), "
            f"queues {', '.join(supervisor.queues or ['*'])}"
        )
        self.stdout.flush()
        supervisor.run()
