"""The option matrix: every task option at the settings, decorator and call level.

A call's option wins over the decorator's, which wins over the settings'; "not given" differs
from a falsy value given on purpose.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pytest

from cachewire._settings import configure, reset_settings
from cachewire.dispatch import Dispatcher, Option, register_dispatcher
from cachewire.errors import ConfigurationError
from cachewire.tasks import LocalGuard, TaskMessage, TaskRegistry, task

pytestmark = pytest.mark.timeout(20)


@register_dispatcher
class Recorder(Dispatcher):
    """Keeps submitted messages without running them; can enforce timeouts."""

    name = "test-options-recorder"
    can_enforce_timeout = True
    options = {"tag": Option(str, None, "a label for the messages it keeps")}
    messages: ClassVar[list[tuple[str, TaskMessage]]] = []

    def dispatch(self, **kwargs: Any) -> None:
        raise NotImplementedError

    def submit_task(self, message: TaskMessage) -> None:
        self.messages.append((self.config.get("tag", self.name), message))


@register_dispatcher
class OtherRecorder(Recorder):
    name = "test-options-other"


@pytest.fixture(autouse=True)
def _clean() -> Any:
    Recorder.messages.clear()
    yield
    reset_settings()


# option -> (settings value, decorator value, call value); neighbours differ, and the call
# value is falsy where the option has a falsy form, to prove a falsy call value still wins.
MATRIX: dict[str, tuple[Any, Any, Any]] = {
    "queue": ("from-settings", "from-decorator", ""),
    "bind": (True, True, False),
    "on_duplicate": ("discard", "serial", "parallel"),
    "timeout": (5.0, 3.0, 0),
    "labels": ({"level": "settings"}, {"level": "decorator"}, {}),
}
DEFAULTS: dict[str, Any] = {
    "queue": None,
    "bind": False,
    "on_duplicate": "parallel",
    "timeout": None,
    "labels": {},
}


def _submit(option: str, levels: set[str], registry: TaskRegistry) -> TaskMessage:
    s_value, d_value, c_value = MATRIX[option]
    if "settings" in levels:
        configure(task_defaults={option: s_value})
    decorator_options: dict[str, Any] = {option: d_value} if "decorator" in levels else {}
    if option != "dispatcher":
        decorator_options.setdefault("dispatcher", Recorder)

    @task(name="matrix", registry=registry, guard=LocalGuard(), **decorator_options)
    def f(*args: Any) -> None: ...

    call_options = {option: c_value} if "call" in levels else {}
    f.apply_async((), {}, **call_options)
    ((_, message),) = Recorder.messages
    return message


LEVELS = [
    pytest.param(set(), None, id="none"),
    pytest.param({"settings"}, 0, id="settings"),
    pytest.param({"decorator"}, 1, id="decorator"),
    pytest.param({"call"}, 2, id="call"),
    pytest.param({"settings", "decorator"}, 1, id="decorator-over-settings"),
    pytest.param({"settings", "call"}, 2, id="call-over-settings"),
    pytest.param({"decorator", "call"}, 2, id="call-over-decorator"),
    pytest.param({"settings", "decorator", "call"}, 2, id="call-over-all"),
]


@pytest.mark.parametrize("option", sorted(MATRIX))
@pytest.mark.parametrize(("levels", "winner"), LEVELS)
def test_option_precedence(option: str, levels: set[str], winner: int | None) -> None:
    registry = TaskRegistry(f"opts-{os.urandom(4).hex()}")
    message = _submit(option, levels, registry)
    expected = DEFAULTS[option] if winner is None else MATRIX[option][winner]
    assert getattr(message, option) == expected


def test_falsy_bind_at_the_call_beats_true_at_the_decorator() -> None:
    registry = TaskRegistry(f"opts-{os.urandom(4).hex()}")
    f = task(name="b", registry=registry, bind=True, dispatcher=Recorder)(lambda ctx: None)
    f.apply_async(bind=False)
    assert Recorder.messages[0][1].bind is False


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        pytest.param({"settings"}, "settings", id="settings"),
        pytest.param({"settings", "decorator"}, "decorator", id="decorator-over-settings"),
        pytest.param({"settings", "decorator", "call"}, "call", id="call-over-all"),
        pytest.param({"settings", "call"}, "call", id="call-over-settings"),
    ],
)
def test_dispatcher_precedence(levels: set[str], expected: str) -> None:
    registry = TaskRegistry(f"opts-{os.urandom(4).hex()}")
    if "settings" in levels:
        configure(default_dispatcher=OtherRecorder.name)
    decorator_options: dict[str, Any] = (
        {"dispatcher": Recorder(tag="decorator")} if "decorator" in levels else {}
    )
    f: Any = task(name="d", registry=registry, **decorator_options)  # options built at runtime
    f = f(lambda: None)
    call_options = {"dispatcher": Recorder(tag="call")} if "call" in levels else {}
    f.apply_async(**call_options)
    ((tag, _),) = Recorder.messages
    assert tag == (OtherRecorder.name if expected == "settings" else expected)


def test_dispatcher_given_by_name_travels_in_the_message() -> None:
    registry = TaskRegistry(f"opts-{os.urandom(4).hex()}")
    f = task(name="n", registry=registry)(lambda: None)
    f.apply_async(dispatcher=Recorder.name)
    assert Recorder.messages[0][1].dispatcher == Recorder.name


def test_queue_callable_is_evaluated_at_each_submit() -> None:
    registry = TaskRegistry(f"opts-{os.urandom(4).hex()}")
    names = iter(["q1", "q2", "q3"])
    f = task(name="q", registry=registry, dispatcher=Recorder, queue=lambda: next(names))(
        lambda: None
    )
    f.delay()
    f.delay()
    assert [m.queue for _, m in Recorder.messages] == ["q1", "q2"]


def test_unknown_option_names_itself_and_the_valid_ones() -> None:
    registry = TaskRegistry(f"opts-{os.urandom(4).hex()}")
    f = task(name="u", registry=registry, dispatcher=Recorder)(lambda: None)
    with pytest.raises(ConfigurationError) as info:
        f.apply_async(countdown=3)
    text = str(info.value)
    assert "countdown" in text
    for valid in ("queue", "bind", "on_duplicate", "timeout", "dispatcher", "labels"):
        assert valid in text


def test_unknown_settings_default_is_refused_when_configured() -> None:
    with pytest.raises(ConfigurationError, match="retries"):
        configure(task_defaults={"retries": 3})
