"""`Job`: one row per scheduled call, claimed by workers under a lease."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import models


class JobState(models.TextChoices):
    READY = "ready", "ready"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


class Job(models.Model):
    """A queued call, kept until it is done, failed for good or cancelled.

    ``body`` holds a wire envelope (a task message or rule work) run through
    `cachewire.run_work`; without it, ``task`` names an allowed callable and ``args`` /
    ``kwargs`` hold its arguments in portable form.
    """

    task = models.CharField(max_length=255)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    body = models.TextField(null=True, blank=True)
    #: sha256 of the canonical text of (args, kwargs): how deschedule matches calls.
    arguments_hash = models.CharField(max_length=64, blank=True, default="")
    queue = models.CharField(max_length=100, default="default")
    priority = models.SmallIntegerField(default=5)
    run_after = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.READY)
    #: runs started so far (a claim starts one)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    timeout = models.FloatField(null=True, blank=True)
    #: one per claim: a completion counts only while the claim that ran the job still holds it
    claim = models.UUIDField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    dedup_key = models.CharField(max_length=255, null=True, blank=True)
    #: run the job and mark it done in one transaction
    atomic = models.BooleanField(default=False)
    meta = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    #: one entry per failed attempt: {"attempt", "at", "error", "traceback"}
    errors = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    #: Not stored: True on the job `enqueue` returned because it held the ``dedup_key`` asked
    #: for (no row was added).
    deduplicated = False

    class Meta:
        ordering: ClassVar[list[Any]] = [
            "-priority",
            models.F("run_after").asc(nulls_last=True),
            "id",
        ]
        indexes: ClassVar[list[Any]] = [
            models.Index(
                "queue",
                models.F("priority").desc(),
                "run_after",
                "id",
                name="cwq_ready_order",
                condition=models.Q(state="ready"),
            ),
            models.Index(
                fields=["lease_until"],
                name="cwq_running_lease",
                condition=models.Q(state="running"),
            ),
            models.Index(
                fields=["claim"], name="cwq_running_claim", condition=models.Q(state="running")
            ),
            models.Index(fields=["task", "arguments_hash"], name="cwq_call"),
        ]
        constraints: ClassVar[list[Any]] = [
            models.UniqueConstraint(
                fields=["dedup_key"],
                name="cwq_one_active_per_dedup_key",
                condition=models.Q(state__in=["ready", "running"], dedup_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task}#{self.pk} ({self.state})"

    @property
    def last_error(self) -> str:
        """The error of the last failed attempt ("" when none failed)."""
        return str(self.errors[-1]["error"]) if self.errors else ""


class GuardSlot(models.Model):
    """A call (task and arguments) that is running, for `DatabaseGuard`: one row per key."""

    key = models.CharField(max_length=255, primary_key=True)
    #: the run holds the slot until then; its worker renews it while it runs
    lease_until = models.DateTimeField()

    def __str__(self) -> str:
        return self.key


class HeldMessage(models.Model):
    """A duplicate submission waiting for its key's slot (``serial`` and ``queue_one``)."""

    key = models.CharField(max_length=255, db_index=True)
    body = models.TextField()

    def __str__(self) -> str:
        return f"{self.key} (held)"
