"""The Django admin for jobs: filters by state, queue and task; retry and cancel actions.

The queue's bookkeeping (state, claim, lease, attempts, errors) is read-only: a worker owns it
while it runs a job. Only the priority and ``run_after`` of a job that is still ready can be
changed, and the change is written only if no worker has claimed the job in the meantime.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from cachewire_django.queue._api import cancel_jobs, retry_jobs
from cachewire_django.queue.models import Job, JobState

__all__ = ["JobAdmin"]

#: what an operator may change, and only while the job is ready
EDITABLE_WHILE_READY = ("priority", "run_after")


def retry(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Job]) -> None:
    modeladmin.message_user(request, f"{retry_jobs(queryset)} job(s) queued again")


def cancel(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Job]) -> None:
    modeladmin.message_user(request, f"{cancel_jobs(queryset)} job(s) cancelled")


retry.short_description = "Run the selected failed or cancelled jobs again"  # type: ignore[attr-defined]
cancel.short_description = "Cancel the selected jobs that have not started"  # type: ignore[attr-defined]


class JobAdmin(admin.ModelAdmin):  # type: ignore[type-arg,unused-ignore]
    list_display = (
        "id",
        "task",
        "queue",
        "state",
        "priority",
        "attempts",
        "max_attempts",
        "run_after",
        "created_at",
        "finished_at",
        "last_error",
    )
    list_filter = ("state", "queue", "task")
    search_fields = ("task", "dedup_key")
    ordering = ("-id",)
    actions = (retry, cancel)
    fields = (
        "task",
        "queue",
        "state",
        "priority",
        "run_after",
        "attempts",
        "max_attempts",
        "timeout",
        "dedup_key",
        "atomic",
        "args",
        "kwargs",
        "meta",
        "body",
        "result",
        "attempt_errors",
        "worker",
        "claim",
        "lease_until",
        "created_at",
        "started_at",
        "finished_at",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Job | None = None) -> Any:
        if obj is not None and obj.state == JobState.READY:
            return tuple(name for name in self.fields if name not in EDITABLE_WHILE_READY)
        return self.fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # jobs are made by schedule(), in the transaction that needs them

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # A running job belongs to its worker; cancel or let it finish first.
        if obj is not None and obj.state == JobState.RUNNING:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Job, form: Any, change: bool) -> None:
        # Only the editable fields, and only if the job is still ready: a full save would
        # write back a state and claim that a worker may have changed since the form loaded.
        changed = {name: getattr(obj, name) for name in EDITABLE_WHILE_READY}
        written = (
            Job.objects.using(obj._state.db)
            .filter(pk=obj.pk, state=JobState.READY)
            .update(**changed)
        )
        if not written:
            request._cachewire_job_not_changed = True
            self.message_user(
                request,
                f"job {obj.pk} is no longer ready (a worker claimed it, or it was cancelled): "
                "it was not changed",
                messages.WARNING,
            )

    def response_change(self, request: HttpRequest, obj: Job) -> HttpResponse:
        if getattr(request, "_cachewire_job_not_changed", False):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    def attempt_errors(self, obj: Job) -> SafeString:
        if not obj.errors:
            return format_html("{}", "none")
        return format_html_join(
            "",
            "<div><strong>attempt {} at {}: {}</strong><pre>{}</pre></div>",
            (
                (entry.get("attempt"), entry.get("at"), entry.get("error"), entry.get("traceback"))
                for entry in obj.errors
            ),
        )

    attempt_errors.short_description = "errors, one per failed attempt"  # type: ignore[attr-defined]


# Registered only where the admin is installed: importing this module elsewhere (a tool that
# imports every app's modules) must not fail.
if apps.is_installed("django.contrib.admin"):
    admin.site.register(Job, JobAdmin)
