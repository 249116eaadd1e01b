from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachewire.errors import PayloadError
from cachewire.wire import decode_rule_work, encode_rule_work

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.uuids(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner), max_leaves=6
)
kwargs_sets = st.lists(
    st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=3), max_size=3
)


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


@pytest.mark.parametrize("text", ["not json", '{"kind": "rules", "v": [2, 0], "body": {}}', "[]"])
def test_bad_payloads_are_refused(text: str) -> None:
    with pytest.raises(PayloadError):
        decode_rule_work(text)
