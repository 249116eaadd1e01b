from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachewire.cache._codec import JsonCodec
from cachewire.errors import SerializationError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(json_values)
def test_json_values_round_trip_equal(value: Any) -> None:
    codec = JsonCodec()
    assert codec.decode(codec.encode(value)) == value


@pytest.mark.parametrize("value", [(1,), {1: 2}, {"a": {3}}, b"x", float("nan"), object()])
def test_values_that_would_change_are_refused_before_storing(value: Any) -> None:
    with pytest.raises(SerializationError):
        JsonCodec().encode(value)
