"""Run cachewire rule work and tasks on RQ workers.

The ``rq`` dispatcher is registered under the ``cachewire.dispatchers`` entry point; workers run
`run_job`, the default ``function_path``.
"""

from __future__ import annotations

from cachewire_rq._dispatcher import BaseRQDispatcher, RQDispatcher, rq_retry
from cachewire_rq._jobs import perform, run_job

__all__ = ["BaseRQDispatcher", "RQDispatcher", "perform", "rq_retry", "run_job"]
