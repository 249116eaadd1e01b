from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachewire.cache import encode_key
from cachewire.cache._keys import encode_value
from cachewire.errors import ValueNotPortableError


class Color(enum.Enum):
    RED = 1
    ONE = "1"


class Level(enum.IntEnum):
    ONE = 1


class Mood(enum.StrEnum):
    ONE = "1"


LONDON = ZoneInfo("Europe/London")
zones = st.sampled_from([None, dt.UTC, LONDON, ZoneInfo("UTC"), dt.timezone(dt.timedelta(hours=1))])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"])),
    st.text(alphabet=":|*?[]~%= \n\t\\"),
    st.binary(max_size=8),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    st.dates(),
    st.datetimes(timezones=zones),
    st.times(timezones=zones),
    st.sampled_from([*Color, *Level, *Mood]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        | st.frozensets(
            st.integers() | st.text(max_size=3) | st.sampled_from(list(Level)), max_size=3
        )
    ),
    max_leaves=8,
)
argument_sets = st.dictionaries(st.sampled_from(["a", "b", "a:b", "c=d"]), values, max_size=3)


def _canonical(value: Any) -> Any:
    """What makes two argument values the same for a cache: equal value, same types, and for
    aware datetimes the same zone (not only the same instant)."""
    if isinstance(value, enum.Enum):
        return ("enum", type(value).__qualname__, _canonical(value.value))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((_canonical(k), _canonical(v)) for k, v in value.items()))
    if isinstance(value, frozenset):
        return ("set", frozenset(_canonical(v) for v in value))
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, decimal.Decimal):
        return ("decimal", str(value))
    if isinstance(value, dt.datetime | dt.time):
        zone = value.tzinfo
        return (
            type(value).__name__,
            value.replace(tzinfo=None).isoformat(),
            type(zone),
            str(zone),
            value.fold,
        )
    return (type(value).__name__, value)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argument_sets, argument_sets)
def test_distinct_argument_sets_never_share_a_key(a: dict[str, Any], b: dict[str, Any]) -> None:
    same = {k: _canonical(v) for k, v in a.items()} == {k: _canonical(v) for k, v in b.items()}
    assert (encode_key("f", a) == encode_key("f", b)) == same


def test_the_order_of_a_mapping_does_not_change_its_key() -> None:
    assert encode_key("f", {"a": None, "b": 1}) == encode_key("f", {"b": 1, "a": None})


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argument_sets)
def test_keys_hold_no_glob_whitespace_or_control_characters(arguments: dict[str, Any]) -> None:
    key = encode_key("mod.f", arguments)
    assert not set(key) & set("*?[] \n\t\r\x00")
    assert key.isprintable()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"x": ("a:b", "c")}, {"x": ("a", "b:c")}),
        ({"x": 1}, {"x": "1"}),
        ({"x": 1}, {"x": 1.0}),
        ({"x": 1}, {"x": True}),
        ({"x": None}, {"x": "None"}),
        ({"x": (1,)}, {"x": [1]}),
        ({"x": Color.RED}, {"x": 1}),
        ({"x": Level.ONE}, {"x": 1}),
        ({"x": Mood.ONE}, {"x": "1"}),
        ({"x": Level.ONE}, {"x": Color.RED}),
        (
            {"x": dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)},
            {"x": dt.datetime(2026, 1, 10, 12, tzinfo=LONDON)},
        ),
        ({"x": dt.datetime(2026, 1, 10, 12)}, {"x": dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)}),
        ({"x": {1}}, {"x": frozenset({1})}),
    ],
)
def test_classic_collisions_are_avoided(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert encode_key("f", a) != encode_key("f", b)


def test_long_keys_are_digested_but_stay_distinct() -> None:
    a = encode_key("f", {"x": "a" * 500})
    b = encode_key("f", {"x": "a" * 499 + "b"})
    assert len(a) <= 200
    assert a != b


def test_unsupported_values_name_the_argument() -> None:
    with pytest.raises(ValueNotPortableError, match="argument 'x'"):
        encode_key("f", {"x": object()})


def test_custom_cache_key_method() -> None:
    class User:
        def __init__(self, pk: int) -> None:
            self.pk = pk

        def __cache_key__(self) -> int:
            return self.pk

    assert encode_value(User(3)) == encode_value(User(3))
    assert encode_value(User(3)) != encode_value(User(4))


def test_dates_times_and_uuids() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert encode_value(now) != encode_value(now.date())
    assert encode_value(uuid.UUID(int=1)) != encode_value(str(uuid.UUID(int=1)))
