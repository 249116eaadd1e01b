"""The shared dispatcher and task contracts, on a real in-process Dramatiq `Worker`, per broker."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
from dramatiq_support import RunningWorker

from cachewire.testing import DispatcherContract, unique_name


class TestDramatiqContract(DispatcherContract):
    expect_batching = True

    @pytest.fixture(autouse=True)
    def _global_broker(self, running_worker: RunningWorker) -> None:
        dramatiq.set_broker(running_worker.broker)

    @pytest.fixture
    def dispatcher(self) -> str:
        return "dramatiq"

    @pytest.fixture
    def dispatcher_config(self) -> dict[str, Any]:
        # No Dramatiq retries here: the contract counts one raised error per failing rule.
        return {"queue": unique_name("cw"), "max_retries": 0}

    @pytest.fixture
    def wait_idle(self, running_worker: RunningWorker) -> Any:
        return running_worker.wait_idle
