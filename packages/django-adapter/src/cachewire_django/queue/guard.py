"""`DatabaseGuard`: ``on_duplicate`` with cluster scope, kept in the Django database.

``@cachewire.task(on_duplicate="serial", guard=DatabaseGuard())`` (or the ``TASK_GUARD``
setting): every process that shares the database sees the same running calls and held
duplicates. A running call holds its slot under a lease that its runner renews; a runner that
dies stops renewing, and the slot is free again one lease later.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Iterator
from typing import Literal

from django.db import DatabaseError, IntegrityError, connections, router, transaction
from django.utils import timezone

from cachewire.errors import CacheBackendError
from cachewire.tasks import Guard
from cachewire_django.queue.models import GuardSlot, HeldMessage

__all__ = ["DatabaseGuard"]

logger = logging.getLogger("cachewire.queue")

Outcome = Literal["accepted", "queued", "discarded"]


class DatabaseGuard(Guard):
    """A guard whose state is two tables of the queue app (on ``using``, default: the router's
    database for writing them). Database errors become `CacheBackendError`."""

    def __init__(self, *, using: str | None = None, lease_seconds: float = 60.0) -> None:
        self.using = using
        self.lease = dt.timedelta(seconds=lease_seconds)

    def _alias(self) -> str:
        return self.using or router.db_for_write(GuardSlot)

    def admit(self, key: str, policy: str, message_json: str) -> Outcome:
        alias = self._alias()
        try:
            with transaction.atomic(using=alias):
                now = timezone.now()
                try:
                    with transaction.atomic(using=alias):
                        GuardSlot.objects.using(alias).create(key=key, lease_until=now + self.lease)
                    return "accepted"
                except IntegrityError:
                    pass
                slot = GuardSlot.objects.using(alias).select_for_update().get(key=key)
                if slot.lease_until < now:  # its runner died: the slot is free
                    slot.lease_until = now + self.lease
                    slot.save(using=alias, update_fields=["lease_until"])
                    return "accepted"
                held = HeldMessage.objects.using(alias).filter(key=key)
                if policy == "discard" or (policy == "queue_one" and held.exists()):
                    return "discarded"
                HeldMessage.objects.using(alias).create(key=key, body=message_json)
                return "queued"
        except DatabaseError as exc:
            raise CacheBackendError(f"the task guard's database failed: {exc}") from exc

    def finish(self, key: str) -> str | None:
        alias = self._alias()
        try:
            with transaction.atomic(using=alias):
                slots = GuardSlot.objects.using(alias).select_for_update().filter(key=key)
                list(slots)  # lock the slot first, so finish and admit take turns
                held = HeldMessage.objects.using(alias).filter(key=key).order_by("id").first()
                if held is None:
                    slots.delete()
                    return None
                held.delete()
                # The slot stays taken: the held message takes it over.
                slots.update(lease_until=timezone.now() + self.lease)
                return held.body
        except DatabaseError as exc:
            raise CacheBackendError(f"the task guard's database failed: {exc}") from exc

    @contextlib.contextmanager
    def keep_alive(self, key: str) -> Iterator[None]:
        stop = threading.Event()
        alias = self._alias()

        def renew() -> None:
            try:
                while not stop.wait(self.lease.total_seconds() / 3):
                    try:
                        GuardSlot.objects.using(alias).filter(key=key).update(
                            lease_until=timezone.now() + self.lease
                        )
                    except DatabaseError:
                        logger.warning("could not renew the guard lease of %s", key, exc_info=True)
            finally:
                connections.close_all()

        thread = threading.Thread(target=renew, name="cachewire-guard-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
