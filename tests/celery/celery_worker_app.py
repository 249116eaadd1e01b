"""The Celery app of worker processes started by the tests (``celery -A celery_worker_app``)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready
from celery_shared import VARIANTS, RedisRecorder, declare_rule, record

import cachewire
from cachewire_celery import TASK_NAME
from cachewire_celery.tasks import run_work

QUEUE = os.environ["CW_QUEUE"]

app = Celery(
    "celery-tests-worker",
    broker=os.environ["CW_BROKER_URL"],
    backend=os.environ["CW_RECORD_URL"],
    include=["cachewire_celery.tasks"],
)
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    result_expires=600,
)
app.conf.task_annotations = {TASK_NAME: {"retry_backoff": 0.05, "retry_backoff_max": 0.5}}

cachewire.configure(task_guard=os.environ["CW_RECORD_URL"])
for variant in VARIANTS:
    declare_rule(RedisRecorder(os.environ["CW_RECORD_URL"], os.environ["CW_RECORD_KEY"]), variant)


@app.task(name="celery-tests.remote_run_work")
def remote_run_work(body: str) -> None:
    """The worker task under a name only workers know (the producer must use send_task)."""
    record("remote")
    run_work(body)


@worker_ready.connect
def _announce(**_: object) -> None:
    record("ready", pid=os.getpid())
