"""The ``rq`` dispatcher's settings, the jobs it writes, and how failures map onto RQ."""

from __future__ import annotations

import asyncio
import json
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus, Retry
from rq.serializers import JSONSerializer
from rq_helpers import remove_queue

import cachewire
from cachewire import DispatchContext, RetryPolicy, Rule, changed, task
from cachewire.dispatch import get_dispatcher
from cachewire.errors import ConfigurationError
from cachewire.rules import get_rule
from cachewire.tasks import TaskRegistry
from cachewire.testing import RecordingFunction
from cachewire_rq import RQDispatcher, rq_retry

pytestmark = pytest.mark.redis


@pytest.fixture(autouse=True)
def _settings(rq_url: str, queue_name: str, clean_state: None) -> None:
    cachewire.configure(dispatcher_settings={"rq": {"URL": rq_url, "QUEUE": queue_name}})


@pytest.fixture
def queue(rq_client: redis.Redis, queue_name: str) -> Queue:
    return Queue(queue_name, connection=rq_client, serializer=JSONSerializer)


@pytest.fixture
def target() -> RecordingFunction:
    return RecordingFunction(f"rq_unit.{uuid.uuid4().hex}", ("user_id",))


def _rule(target: RecordingFunction, **options: Any) -> Rule:
    return Rule(
        model=f"{target.cache_id}.User",
        field_mapping={"user_id": "id"},
        function=target,
        dispatcher="rq",
        name=f"{target.cache_id}.rule",
        **options,
    )


def test_the_entry_point_names_the_dispatcher() -> None:
    from importlib import metadata

    names = {ep.name: ep.value for ep in metadata.entry_points(group="cachewire.dispatchers")}
    assert names["rq"] == "cachewire_rq:RQDispatcher"
    assert names["django_rq"] == "cachewire_rq.django:DjangoRQDispatcher"
    assert isinstance(get_dispatcher("rq"), RQDispatcher)


def test_an_unknown_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="queue_name"):
        get_dispatcher("rq", {"queue_name": "typo"})


def test_an_unknown_settings_key_is_a_configuration_error(rq_url: str) -> None:
    with pytest.raises(ConfigurationError, match="QUEUES"):
        cachewire.configure(dispatcher_settings={"rq": {"URL": rq_url, "QUEUES": "typo"}})


@pytest.mark.parametrize(
    ("key", "value"),
    [("job_timeout", "soon"), ("retry", 3), ("connection", "redis://x"), ("result_ttl", 1.5)],
)
def test_an_option_of_the_wrong_type_is_a_configuration_error(key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=key):
        get_dispatcher("rq", {key: value})


def test_retry_arguments_are_checked_when_the_dispatcher_is_built() -> None:
    with pytest.raises(ConfigurationError, match="max_tries"):
        get_dispatcher("rq", {"retry": {"max_tries": 3}})


def test_the_job_is_json_naming_the_function_with_the_envelope(
    target: RecordingFunction, queue: Queue, rq_client: redis.Redis
) -> None:
    rule = _rule(target)
    changed(f"{target.cache_id}.User", {"id": 5})
    (job_id,) = queue.get_job_ids()
    raw = rq_client.hget(f"rq:job:{job_id}", "data")
    assert raw is not None
    # RQ compresses the job data; inside is JSON, not a pickle.
    function, instance, args, kwargs = json.loads(zlib.decompress(raw))
    assert function == "cachewire_rq.run_job"
    assert instance is None
    assert kwargs == {}
    (body,) = args
    envelope = json.loads(body)
    assert envelope["kind"] == "rules"
    assert envelope["body"]["rule_kwargs"] == {rule.id: [{"user_id": 5}]}
    job = Job.fetch(job_id, connection=rq_client, serializer=JSONSerializer)
    assert job.retries_left is None  # the raise policy is off: no Retry
    assert job.result_ttl == 0


