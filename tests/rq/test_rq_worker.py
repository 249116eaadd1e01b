"""Rule work and tasks through ``rq worker`` processes: the forking `Worker`, timeouts, retries,
the shared duplicate guard, and Redis going away while changes are dispatched."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import rq_worker_app as app
from rq import Queue, Worker
from rq.job import Job
from rq.results import Result
from rq.serializers import JSONSerializer
from rq_helpers import remove_queue

import cachewire
from cachewire import changed
from cachewire.dispatch import dispatch_stats
from cachewire.errors import DispatchError
from cachewire.testing import LogWatch, TcpProxy, unique_name
from conftest import WorkerProcess, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(60)]

#: Retries at once (no scheduler round trip), enough of them to outlast a short outage.
FAST_RETRY = {"max_attempts": 4, "base_delay": 0.0, "jitter": False}


@pytest.fixture
def run() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(autouse=True)
def _worker_app(
    rq_url: str, queue_name: str, clean_state: None, rq_client: redis.Redis, run: str
) -> Iterator[None]:
    app.ensure_rules()
    app.configure_worker(rq_url)
    cachewire.configure(
        dispatcher_settings={"rq": {"URL": rq_url, "QUEUE": queue_name, "RETRY": FAST_RETRY}}
    )
    yield
    for key in rq_client.scan_iter(match=f"cw-test:{run}:*"):
        rq_client.delete(key)


@pytest.fixture(scope="module")
def shared_queue(rq_url: str) -> Iterator[str]:
    """One queue and one worker process for this module (starting a worker takes a second);
    each test tells its events apart by its own ``run`` id."""
    name = unique_name("cw-rq-worker")
    yield name
    client = redis.Redis.from_url(rq_url)
    remove_queue(client, name)
    client.close()


@pytest.fixture
def queue_name(shared_queue: str) -> str:
    return shared_queue


@pytest.fixture(scope="module")
def worker(rq_url: str, shared_queue: str) -> Iterator[WorkerProcess]:
    process = WorkerProcess(rq_url, [shared_queue])
    process.start()
    yield process
    process.stop()


def test_rule_work_runs_in_a_forked_horse(
    worker: WorkerProcess, rq_client: redis.Redis, run: str
) -> None:
    with cachewire.collect():
        changed("rq_test.User", {"run": run, "id": 1, "fail": 0})
        changed("rq_test.User", {"run": run, "id": 2, "fail": 0})
    got = {wait_for(rq_client, app.events(run)), wait_for(rq_client, app.events(run))}
    assert got == {"invalidated:1", "invalidated:2"}


def test_the_raise_policy_makes_rq_retry_a_failed_rule(
    worker: WorkerProcess, rq_client: redis.Redis, run: str
) -> None:
    changed("rq_test.Account", {"run": run, "id": 7, "fail": 2})
    events = [wait_for(rq_client, app.events(run)) for _ in range(3)]
    assert events == ["failed:7", "failed:7", "invalidated:7"]


def test_a_retry_with_a_delay_goes_through_rqs_scheduler(
    worker: WorkerProcess, rq_client: redis.Redis, run: str, rq_url: str, queue_name: str
) -> None:
    cachewire.configure(
        dispatcher_settings={
            "rq": {
                "URL": rq_url,
                "QUEUE": queue_name,
                "RETRY": {"max_attempts": 2, "base_delay": 1.0, "jitter": False},
            }
        }
    )
    changed("rq_test.Account", {"run": run, "id": 8, "fail": 1})
    events = [wait_for(rq_client, app.events(run)) for _ in range(2)]
    assert events == ["failed:8", "invalidated:8"]


def test_without_the_raise_policy_a_failed_rule_is_not_retried(
    worker: WorkerProcess, rq_client: redis.Redis, run: str
) -> None:
    changed("rq_test.User", {"run": run, "id": 3, "fail": 1})
    assert wait_for(rq_client, app.events(run)) == "failed:3"
    changed("rq_test.User", {"run": run, "id": 4, "fail": 0})
    # Jobs of one queue run in order: had the first been retried, its retry would come first.
    assert wait_for(rq_client, app.events(run)) == "invalidated:4"


def _result(rq_client: redis.Redis, job_id: str) -> Result:
    job = Job.fetch(job_id, connection=rq_client, serializer=JSONSerializer)
    result = job.latest_result(timeout=30)
    assert result is not None
    return result


def test_task_timeout_is_rqs_job_timeout_and_frees_the_shared_guard(
    worker: WorkerProcess, rq_client: redis.Redis, run: str, queue_name: str
) -> None:
    first = app.sleepy.apply_async((run, 30), queue=queue_name)
    assert first.outcome == "accepted"
    assert wait_for(rq_client, app.events(run)) == "started"
    # The guard is in Redis: a duplicate submitted here while the worker runs it is dropped.
    assert app.sleepy.apply_async((run, 30), queue=queue_name).outcome == "discarded"
    job = Job.fetch(first.uuid, connection=rq_client, serializer=JSONSerializer)
    assert job.timeout == 1
    result = _result(rq_client, first.uuid)
    assert result.type == Result.Type.FAILED
    assert "TaskTimeoutError" in (result.exc_string or "")
    # The run ended (by its timeout), so the next submission runs.
    again = app.sleepy.apply_async((run, 0), queue=queue_name)
    assert again.outcome == "accepted"
    assert [wait_for(rq_client, app.events(run)) for _ in range(2)] == ["started", "finished"]


def test_bound_context_comes_from_the_rq_job(
    worker: WorkerProcess, rq_client: redis.Redis, run: str, queue_name: str
) -> None:
    submitted = app.whoami.apply_async((run,), queue=queue_name)
    task_id, worker_id, attempt = wait_for(rq_client, app.events(run)).split("|")
    assert task_id == submitted.uuid  # the RQ job id
    queue = Queue(queue_name, connection=rq_client, serializer=JSONSerializer)
    assert worker_id in {w.name for w in Worker.all(connection=rq_client, queue=queue)}
    assert attempt == "1"


def test_serial_duplicates_wait_for_each_other_across_processes(
    worker: WorkerProcess, rq_client: redis.Redis, run: str, queue_name: str
) -> None:
    assert app.serial.apply_async((run, True), queue=queue_name).outcome == "accepted"
    assert wait_for(rq_client, app.events(run)) == "started"
    assert app.serial.apply_async((run, True), queue=queue_name).outcome == "queued"
    rq_client.rpush(f"cw-test:{run}:release", 1)
    # The worker process releases the held duplicate and RQ runs it.
    assert [wait_for(rq_client, app.events(run)) for _ in range(2)] == ["finished", "started"]
    rq_client.rpush(f"cw-test:{run}:release", 1)
    assert wait_for(rq_client, app.events(run)) == "finished"


@pytest.fixture
def proxy(rq_url: str) -> Iterator[TcpProxy]:
    with TcpProxy.for_url(rq_url, default_port=6379) as proxy:
        yield proxy


@pytest.fixture
def retry_logged() -> Iterator[LogWatch]:
    """Set when the dispatcher logs that it will try the broker again."""
    with LogWatch("cachewire.rq", "retrying") as watch:
        yield watch


@pytest.fixture
def via_proxy(proxy: TcpProxy, rq_url: str, queue_name: str) -> str:
    """Producers reach Redis through the proxy; the worker process connects directly."""
    url = proxy.url_through(rq_url)
    cachewire.configure(
        dispatcher_settings={
            "rq": {
                "URL": url,
                "QUEUE": queue_name,
                "RETRY": {"max_attempts": 200, "base_delay": 0.02, "max_delay": 0.1},
            }
        }
    )
    return url


def test_redis_down_while_dispatching_never_fails_the_change(
    via_proxy: str, proxy: TcpProxy, worker: WorkerProcess, rq_client: redis.Redis, run: str
) -> None:
    changed("rq_test.User", {"run": run, "id": 1, "fail": 0})
    assert wait_for(rq_client, app.events(run)) == "invalidated:1"
    proxy.cut()
    changed("rq_test.User", {"run": run, "id": 2, "fail": 0})  # logged and counted, not raised
    assert dispatch_stats.snapshot()["dispatch_errors"] == 1
    proxy.restore()
    changed("rq_test.User", {"run": run, "id": 3, "fail": 0})
    assert wait_for(rq_client, app.events(run)) == "invalidated:3"


def test_a_connection_redis_dropped_while_idle_does_not_lose_the_next_change(
    via_proxy: str, proxy: TcpProxy, worker: WorkerProcess, rq_client: redis.Redis, run: str
) -> None:
    changed("rq_test.User", {"run": run, "id": 1, "fail": 0})
    assert wait_for(rq_client, app.events(run)) == "invalidated:1"
    proxy.cut()  # drops the dispatcher's pooled connection, as a Redis restart does
    proxy.restore()
    changed("rq_test.User", {"run": run, "id": 2, "fail": 0})  # raise policy off: no retry
    assert dispatch_stats.snapshot()["dispatch_errors"] == 0
    assert wait_for(rq_client, app.events(run)) == "invalidated:2"


def test_with_the_raise_policy_dispatch_retries_until_redis_is_back(
    via_proxy: str,
    proxy: TcpProxy,
    worker: WorkerProcess,
    rq_client: redis.Redis,
    run: str,
    retry_logged: LogWatch,
) -> None:
    proxy.cut()
    outcome: dict[str, Any] = {}

    def change() -> None:
        try:
            changed("rq_test.Account", {"run": run, "id": 5, "fail": 1})
            outcome["ok"] = True
        except DispatchError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=change)
    thread.start()
    assert retry_logged.seen.wait(10), "the dispatcher never retried"
    proxy.restore()
    thread.join(30)
    assert outcome == {"ok": True}
    assert dispatch_stats.snapshot()["dispatch_errors"] == 0
    # Enqueued once Redis was back; the worker's first attempt fails and RQ retries it.
    assert [wait_for(rq_client, app.events(run)) for _ in range(2)] == [
        "failed:5",
        "invalidated:5",
    ]
