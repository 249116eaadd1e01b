"""The queue as a backend of Django's task framework, through Django's own API."""

from __future__ import annotations

from typing import Any

import pytest

from cachewire_django.queue import Job, QueueWorker

tasks_api = (
    pytest.importorskip("django_tasks")
    if pytest.importorskip("django").VERSION < (6,)
    else pytest.importorskip("django.tasks")
)
queue_django_tasks = pytest.importorskip("queue_django_tasks")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


@pytest.fixture(autouse=True)
def backend(settings: Any) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "cachewire_django.queue.backend.QueueBackend",
            "OPTIONS": {"MAX_ATTEMPTS": 2},
        }
    }
    settings.CACHEWIRE_QUEUE = {"ALLOWED_MODULES": [], "RETRY_BASE_DELAY": 0}


def test_queue_backend_runs_a_task_and_reports_its_result() -> None:
    result = queue_django_tasks.double.enqueue(21)
    assert result.status == tasks_api.TaskResultStatus.READY
    assert Job.objects.get(pk=int(result.id)).task.endswith("queue_django_tasks.double")
    assert QueueWorker(worker_id="w").run_pass() == (1, 0)
    result.refresh()
    assert result.status == tasks_api.TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42
    assert result.worker_ids == ["w"]
    again = queue_django_tasks.double.get_result(result.id)
    assert again.return_value == 42


def test_queue_backend_retries_then_reports_each_error() -> None:
    result = queue_django_tasks.broken.enqueue()
    worker = QueueWorker()
    assert worker.run_pass() == (1, 1)
    assert worker.run_pass() == (1, 1)
    result.refresh()
    assert result.status == tasks_api.TaskResultStatus.FAILED
    assert [error.exception_class_path for error in result.errors] == ["builtins.ValueError"] * 2
    assert "a task that fails" in result.errors[-1].traceback
