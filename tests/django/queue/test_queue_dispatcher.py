"""The ``db`` dispatcher passes the dispatcher conformance suite on SQLite and PostgreSQL.

The suite's recording functions live in this process, so its worker drains the queue here.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from queue_fixtures import kept_rules, queue_settings  # noqa: F401 - fixtures

from cachewire import configure, get_settings
from cachewire.dispatch import dispatch_stats
from cachewire.testing import DispatcherContract, override_settings
from cachewire_django.queue import Job, QueueWorker
from cachewire_django.queue.dispatcher import DbDispatcher

# The suite and these tests declare rules; the Django test app's rules are kept.
pytestmark = pytest.mark.usefixtures("kept_rules")

ALIASES = [
    pytest.param("default", marks=pytest.mark.django_db(transaction=True)),
    pytest.param(
        "pg",
        marks=[
            pytest.mark.postgres,
            pytest.mark.django_db(transaction=True, databases=["default", "pg"]),
        ],
    ),
]


@pytest.fixture(autouse=True)
def _orm_in_async_tests(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The suite's tests are coroutines; the dispatcher writes with the blocking ORM.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    yield
    # Task bodies submit from helper threads; their connections close once collected.
    gc.collect()


class TestDbDispatcher(DispatcherContract):
    expect_batching = True

    @pytest.fixture(autouse=True)
    def _isolated_rules(self) -> Iterator[None]:
        """The suite's isolation, keeping the Django test app's rules (see kept_rules)."""
        saved = get_settings()
        dispatch_stats.reset()
        yield
        configure(
            dispatcher_raise_exception=saved.dispatcher_raise_exception,
            dispatcher_settings=saved.dispatcher_settings,
        )

    @pytest.fixture(params=ALIASES)
    def alias(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def dispatcher(self, alias: str) -> Iterator[Any]:
        with override_settings(dispatcher_settings={"db": {"DATABASE": alias}}):
            yield "db"

    @pytest.fixture
    def wait_idle(self, alias: str) -> Callable[[], Awaitable[None]]:
        async def drain() -> None:
            # Until a pass finds nothing: jobs may queue more jobs (held duplicates).
            worker = QueueWorker(using=alias, worker_id="contract")
            while worker.run_pass()[0]:
                pass

        return drain

    def test_the_job_is_in_the_dispatchers_database(self, alias: str, dispatcher: Any) -> None:
        from cachewire import DispatchContext

        DbDispatcher().dispatch(
            rule_ids=["x"], rule_kwargs={"x": [{"a": 1}]}, context=DispatchContext()
        )
        (job,) = Job.objects.using(alias).all()
        assert job.task == "cachewire.rules"
        assert job.body is not None


@pytest.mark.parametrize("alias", ALIASES)
def test_queue_a_model_change_writes_its_job_in_the_same_transaction(
    alias: str,
) -> None:
    from django.db import transaction
    from testapp.models import Tag

    from cachewire import Rule
    from cachewire.testing import RecordingFunction

    target = RecordingFunction("queue.tag_names", ("name",))
    Rule(model="testapp.Tag", field_mapping={"name": "name"}, dispatcher="db", function=target)
    with pytest.raises(RuntimeError), transaction.atomic(using=alias):
        Tag.objects.using(alias).create(name="rolled back")
        assert Job.objects.using(alias).filter(task="cachewire.rules").count() == 1
        raise RuntimeError("roll back")
    assert Job.objects.using(alias).count() == 0
    with transaction.atomic(using=alias):
        Tag.objects.using(alias).create(name="kept")
    assert QueueWorker(using=alias).run_pass() == (1, 0)
    assert target.calls == [{"name": "kept"}]