def test_rule_options_win_over_settings(
    target: RecordingFunction, rq_client: redis.Redis, queue_name: str
) -> None:
    other = f"{queue_name}-other"
    _rule(
        target,
        dispatcher_config={"queue": other, "job_timeout": 7, "function_path": "my.entry"},
    )
    try:
        changed(f"{target.cache_id}.User", {"id": 5})
        other_queue = Queue(other, connection=rq_client, serializer=JSONSerializer)
        (job_id,) = other_queue.get_job_ids()
        job = Job.fetch(job_id, connection=rq_client, serializer=JSONSerializer)
        assert job.timeout == 7
        assert job.func_name == "my.entry"
    finally:
        remove_queue(rq_client, other)


def test_a_connection_setting_is_used(rq_url: str, queue_name: str, queue: Queue) -> None:
    client = redis.Redis.from_url(rq_url)
    cachewire.configure(dispatcher_settings={"rq": {"CONNECTION": client, "QUEUE": queue_name}})
    dispatcher = RQDispatcher()
    assert dispatcher.queue().connection is client
    dispatcher.dispatch(
        rule_ids=["rq_unit.none"], rule_kwargs={"rq_unit.none": [{}]}, context=DispatchContext()
    )
    assert queue.count == 1
    client.close()


def test_the_raise_policy_attaches_rqs_retry_with_the_policy_backoff(
    target: RecordingFunction, queue: Queue, rq_client: redis.Redis, rq_url: str, queue_name: str
) -> None:
    cachewire.configure(
        dispatcher_settings={
            "rq": {
                "URL": rq_url,
                "QUEUE": queue_name,
                "RETRY": {"max_attempts": 4, "base_delay": 1.5, "jitter": False},
            }
        }
    )
    _rule(target, raise_exception=True)
    changed(f"{target.cache_id}.User", {"id": 5})
    (job_id,) = queue.get_job_ids()
    job = Job.fetch(job_id, connection=rq_client, serializer=JSONSerializer)
    assert job.retries_left == 3
    assert job.retry_intervals == [2, 3, 6]  # 1.5, 3 and 6 seconds, rounded up


def test_rq_retry_of_a_single_attempt_policy_is_none() -> None:
    assert rq_retry(RetryPolicy(max_attempts=1)) is None
    retry = rq_retry(RetryPolicy(max_attempts=3, base_delay=0, jitter=False))
    assert retry is not None
    assert (retry.max, retry.intervals) == (2, [0, 0])


def test_an_unreadable_body_fails_without_retries(
    queue: Queue, rq_client: redis.Redis, run_worker: Callable[..., Any], queue_name: str
) -> None:
    job = queue.enqueue_call(
        "cachewire_rq.run_job", args=("not an envelope",), retry=Retry(max=3), result_ttl=0
    )
    asyncio.run(run_worker(queue_name)())
    job = Job.fetch(job.id, connection=rq_client, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FAILED
    result = job.latest_result()
    assert result is not None
    assert "PayloadError" in (result.exc_string or "")
    assert job.retries_left == 0
    assert job.id in queue.failed_job_registry.get_job_ids()


def test_a_task_job_is_the_task_uuid_with_its_timeout(
    queue: Queue, rq_client: redis.Redis, queue_name: str
) -> None:
    registry = TaskRegistry("rq-unit-tasks")

    @task(name="rq_unit.work", registry=registry, dispatcher="rq", timeout=2.5)
    def work(x: int) -> int:
        return x

    result = work.apply_async((1,), queue=queue_name)
    job = Job.fetch(result.uuid, connection=rq_client, serializer=JSONSerializer)
    assert job.timeout == 3
    assert job.origin == queue_name
    envelope = json.loads(job.args[0])
    assert (envelope["kind"], envelope["body"]["name"]) == ("task", "rq_unit.work")


def test_a_rule_in_the_worker_is_not_the_producers_concern() -> None:
    # The dispatcher resolves nothing it does not need: an id unknown here still travels.
    assert get_rule("rq_unit.nowhere") is None
    get_dispatcher("rq").dispatch(
        rule_ids=["rq_unit.nowhere"],
        rule_kwargs={"rq_unit.nowhere": [{"a": 1}]},
        context=DispatchContext(),
    )
