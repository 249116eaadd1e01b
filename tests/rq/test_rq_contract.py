"""The ``rq`` dispatcher passes the shared contracts with a real `SimpleWorker` on real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rq_helpers import remove_queue

import cachewire
from cachewire.testing import DispatcherContract

pytestmark = pytest.mark.redis


class TestRQContract(DispatcherContract):
    expect_batching = True

    @pytest.fixture(autouse=True)
    def _settings(self, rq_url: str, queue_name: str, clean_state: None) -> None:
        cachewire.configure(dispatcher_settings={"rq": {"URL": rq_url, "QUEUE": queue_name}})

    @pytest.fixture
    def contract_queue(self, rq_client: Any) -> Iterator[str]:
        # The task contract submits one task to the queue named "contract"; this run's own
        # database keeps it apart from other runs.
        yield "contract"
        remove_queue(rq_client, "contract")

    @pytest.fixture
    def dispatcher(self) -> Any:
        return "rq"

    @pytest.fixture
    def wait_idle(
        self, run_worker: Callable[..., Any], queue_name: str, contract_queue: str
    ) -> Any:
        return run_worker(queue_name, contract_queue)
