"""The queue as a backend of Django's task framework, through Django's own API."""

from __future__ import annotations

from typing import Any

import pytest

from cachewire.errors import ConfigurationError
from cachewire_django.queue import Job, JobState, QueueWorker
from cachewire_django.queue._api import cancel_jobs

tasks_api = (
    pytest.importorskip("django_tasks")
    if pytest.importorskip("django").VERSION < (6,)
    else pytest.importorskip("django.tasks")
)
queue_django_tasks = pytest.importorskip("queue_django_tasks")
backend_module = pytest.importorskip("cachewire_django.queue.backend")
InvalidTask = backend_module.InvalidTask
QueueBackend = backend_module.QueueBackend
QueueTask = backend_module.QueueTask
JobCancelledError = backend_module.JobCancelledError

ALIASES = [
    pytest.param("default", marks=pytest.mark.django_db(transaction=True)),
    pytest.param(
        "pg",
        marks=[pytest.mark.postgres, pytest.mark.django_db(transaction=True, databases=["pg"])],
    ),
]

pytestmark = pytest.mark.timeout(30)


def _use_backend(settings: Any, database: str = "default", **options: Any) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "cachewire_django.queue.backend.QueueBackend",
            "OPTIONS": {"MAX_ATTEMPTS": 2, "DATABASE": database, **options},
        }
    }
    settings.CACHEWIRE_QUEUE = {"ALLOWED_MODULES": [], "RETRY_BASE_DELAY": 0}


@pytest.fixture(autouse=True)
def backend(settings: Any) -> None:
    _use_backend(settings)


@pytest.fixture(params=ALIASES)
def alias(request: pytest.FixtureRequest, settings: Any) -> str:
    _use_backend(settings, database=request.param)
    return str(request.param)


@pytest.mark.django_db(transaction=True)
def test_queue_backend_runs_a_task_and_reports_its_result() -> None:
    assert isinstance(queue_django_tasks.double, QueueTask)
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


@pytest.mark.django_db(transaction=True)
def test_queue_backend_retries_then_reports_each_error() -> None:
    result = queue_django_tasks.broken.enqueue()
    worker = QueueWorker()
    assert worker.run_pass() == (1, 1)
    assert worker.run_pass() == (1, 1)
    result.refresh()
    assert result.status == tasks_api.TaskResultStatus.FAILED
    assert [error.exception_class_path for error in result.errors] == ["builtins.ValueError"] * 2
    assert "a task that fails" in result.errors[-1].traceback


# ------------------------------------------------------------- per-task options


def test_task_options_reach_the_job_and_override_the_backend(alias: str) -> None:
    result = queue_django_tasks.rebuild_index.enqueue()
    job = Job.objects.using(alias).get(pk=int(result.id))
    assert (job.max_attempts, job.timeout, job.dedup_key, job.atomic) == (
        4,
        120.0,
        "rebuild-index",
        True,
    )
    # A task without options gets the backend's OPTIONS, then the queue's settings.
    plain = Job.objects.using(alias).get(pk=int(queue_django_tasks.double.enqueue(1).id))
    assert (plain.max_attempts, plain.timeout, plain.dedup_key, plain.atomic) == (
        2,
        None,
        None,
        False,
    )


def test_using_sets_the_options_of_one_call(alias: str) -> None:
    tuned = queue_django_tasks.double.using(
        priority=7, max_attempts=9, timeout=3, dedup_key="double-5"
    )
    assert isinstance(tuned, QueueTask)
    assert queue_django_tasks.double.max_attempts is None  # the declared task is unchanged
    job = Job.objects.using(alias).get(pk=int(tuned.enqueue(5).id))
    assert (job.priority, job.max_attempts, job.timeout, job.dedup_key) == (7, 9, 3.0, "double-5")
    kept = queue_django_tasks.rebuild_index.using(queue_name="default")
    assert (kept.max_attempts, kept.dedup_key, kept.atomic) == (4, "rebuild-index", True)
    assert queue_django_tasks.rebuild_index.using(atomic=False).atomic is False


