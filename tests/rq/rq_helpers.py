"""Helpers of the RQ tests (a module of its own: test modules import it by name)."""

from __future__ import annotations

import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer


def remove_queue(client: redis.Redis, name: str) -> None:
    """Delete a queue, the jobs in it and in its registries, and its keys."""
    queue = Queue(name, connection=client, serializer=JSONSerializer)
    registries = [
        queue.failed_job_registry,
        queue.started_job_registry,
        queue.finished_job_registry,
        queue.deferred_job_registry,
        queue.scheduled_job_registry,
        queue.canceled_job_registry,
    ]
    job_ids = set(queue.get_job_ids())
    for registry in registries:
        job_ids.update(registry.get_job_ids())
    for job_id in job_ids:
        for key in client.scan_iter(match=f"{Job.redis_job_namespace_prefix}{job_id}*"):
            client.delete(key)
        for key in client.scan_iter(match=f"rq:results:{job_id}*"):
            client.delete(key)
    for key in client.scan_iter(match=f"*:{name}*"):
        client.delete(key)
    client.srem("rq:queues", f"rq:queue:{name}")
