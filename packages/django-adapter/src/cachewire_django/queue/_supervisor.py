"""`Supervisor`: the long-running worker, N child processes each running a `QueueWorker`.

The parent claims nothing: it starts the children, restarts one that died, forwards SIGTERM /
SIGINT as a graceful stop (each child finishes its current job and gives back the rest of its
claim), and enforces timeouts. A job with a timeout is first stopped cooperatively in its child
(`TaskTimeoutError` raised by SIGALRM, or the asyncio timeout of an async task); if the child is
still in that job ``KILL_GRACE_SECONDS`` later, the parent kills it with SIGKILL and records the
attempt as failed (while the claim still holds).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from django.db import connections, router

from cachewire.errors import TaskTimeoutError
from cachewire_django.queue import _settings
from cachewire_django.queue._worker import QueueWorker, record_failure
from cachewire_django.queue.models import Job

__all__ = ["Supervisor"]

logger = logging.getLogger("cachewire.queue")


class _Child:
    def __init__(self, process: Any, pipe: Connection) -> None:
        self.process = process
        self.pipe = pipe
        #: (job id, claim hex, attempts, monotonic deadline) of the timed job it runs
        self.running: tuple[int, str, int, float] | None = None


def _child_main(
    pipe: Connection, using: str | None, queues: Sequence[str] | None, name: str, parent: int
) -> None:
    def report(job: Job, deadline: float | None) -> None:
        if deadline is None:
            pipe.send(("end", job.pk))
        else:
            pipe.send(("start", job.pk, str(job.claim), job.attempts, deadline))

    worker = QueueWorker(
        using=using, queues=queues, worker_id=name, reporter=report, parent_pid=parent
    )

    def stop(signum: int, frame: Any) -> None:
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into a stop
    try:
        worker.run()
    finally:
        connections.close_all()


class Supervisor:
    """Runs ``concurrency`` worker processes until SIGTERM / SIGINT (or `stop`)."""

    def __init__(
        self,
        *,
        concurrency: int = 1,
        using: str | None = None,
        queues: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.using = using or router.db_for_write(Job)
        self.queues = list(queues) if queues else None
        self.name = name or f"{os.uname().nodename}:{os.getpid()}"
        self.settings = _settings.current()
        self.children: list[_Child] = []
        self.stopping = False
        self.killed = 0
        self._context = multiprocessing.get_context("fork")

    def _start_child(self, index: int) -> _Child:
        connections.close_all()  # a forked child must not share the parent's connections
        parent_end, child_end = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_child_main,
            args=(child_end, self.using, self.queues, f"{self.name}/{index}", os.getpid()),
            name=f"cachewire-worker-{index}",
            daemon=True,
        )
        process.start()
        child_end.close()
        return _Child(process, parent_end)

    def stop(self, signum: int = 0, frame: Any = None) -> None:
        """Ask every child to finish its current job and exit."""
        if not self.stopping:
            logger.info("cachewire worker: stopping after the current jobs")
        self.stopping = True
        for child in self.children:
            if child.process.is_alive() and child.process.pid:
                os.kill(child.process.pid, signal.SIGTERM)

    def run(self) -> None:
        """Start the children and supervise them until stopped and all have exited."""
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.children = [self._start_child(i) for i in range(self.concurrency)]
            while True:
                self._supervise_once(timeout=0.2)
                if self.stopping and not any(c.process.is_alive() for c in self.children):
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for child in self.children:
                child.process.join(timeout=5)
                child.pipe.close()
            connections.close_all()

    def _supervise_once(self, timeout: float) -> None:
        pipes = [c.pipe for c in self.children if not c.pipe.closed]
        for ready in wait(pipes, timeout=timeout):
            child = next(c for c in self.children if c.pipe is ready)
            self._read_reports(child)
        now = time.monotonic()
        for index, child in enumerate(self.children):
            if child.running and now > child.running[3] + self.settings.kill_grace_seconds:
                self._kill_for_timeout(child)
            if not child.process.is_alive():
                # A job it held runs again once its lease expires (see QueueWorker.reap).
                child.running = None
                if not self.stopping:
                    logger.warning(
                        "cachewire worker: process %s exited (%s); starting another",
                        child.process.pid,
                        child.process.exitcode,
                    )
                    child.pipe.close()
                    self.children[index] = self._start_child(index)

    def _read_reports(self, child: _Child) -> None:
        try:
            while not child.pipe.closed and child.pipe.poll():
                report = child.pipe.recv()
                if report[0] == "start":
                    child.running = (report[1], report[2], report[3], report[4])
                else:
                    child.running = None
        except (EOFError, OSError):
            child.pipe.close()

    def _kill_for_timeout(self, child: _Child) -> None:
        assert child.running is not None
        job_id = child.running[0]
        logger.error(
            "cachewire worker: job %s ignored its timeout; killing process %s",
            job_id,
            child.process.pid,
        )
        if child.process.pid:
            os.kill(child.process.pid, signal.SIGKILL)
        child.process.join(timeout=5)
        self.killed += 1
        _, claim, _, _ = child.running
        child.running = None
        job = Job.objects.using(self.using).filter(pk=job_id, claim=claim).first()
        if job is not None:
            error = (
                f"{TaskTimeoutError.__module__}.{TaskTimeoutError.__qualname__}: killed "
                f"{self.settings.kill_grace_seconds}s after its timeout"
            )
            record_failure(self.using, job, error, "")
