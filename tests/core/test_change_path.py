"""The write path's shortcuts keep its promises: arguments encoded once are the same text and
identity as before, and what a rule keeps between changes follows the settings."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachewire import errors
from cachewire.dispatch import DispatchContext, Dispatcher, register_dispatcher
from cachewire.rules import Rule, changed, collect, work_identity
from cachewire.testing import override_settings
from cachewire.wire import (
    WireArguments,
    decode_rule_work,
    encode_arguments,
    encode_rule_work,
    to_portable_arguments,
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.dates(),
)
arguments = st.dictionaries(
    st.text(min_size=1, max_size=6),
    scalars | st.lists(scalars, max_size=2) | st.dictionaries(st.text(max_size=3), scalars),
    max_size=4,
)


@given(arguments)
def test_the_text_of_arguments_is_their_portable_json_with_sorted_names(
    kwargs: dict[str, Any],
) -> None:
    expected = json.dumps(
        to_portable_arguments(kwargs, where="x"), sort_keys=True, separators=(",", ":")
    )
    assert encode_arguments(kwargs, rule_id="r") == expected
    encoded = WireArguments.encode(kwargs, rule_id="r")
    assert encoded == kwargs and encoded.wire == expected
    assert WireArguments.encode(encoded, rule_id="r") is encoded  # never encoded twice
    # Encoded once or encoded again: the same message, which decodes to the same values.
    assert encode_rule_work(["r"], {"r": [encoded]}) == encode_rule_work(["r"], {"r": [kwargs]})
    decoded = decode_rule_work(encode_rule_work(["r"], {"r": [encoded]})).rule_kwargs["r"][0]
    assert json.dumps(to_portable_arguments(decoded, where="x"), sort_keys=True) == json.dumps(
        to_portable_arguments(kwargs, where="x"), sort_keys=True
    )


def test_equal_values_of_other_types_are_other_work_and_name_order_is_not() -> None:
    rule = Rule(model="m", field_mapping={"x": "x"}, name="identity-rule")  # not registered
    identities = {work_identity(rule, {"x": value}) for value in (1, 1.0, True, "1", None)}
    assert len(identities) == 5
    assert work_identity(rule, {"a": 1, "b": 2}) == work_identity(rule, {"b": 2, "a": 1})


def test_arguments_that_cannot_travel_are_refused_when_recorded(target: Any) -> None:
    Rule(model="m", field_mapping={"x": "x"}, name="refusing-rule", function=target)
    with pytest.raises(errors.ValueNotPortableError, match="'refusing-rule' argument 'x'"):
        changed("m", {"x": object()})
    with pytest.raises(errors.ValueNotPortableError, match="lone surrogate"):
        changed("m", {"x": "\udc80"})


class _Recording(Dispatcher):
    sent: ClassVar[list[tuple[str, list[str], DispatchContext]]]

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: Any, context: DispatchContext
    ) -> None:
        type(self).sent.append((self.name, list(rule_ids), context))


@register_dispatcher
class _First(_Recording):
    name = "test-path-first"
    sent: ClassVar[list[tuple[str, list[str], DispatchContext]]] = []


@register_dispatcher
class _Second(_Recording):
    name = "test-path-second"
    sent: ClassVar[list[tuple[str, list[str], DispatchContext]]] = []


@register_dispatcher
class _Failing(Dispatcher):
    name = "test-path-failing"

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: Any, context: DispatchContext
    ) -> None:
        raise ConnectionError("down")


@pytest.fixture(autouse=True)
def _empty_records() -> None:
    _First.sent.clear()
    _Second.sent.clear()


@pytest.fixture
def target(recording_target: Any) -> Any:
    return recording_target("path.f", ("x", "at"), ("x",))


def test_a_rule_follows_the_default_dispatcher_when_the_settings_change(target: Any) -> None:
    Rule(model="m", field_mapping={"x": "x"}, name="following-rule", function=target)
    with override_settings(default_dispatcher="test-path-first"):
        changed("m", {"x": 1})
        with override_settings(default_dispatcher="test-path-second"):
            changed("m", {"x": 2})
        changed("m", {"x": 3})
    assert [len(_First.sent), len(_Second.sent)] == [2, 1]


def test_the_error_policy_follows_the_settings_and_the_rule(target: Any) -> None:
    rule = Rule(
        model="m",
        field_mapping={"x": "x"},
        name="policy-rule",
        dispatcher="test-path-failing",
        function=target,
    )
    changed("m", {"x": 1})  # logged and counted
    with override_settings(dispatcher_raise_exception=True):
        with pytest.raises(errors.DispatchError, match="down"):
            changed("m", {"x": 1})
        rule.raise_exception = False  # the rule's own level wins over the global one
        changed("m", {"x": 1})
    rule.raise_exception = True
    with pytest.raises(errors.DispatchError, match="down"):
        changed("m", {"x": 1})
    with override_settings(dispatcher_settings={"test-path-failing": {"RAISE_EXCEPTION": True}}):
        rule.raise_exception = None
        with pytest.raises(errors.DispatchError, match="down"):
            changed("m", {"x": 1})


def test_the_context_carries_the_resolved_policy_and_the_batch(target: Any) -> None:
    Rule(
        function=target,
        model="m",
        field_mapping={"x": "x"},
        name="context-rule",
        dispatcher="test-path-first",
        raise_exception=True,
    )
    changed("m", {"x": 1})
    with collect(origin="test", using="db"):
        changed("m", {"x": 2})
        changed("m", {"x": 2})  # the same work once
    (_, _, bare), (_, ids, batched) = _First.sent
    assert bare == DispatchContext(raise_exception=True)
    assert batched == DispatchContext(origin="test", using="db", raise_exception=True)
    assert ids == ["context-rule"]


def test_a_rule_declared_after_a_change_is_found_by_the_next(target: Any) -> None:
    first = "test-path-first"
    Rule(model="m", field_mapping={"x": "x"}, name="early", dispatcher=first, function=target)
    assert changed("m", {"x": 1}) == 1
    Rule(
        model="m",
        field_mapping={"x": "x", "at": "at"},
        name="late",
        dispatcher=first,
        function=target,
    )
    assert changed("m", {"x": 1, "at": dt.date(2020, 1, 1)}) == 2
    (_, ids, _) = _First.sent[1]  # one dispatch: both rules go through one dispatcher
    assert sorted(ids) == ["early", "late"]
