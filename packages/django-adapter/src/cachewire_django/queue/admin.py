"""The Django admin for jobs: filters by state, queue and task; retry and cancel actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from cachewire_django.queue._api import cancel_jobs, retry_jobs
from cachewire_django.queue.models import Job

__all__ = ["JobAdmin"]


def retry(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Job]) -> None:
    modeladmin.message_user(request, f"{retry_jobs(queryset)} job(s) queued again")


def cancel(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Job]) -> None:
    modeladmin.message_user(request, f"{cancel_jobs(queryset)} job(s) cancelled")


retry.short_description = "Run the selected failed or cancelled jobs again"  # type: ignore[attr-defined]
cancel.short_description = "Cancel the selected jobs that have not started"  # type: ignore[attr-defined]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
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
    readonly_fields = tuple(field.name for field in Job._meta.fields)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # jobs are made by schedule(), in the transaction that needs them
