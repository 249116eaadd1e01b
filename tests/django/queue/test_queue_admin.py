"""The jobs' admin through Django's test client, as a logged-in superuser."""

from __future__ import annotations

import re
from typing import Any

import pytest
import queue_jobs
from django.test import Client
from django.urls import reverse

from cachewire_django.queue import Job, JobState, QueueWorker, schedule

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(30)]

CHANGELIST = "admin:cachewire_queue_job_changelist"


@pytest.fixture(autouse=True)
def admin_site(settings: Any) -> None:
    settings.ROOT_URLCONF = "queue_admin_urls"
    settings.MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ]
    settings.TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ]
    settings.CACHEWIRE_QUEUE = {"ALLOWED_MODULES": ["queue_jobs"], "RETRY_BASE_DELAY": 0}


@pytest.fixture
def jobs() -> dict[str, Job]:
    """A job failed for good after two attempts, one ready, one done."""
    failed = schedule(queue_jobs.fail, args=["disk full"], meta={"max_attempts": 2})
    worker = QueueWorker(worker_id="admin-test")
    assert worker.run_pass() == (1, 1)
    assert worker.run_pass() == (1, 1)
    done = schedule(queue_jobs.record, args=["kept"])
    assert worker.run_pass() == (1, 0)
    ready = schedule(queue_jobs.record, args=["later"], priority=9)
    for job in (failed, done, ready):
        job.refresh_from_db()
    assert (failed.state, done.state, ready.state) == ("failed", "done", "ready")
    return {"failed": failed, "done": done, "ready": ready}


def _listed(response: Any) -> set[int]:
    assert response.status_code == 200
    return {job.pk for job in response.context["cl"].result_list}


def test_changelist_filters_by_state_and_task(admin_client: Client, jobs: dict[str, Job]) -> None:
    url = reverse(CHANGELIST)
    assert _listed(admin_client.get(url)) == {job.pk for job in jobs.values()}
    assert _listed(admin_client.get(url, {"state__exact": "failed"})) == {jobs["failed"].pk}
    assert _listed(admin_client.get(url, {"state__exact": "ready"})) == {jobs["ready"].pk}
    assert _listed(admin_client.get(url, {"task__exact": "queue_jobs.record"})) == {
        jobs["done"].pk,
        jobs["ready"].pk,
    }
    page = admin_client.get(url).content.decode()
    assert "By state" in page and "By task" in page
    assert "RuntimeError: disk full" in page  # the last error, in its column


def test_change_page_shows_each_attempt_with_its_traceback(
    admin_client: Client, jobs: dict[str, Job]
) -> None:
    failed = jobs["failed"]
    response = admin_client.get(reverse("admin:cachewire_queue_job_change", args=[failed.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    attempts = re.findall(
        r"attempt (\d) at (\S+): ([^<]+)</strong><pre>(.*?)</pre>", page, flags=re.DOTALL
    )
    assert [(number, error) for number, _, error, _ in attempts] == [
        ("1", "builtins.RuntimeError: disk full"),
        ("2", "builtins.RuntimeError: disk full"),
    ]
    for _, _, _, trace in attempts:
        assert "Traceback (most recent call last)" in trace
        assert "raise RuntimeError(message)" in trace


def test_retry_and_cancel_through_the_changelist(
    admin_client: Client, jobs: dict[str, Job]
) -> None:
    url = reverse(CHANGELIST)
    everything = [job.pk for job in jobs.values()]
    response = admin_client.post(
        url, {"action": "retry", "_selected_action": everything}, follow=True
    )
    assert "1 job(s) queued again" in response.content.decode()  # only the failed one
    jobs["failed"].refresh_from_db()
    assert (jobs["failed"].state, jobs["failed"].max_attempts) == (JobState.READY, 4)

    response = admin_client.post(
        url, {"action": "cancel", "_selected_action": everything}, follow=True
    )
    assert "2 job(s) cancelled" in response.content.decode()  # the two ready ones
    states = dict(Job.objects.values_list("pk", "state"))
    assert states == {
        jobs["failed"].pk: JobState.CANCELLED,
        jobs["ready"].pk: JobState.CANCELLED,
        jobs["done"].pk: JobState.DONE,
    }
    assert QueueWorker().run_pass() == (0, 0)


def _form_fields(admin_client: Client, job: Job) -> set[str]:
    response = admin_client.get(reverse("admin:cachewire_queue_job_change", args=[job.pk]))
    assert response.status_code == 200
    form = response.context["adminform"].form
    return set(form.fields)


def test_only_priority_and_run_after_of_a_ready_job_can_be_edited(
    admin_client: Client, jobs: dict[str, Job]
) -> None:
    assert _form_fields(admin_client, jobs["ready"]) == {"priority", "run_after"}
    assert _form_fields(admin_client, jobs["failed"]) == set()
    assert _form_fields(admin_client, jobs["done"]) == set()
    # No way to add a job by hand: jobs are written by schedule().
    assert admin_client.get(reverse("admin:cachewire_queue_job_add")).status_code == 403

    ready = jobs["ready"]
    url = reverse("admin:cachewire_queue_job_change", args=[ready.pk])
    posted = {
        "priority": "2",
        "run_after_0": "",
        "run_after_1": "",
        # Not editable: ignored even if sent.
        "state": "done",
        "attempts": "7",
        "task": "queue_jobs.fail",
    }
    assert admin_client.post(url, posted).status_code == 302
    ready.refresh_from_db()
    assert (ready.priority, ready.state, ready.attempts, ready.task) == (
        2,
        JobState.READY,
        0,
        "queue_jobs.record",
    )


def test_an_edit_does_not_overwrite_a_job_a_worker_claimed(
    admin_client: Client, jobs: dict[str, Job]
) -> None:
    ready = jobs["ready"]
    url = reverse("admin:cachewire_queue_job_change", args=[ready.pk])
    assert admin_client.get(url).status_code == 200  # the form is loaded while it is ready
    (claimed,) = QueueWorker(worker_id="claimer").claim(limit=1)
    assert claimed.pk == ready.pk
    response = admin_client.post(
        url, {"priority": "1", "run_after_0": "", "run_after_1": ""}, follow=True
    )
    assert f"ob {ready.pk} is no longer ready" in response.content.decode()  # "Job 3 ..."
    ready.refresh_from_db()
    assert (ready.state, ready.priority, ready.claim) == (JobState.RUNNING, 9, claimed.claim)


def test_a_running_job_cannot_be_deleted(admin_client: Client, jobs: dict[str, Job]) -> None:
    (running,) = QueueWorker().claim(limit=1)
    assert (
        admin_client.get(reverse("admin:cachewire_queue_job_delete", args=[running.pk])).status_code
        == 403
    )
    everything = [job.pk for job in jobs.values()]
    bulk = {"action": "delete_selected", "_selected_action": everything, "post": "yes"}
    assert admin_client.post(reverse(CHANGELIST), bulk).status_code == 403
    assert Job.objects.count() == 3
    # Finished jobs can be deleted.
    finished = {**bulk, "_selected_action": [jobs["done"].pk, jobs["failed"].pk]}
    assert admin_client.post(reverse(CHANGELIST), finished).status_code == 302
    assert list(Job.objects.values_list("pk", "state")) == [(running.pk, JobState.RUNNING)]
