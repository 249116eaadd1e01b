"""The ``django_rq`` dispatcher: the shared contracts on queues from ``django_rq.get_queue`` with
an in-process `SimpleWorker`, and a real ``manage.py rqworker`` process."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq_helpers import remove_queue

import cachewire
from cachewire import changed
from cachewire.errors import ConfigurationError
from cachewire.testing import DispatcherContract
from conftest import wait_for

pytest.importorskip("django")
if importlib.util.find_spec("django_rq") is None:
    pytest.skip(
        "django-rq is not installed (the cachewire-rq[django] extra)", allow_module_level=True
    )

from django.conf import settings
from django.test import override_settings

pytestmark = pytest.mark.redis

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session", autouse=True)
def _django() -> None:
    if not settings.configured:
        import django

        settings.configure(INSTALLED_APPS=["django_rq"], USE_TZ=True, SECRET_KEY="tests")
        django.setup()


@pytest.fixture
def rq_queues(rq_url: str, queue_name: str) -> Iterator[None]:
    with override_settings(RQ_QUEUES={queue_name: {"URL": rq_url}, "contract": {"URL": rq_url}}):
        yield


class TestDjangoRQContract(DispatcherContract):
    expect_batching = True

    @pytest.fixture(autouse=True)
    def _settings(self, rq_queues: None, queue_name: str, clean_state: None) -> None:
        cachewire.configure(dispatcher_settings={"django_rq": {"QUEUE": queue_name}})

    @pytest.fixture
    def contract_queue(self, rq_client: Any) -> Iterator[str]:
        yield "contract"
        remove_queue(rq_client, "contract")

    @pytest.fixture
    def dispatcher(self) -> Any:
        return "django_rq"

    @pytest.fixture
    def wait_idle(
        self, run_worker: Callable[..., Any], queue_name: str, contract_queue: str
    ) -> Any:
        return run_worker(queue_name, contract_queue)


def test_a_queue_missing_from_rq_queues_is_a_configuration_error(
    rq_queues: None, clean_state: None
) -> None:
    from cachewire.dispatch import get_dispatcher

    dispatcher = get_dispatcher("django_rq", {"queue": "not-in-rq-queues"})
    with pytest.raises(ConfigurationError, match="not-in-rq-queues"):
        dispatcher.queue()


@pytest.fixture
def rqworker(rq_url: str, queue_name: str) -> Iterator[subprocess.Popen[bytes]]:
    """``manage.py rqworker`` of the test project, on this test's queue."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rqdjango.settings",
        "CW_RQ_TEST_URL": rq_url,
        "CW_RQ_TEST_QUEUE": queue_name,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "rqdjango_manage.py",
            "rqworker",
            "--serializer",
            "rq.serializers.JSONSerializer",
            "--with-scheduler",
            queue_name,
        ],
        cwd=HERE,
        env=env,
    )
    yield process
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_manage_py_rqworker_runs_rules_and_tasks(
    rqworker: subprocess.Popen[bytes],
    rq_queues: None,
    queue_name: str,
    rq_url: str,
    rq_client: redis.Redis,
    clean_state: None,
) -> None:
    import rq_django_rules

    rq_django_rules.ensure_rules()
    cachewire.configure(dispatcher_settings={"django_rq": {"QUEUE": queue_name}}, task_guard=rq_url)
    run = uuid.uuid4().hex[:12]
    try:
        changed("rq_django_test.Member", {"run": run, "id": 1, "fail": 0})
        assert wait_for(rq_client, f"cw-test:{run}:events") == "invalidated:1"
        submitted = rq_django_rules.whoami.delay(run)
        assert wait_for(rq_client, f"cw-test:{run}:events") == (
            f"{submitted.uuid}|rq_django_test.whoami"
        )
    finally:
        for key in rq_client.scan_iter(match=f"cw-test:{run}:*"):
            rq_client.delete(key)
