"""Rules and tasks on the django_rq dispatcher, run by ``manage.py rqworker`` in the tests."""

from __future__ import annotations

from rq_worker_app import MAPPING, ReportingTarget, events, redis_client

from cachewire import Rule, TaskContext, task
from cachewire.rules import get_rule

member = ReportingTarget("rq_django_test.member")


def ensure_rules() -> None:
    """Register the rule (again, after a test unregistered every rule)."""
    if get_rule("rq_django_test.member_rule") is None:
        Rule(
            model="rq_django_test.Member",
            field_mapping=MAPPING,
            function=member,
            dispatcher="django_rq",
            name="rq_django_test.member_rule",
        )


ensure_rules()


@task(name="rq_django_test.whoami", dispatcher="django_rq", bind=True)
def whoami(ctx: TaskContext, run: str) -> None:
    redis_client().rpush(events(run), f"{ctx.uuid}|{ctx.task_name}")