def test_a_dedup_key_returns_the_active_job_of_that_key(alias: str) -> None:
    first = queue_django_tasks.rebuild_index.enqueue()
    second = queue_django_tasks.rebuild_index.enqueue()
    assert second.id == first.id
    assert Job.objects.using(alias).count() == 1
    assert QueueWorker(using=alias).run_pass() == (1, 0)
    first.refresh()
    assert first.return_value == "rebuilt"
    # Done: the key is free again.
    assert queue_django_tasks.rebuild_index.enqueue().id != first.id


def test_max_attempts_of_a_task_decides_when_it_fails_for_good(alias: str) -> None:
    result = queue_django_tasks.broken_once.enqueue()
    assert QueueWorker(using=alias).run_pass() == (1, 1)
    result.refresh()
    assert result.status == tasks_api.TaskResultStatus.FAILED
    assert len(result.errors) == 1


def test_the_timeout_of_a_task_stops_its_run(alias: str) -> None:
    result = queue_django_tasks.never_finishes.enqueue()
    assert QueueWorker(using=alias).run_pass() == (1, 1)
    result.refresh()
    assert result.status == tasks_api.TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "cachewire.errors.TaskTimeoutError"
    assert "ran longer than its timeout of 0.5s" in result.errors[-1].traceback


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts=0 must be an int >= 1"),
        ({"max_attempts": 2.5}, "max_attempts=2.5 must be an int >= 1"),
        ({"timeout": -1}, "timeout=-1 must be seconds > 0"),
        ({"timeout": "30"}, "timeout='30' must be seconds > 0"),
        ({"dedup_key": ""}, "dedup_key='' must be a non-empty string"),
        ({"atomic": "yes"}, "atomic must be True or False"),
    ],
)
@pytest.mark.django_db(transaction=True)
def test_bad_task_options_are_refused_naming_the_task(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidTask, match="not_a_task_yet") as declared:
        tasks_api.task(**options)(queue_django_tasks.not_a_task_yet)
    assert message in str(declared.value)
    with pytest.raises(InvalidTask) as changed:
        queue_django_tasks.double.using(**options)
    assert message in str(changed.value)
    assert "'double'" in str(changed.value)


