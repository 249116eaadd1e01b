"""The redelivery queue behind the celery dispatcher's broker-outage handling, without a broker."""

from __future__ import annotations

import threading

from cachewire import RetryPolicy
from cachewire_celery._redelivery import Redelivery

FAST = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, jitter=False)
#: Retries every 10 ms for as long as a test lasts.
PATIENT = RetryPolicy(max_attempts=100_000, base_delay=0.01, max_delay=0.01, jitter=False)


class Broker:
    """A send target that fails until it is let through."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.sent: list[str] = []
        self.attempts = 0

    def sender(self, what: str):  # type: ignore[no-untyped-def]
        def send() -> None:
            self.attempts += 1
            if not self.up.is_set():
                raise ConnectionError("broker down")
            self.sent.append(what)

        return send


def test_held_sends_go_out_in_order_once_the_broker_answers() -> None:
    broker = Broker()
    redelivery = Redelivery(policy=PATIENT)
    for what in ("a", "b", "c"):
        redelivery.add(broker.sender(what), what=what)
    broker.up.set()
    assert redelivery.flush(timeout=20)
    assert broker.sent == ["a", "b", "c"]
    assert redelivery.dropped == 0


def test_a_send_that_keeps_failing_is_dropped_after_its_attempts() -> None:
    broker = Broker()
    redelivery = Redelivery(policy=FAST)
    redelivery.add(broker.sender("a"), what="a")
    assert redelivery.flush(timeout=20)
    assert broker.attempts == 3
    assert redelivery.dropped == 1
    assert broker.sent == []


def test_a_full_queue_drops_the_oldest() -> None:
    broker = Broker()
    redelivery = Redelivery(max_pending=2, policy=PATIENT)
    for what in ("a", "b", "c"):
        redelivery.add(broker.sender(what), what=what)
    assert redelivery.dropped >= 1
    broker.up.set()
    assert redelivery.flush(timeout=20)
    assert broker.sent[-2:] == ["b", "c"]
    assert "a" not in broker.sent or broker.sent == ["a", "b", "c"]


def test_close_drops_what_is_held() -> None:
    broker = Broker()
    redelivery = Redelivery(policy=PATIENT)
    redelivery.add(broker.sender("a"), what="a")
    redelivery.close()
    assert len(redelivery) == 0
    assert redelivery.dropped == 1
