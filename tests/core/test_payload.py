from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachewire.errors import PayloadError
from cachewire.wire import decode_rule_work, encode_rule_work


class Level(enum.IntEnum):
    LOW = 1


class Mood(enum.StrEnum):
    CALM = "calm"


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.uuids(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.sampled_from([None, dt.UTC, ZoneInfo("Europe/London")])),
    st.dates(),
    st.times(),
    st.sampled_from([*Level, *Mood]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
kwargs_sets = st.lists(
    st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=3), max_size=3
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(min_size=1, max_size=12), kwargs_sets, max_size=3))
def test_payload_round_trips_values_and_their_types(rule_kwargs: dict[str, Any]) -> None:
    ids = list(rule_kwargs)
    text = encode_rule_work(ids, rule_kwargs, {"model": "shop.Order"})
    json.loads(text)  # plain JSON, nothing else
    work = decode_rule_work(text)
    decoded_ids, decoded_kwargs, context = work.rule_ids, work.rule_kwargs, work.context
    assert decoded_ids == ids
    assert decoded_kwargs == rule_kwargs
    assert context == {"model": "shop.Order"}

    def types(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return (type(value), value.tzinfo)
        if isinstance(value, list | tuple):
            return (type(value), [types(v) for v in value])
        if isinstance(value, dict):
            return {k: types(v) for k, v in value.items()}
        return type(value)

    assert types(decoded_kwargs) == types(rule_kwargs)


def test_special_values_are_tagged_not_stringified() -> None:
    value = {"u": uuid.UUID(int=1), "d": decimal.Decimal("1.50"), "t": (1, 2)}
    decoded = decode_rule_work(encode_rule_work(["r"], {"r": [value]})).rule_kwargs
    assert decoded["r"][0] == value
    assert isinstance(decoded["r"][0]["d"], decimal.Decimal)


def test_unencodable_values_name_the_rule_and_argument() -> None:
    with pytest.raises(PayloadError, match="rule 'r' argument 'when'"):
        encode_rule_work(["r"], {"r": [{"when": object()}]})


def test_enum_arguments_keep_their_type() -> None:
    work = decode_rule_work(encode_rule_work(["r"], {"r": [{"a": Level.LOW, "b": Mood.CALM}]}))
    assert type(work.rule_kwargs["r"][0]["a"]) is Level
    assert type(work.rule_kwargs["r"][0]["b"]) is Mood


@pytest.mark.parametrize("text", ["not json", '{"kind": "rules", "v": [2, 0], "body": {}}', "[]"])
def test_bad_payloads_are_refused(text: str) -> None:
    with pytest.raises(PayloadError):
        decode_rule_work(text)