@pytest.mark.django_db(transaction=True)
def test_an_unknown_task_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="retries"):
        tasks_api.task(retries=3)(queue_django_tasks.not_a_task_yet)
    with pytest.raises(TypeError, match="retries"):
        queue_django_tasks.double.using(retries=3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"TIMEOUT": 0}, "TASKS['bad']['OPTIONS']['TIMEOUT']=0 must be seconds > 0"),
        ({"MAX_ATTEMPTS": "3"}, "TASKS['bad']['OPTIONS']['MAX_ATTEMPTS']='3' must be an int"),
        ({"RETRIES": 3}, "unknown key(s) ['RETRIES']"),
    ],
)
def test_bad_backend_options_are_a_configuration_error(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        QueueBackend("bad", {"OPTIONS": options})
    assert message in str(refused.value)


# ------------------------------------------------------------- a cancelled job


def test_django_has_no_cancelled_status() -> None:
    """Why a cancelled job reads as FAILED: Django's statuses have no "cancelled" (if a
    Django release adds one, this test says it is time to use it)."""
    assert set(tasks_api.TaskResultStatus.values) == {"READY", "RUNNING", "FAILED", "SUCCESSFUL"}


def test_a_cancelled_job_reads_as_failed_with_a_cancellation_error(alias: str) -> None:
    result = queue_django_tasks.broken.enqueue()
    assert QueueWorker(using=alias).run_pass() == (1, 1)  # one failed attempt, a retry due
    assert cancel_jobs(Job.objects.using(alias).filter(pk=int(result.id))) == 1
    result.refresh()
    assert result.status == tasks_api.TaskResultStatus.FAILED
    assert result.is_finished
    assert result.finished_at is not None
    assert [error.exception_class for error in result.errors] == [ValueError, JobCancelledError]
    assert f"job {result.id} was cancelled" in result.errors[-1].traceback
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018 - Django raises for a task that did not succeed
    # It does not run: a pass finds nothing to do.
    assert QueueWorker(using=alias).run_pass() == (0, 0)
    assert Job.objects.using(alias).get(pk=int(result.id)).state == JobState.CANCELLED


def test_deschedule_cancels_the_ready_jobs_of_a_django_task_call(alias: str) -> None:
    from cachewire_django.queue import deschedule

    first = queue_django_tasks.double.enqueue(21)
    second = queue_django_tasks.double.enqueue(21)
    other = queue_django_tasks.double.enqueue(5)
    assert deschedule(queue_django_tasks.double, [21], using=alias) == 2
    for result in (first, second):
        result.refresh()
        assert result.status == tasks_api.TaskResultStatus.FAILED
        assert result.errors[-1].exception_class is JobCancelledError
    assert QueueWorker(using=alias).run_pass() == (1, 0)  # only double(5) runs
    other.refresh()
    assert other.return_value == 10


class _Heard:
    """What Django's task signals carried, in order: (signal, task result) pairs."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def names(self) -> list[tuple[str, Any]]:
        return [(name, result.status) for name, result in self.events]


@pytest.fixture
def heard() -> Any:
    signals = pytest.importorskip(
        "django.tasks.signals" if tasks_api.__name__ == "django.tasks" else "django_tasks.signals"
    )
    record = _Heard()
    receivers = {}
    for name in ("task_enqueued", "task_started", "task_finished"):

        def receiver(sender: Any, task_result: Any, _name: str = name, **kwargs: Any) -> None:
            assert sender is QueueBackend
            record.events.append((_name, task_result))

        getattr(signals, name).connect(receiver, weak=False)
        receivers[name] = receiver
    yield record
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


@pytest.mark.django_db(transaction=True)
def test_django_task_signals_follow_a_job_that_succeeds(heard: _Heard) -> None:
    status = tasks_api.TaskResultStatus
    result = queue_django_tasks.double.enqueue(21)
    assert heard.names() == [("task_enqueued", status.READY)]
    assert heard.events[0][1].id == result.id
    assert QueueWorker(worker_id="w").run_pass() == (1, 0)
    assert heard.names() == [
        ("task_enqueued", status.READY),
        ("task_started", status.RUNNING),
        ("task_finished", status.SUCCESSFUL),
    ]
    started, finished = heard.events[1][1], heard.events[2][1]
    assert started.worker_ids == ["w"]
    assert finished.return_value == 42
    assert finished.finished_at is not None
    # task_finished came after the outcome was written: the result read back agrees.
    assert queue_django_tasks.double.get_result(result.id).status == status.SUCCESSFUL


@pytest.mark.django_db(transaction=True)
def test_django_task_finished_is_sent_once_when_no_attempt_is_left(heard: _Heard) -> None:
    status = tasks_api.TaskResultStatus
    queue_django_tasks.broken.enqueue()  # two attempts
    worker = QueueWorker()
    assert worker.run_pass() == (1, 1)
    # The failed attempt will be retried: started, and not finished.
    assert heard.names() == [("task_enqueued", status.READY), ("task_started", status.RUNNING)]
    assert worker.run_pass() == (1, 1)
    assert heard.names()[2:] == [("task_started", status.RUNNING), ("task_finished", status.FAILED)]
    finished = heard.events[-1][1]
    assert [error.exception_class_path for error in finished.errors] == ["builtins.ValueError"] * 2


@pytest.mark.django_db(transaction=True)
def test_a_deduplicated_enqueue_sends_no_task_enqueued(heard: _Heard) -> None:
    first = queue_django_tasks.rebuild_index.enqueue()
    again = queue_django_tasks.rebuild_index.enqueue()
    assert again.id == first.id
    assert [name for name, _ in heard.events] == ["task_enqueued"]


@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_raises_fails_neither_the_job_nor_the_worker(
    heard: _Heard, caplog: pytest.LogCaptureFixture
) -> None:
    signals = pytest.importorskip(
        "django.tasks.signals" if tasks_api.__name__ == "django.tasks" else "django_tasks.signals"
    )

    def faulty(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("a faulty receiver")

    signals.task_started.connect(faulty, weak=False)
    signals.task_finished.connect(faulty, weak=False)
    try:
        result = queue_django_tasks.double.enqueue(4)
        assert QueueWorker().run_pass() == (1, 0)
    finally:
        signals.task_started.disconnect(faulty)
        signals.task_finished.disconnect(faulty)
    result.refresh()
    assert result.return_value == 8
    assert [name for name, _ in heard.events] == ["task_enqueued", "task_started", "task_finished"]
    assert "a faulty receiver" in caplog.text
