"""The one value policy: every value accepted anywhere round-trips everywhere, and keys agree."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import uuid
from collections import OrderedDict, namedtuple
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachewire.cache import InMemoryCacheAdapter, JsonCodec, cached, encode_key
from cachewire.errors import (
    PayloadError,
    SerializationError,
    TaskArgumentError,
    TaskError,
    ValueNotPortableError,
)
from cachewire.rules import Rule
from cachewire.wire import (
    MAX_DEPTH,
    TaskMessage,
    decode_rule_work,
    encode_rule_work,
    from_portable,
    key_fragment,
    to_portable,
)

LONDON = ZoneInfo("Europe/London")


class Color(enum.Enum):
    RED = 1
    ONE = "1"
    PAIR = (1, 2)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mood(enum.StrEnum):
    CALM = "calm"
    ONE = "1"


class Perm(enum.Flag):
    R = 1
    W = 2


text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)
zones = st.one_of(
    st.none(),
    st.just(dt.UTC),
    st.just(LONDON),
    st.sampled_from([ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), ZoneInfo("UTC")]),
    st.integers(-23 * 60, 23 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m))),
)
hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**4299), max_value=10**4299),
    st.floats(),
    text,
    st.text(alphabet=":|*?[]~%=@! \n\t\\\"'", max_size=6),
    st.sampled_from(["__cw__", "v", "tuple"]),
    st.binary(max_size=8),
    st.decimals(allow_nan=False),
    st.uuids(),
    st.dates(),
    st.times(timezones=zones),
    st.datetimes(timezones=zones, allow_imaginary=True),
    st.sampled_from([*Color, *Level, *Mood, Perm.R | Perm.W]),
)
values = st.recursive(
    hashable_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.one_of(text, st.just("__cw__")), inner, max_size=3)
        | st.frozensets(hashable_scalars, max_size=3)
        | st.sets(hashable_scalars, max_size=3)
    ),
    max_leaves=8,
)


def canonical(value: Any) -> Any:
    """What makes two values the same argument: same types all the way down, equal values,
    the same zone (not only the same instant), NaN equal to NaN."""
    kind = type(value)
    if isinstance(value, enum.Enum):
        return ("enum", kind.__module__, kind.__qualname__, canonical(value.value))
    if kind in (list, tuple):
        return (kind.__name__, tuple(canonical(v) for v in value))
    if kind in (set, frozenset):
        return (kind.__name__, frozenset(canonical(v) for v in value))
    if kind is dict:
        return ("dict", frozenset((k, canonical(v)) for k, v in value.items()))
    if kind is float:
        return ("float", repr(value))
    if kind is decimal.Decimal:
        return ("decimal", str(value))
    if kind in (dt.datetime, dt.time):
        zone = value.tzinfo
        zone_id = None if zone is None else (type(zone).__name__, str(zone))
        return (kind.__name__, value.replace(tzinfo=None).isoformat(), zone_id, value.fold)
    return (kind.__name__, value)


def same(a: Any, b: Any) -> bool:
    return canonical(a) == canonical(b)


def through_json(value: Any) -> Any:
    return from_portable(json.loads(json.dumps(to_portable(value))))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_portable_values_come_back_as_the_same_types_and_keys(value: Any) -> None:
    back = through_json(value)
    assert same(back, value)
    assert key_fragment(back) == key_fragment(value)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_every_portable_value_travels_in_rule_work_and_keeps_its_key(value: Any) -> None:
    work = decode_rule_work(encode_rule_work(["r"], {"r": [{"x": value}]}, {"c": value}))
    back = work.rule_kwargs["r"][0]["x"]
    assert same(back, value)
    assert same(work.context["c"], value)
    assert encode_key("f", {"x": back}) == encode_key("f", {"x": value})


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_every_portable_value_travels_in_a_task_message(value: Any) -> None:
    message = TaskMessage(name="t", args=(value,), kwargs={"k": value}, labels={"l": value})
    back = TaskMessage.from_json(message.to_json())
    assert same(back.args[0], value)
    assert same(back.kwargs["k"], value)
    assert same(back.labels["l"], value)
    assert back.duplicate_key == message.duplicate_key


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_every_portable_value_is_a_cacheable_value(value: Any) -> None:
    codec = JsonCodec()
    assert same(codec.decode(codec.encode(value)), value)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.data())
def test_keys_are_equal_exactly_when_the_values_are_the_same(value: Any, data: Any) -> None:
    other = data.draw(st.one_of(st.just(through_json(value)), values))
    assert (key_fragment(value) == key_fragment(other)) == same(value, other)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["a", "b", "a:b", "c=d"]), values, max_size=3))
def test_keys_hold_no_glob_whitespace_or_control_characters(arguments: dict[str, Any]) -> None:
    key = encode_key("mod.f", arguments)
    assert not set(key) & set("*?[] \n\t\r\x00")
    assert key.isprintable()


# ------------------------------------------------------------------- zones


def test_same_wall_time_in_utc_and_london_gives_two_keys() -> None:
    utc = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)
    london = utc.replace(tzinfo=LONDON)
    assert utc == london  # the same instant: Python calls them equal
    assert key_fragment(utc) != key_fragment(london)
    assert through_json(london).tzinfo is LONDON
    assert through_json(utc).tzinfo is dt.UTC


def test_a_cached_function_answers_each_zone_for_itself() -> None:
    @cached(cache=InMemoryCacheAdapter(), name="test_values.zone_name")
    def zone_name(when: dt.datetime) -> str:
        return str(when.tzinfo)

    utc = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)
    assert zone_name(utc) == "UTC"
    assert zone_name(utc.replace(tzinfo=LONDON)) == "Europe/London"


def test_the_fold_of_an_ambiguous_time_travels() -> None:
    first = dt.datetime(2026, 10, 25, 1, 30, tzinfo=LONDON)
    second = first.replace(fold=1)
    assert first.utcoffset() != second.utcoffset()
    assert key_fragment(first) != key_fragment(second)
    assert through_json(second).fold == 1
    assert through_json(second).utcoffset() == second.utcoffset()


def test_naive_datetimes_stay_naive() -> None:
    naive = dt.datetime(2026, 1, 10, 12, 0)
    assert through_json(naive).tzinfo is None
    assert key_fragment(naive) != key_fragment(naive.replace(tzinfo=dt.UTC))


def test_other_tzinfo_classes_and_named_offsets_are_refused() -> None:
    class Custom(dt.tzinfo):
        def utcoffset(self, _: Any) -> dt.timedelta:
            return dt.timedelta(0)

    with pytest.raises(ValueNotPortableError, match="ZoneInfo or datetime.timezone"):
        to_portable(dt.datetime(2026, 1, 1, tzinfo=Custom()))
    key_fragment(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))  # equal to the named one below
    with pytest.raises(ValueNotPortableError, match="named fixed-offset"):
        key_fragment(dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(0), "Z")))


# ------------------------------------------------------------------- enums


def test_enums_keep_their_type_and_differ_from_their_values() -> None:
    for member, plain in [(Level.HIGH, 2), (Mood.CALM, "calm"), (Color.RED, 1)]:
        back = through_json(member)
        assert back is member
        assert key_fragment(member) != key_fragment(plain)


def test_an_enum_defined_in_a_function_is_refused_everywhere() -> None:
    class Local(enum.Enum):
        A = 1

    for encode in (key_fragment, to_portable):
        with pytest.raises(ValueNotPortableError, match="module level"):
            encode(Local.A)


def test_an_enum_path_never_imports_a_module() -> None:
    data = {"__cw__": "enum", "t": "antigravity:Thing", "v": 1}
    with pytest.raises(ValueNotPortableError, match="not imported"):
        from_portable(data)
    for path in ["os:system", "cachewire.cache:RedisCacheAdapter", "enum:Enum.__class__"]:
        with pytest.raises(ValueNotPortableError, match="no Enum class"):
            from_portable({"__cw__": "enum", "t": path, "v": 1})


@pytest.mark.parametrize(("member", "other"), [(Level.HIGH, Level.LOW), (Mood.CALM, Mood.ONE)])
def test_an_enum_partition_value_invalidated_by_a_worker_hits(
    member: enum.Enum, other: enum.Enum
) -> None:
    from cachewire import run_work

    calls: list[Any] = []

    @cached(cache=InMemoryCacheAdapter(), partition=("level",), name=f"test_values.{member!r}")
    def report(level: Any, page: int = 1) -> int:
        calls.append((level, page))
        return len(calls)

    rule = Rule(model=f"test_values.{member!r}", field_mapping={"level": "level"}, function=report)
    assert report(member) == 1
    assert report(other) == 2
    assert report(member) == 1
    # What a broker worker does: decode the wire text, then invalidate.
    run_work(encode_rule_work([rule.id], {rule.id: [{"level": member}]}), dispatcher_name="inline")
    assert report(member) == 3
    assert report(other) == 2


# ---------------------------------------------------------- documented errors


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


HUGE = 10**5000
DEEP = _deep(10_000)
SURROGATE = "ok \ud800 no"
BIG_TEXT = "x" * 5_000_000

ENCODERS = {
    "key": lambda value: encode_key("f", {"x": value}),
    "portable": lambda value: to_portable(value, where="x"),
    "rule work": lambda value: encode_rule_work(["r"], {"r": [{"x": value}]}),
    "task": lambda value: TaskMessage(name="t", args=(value,)).to_json(),
    "codec": lambda value: JsonCodec().encode(value),
}


@pytest.mark.parametrize("site", sorted(ENCODERS))
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (SURROGATE, "lone surrogate"),
        (HUGE, "more than 4300 digits"),
        (DEEP, f"nested more than {MAX_DEPTH}"),
        ([BIG_TEXT, object()], "cannot travel"),
        ({"a": {1: "b"}}, "dict keys must be str"),
        ({"a": float}, "cannot travel"),
    ],
    ids=["surrogate", "5000-digits", "10000-deep", "5MB-next-to-object", "int-key", "type"],
)
def test_values_outside_the_policy_raise_the_documented_error_everywhere(
    site: str, value: Any, reason: str
) -> None:
    with pytest.raises(ValueNotPortableError, match=reason) as info:
        ENCODERS[site](value)
    assert len(str(info.value)) < 600
    if site == "task":
        assert isinstance(info.value, TaskError)
        assert isinstance(info.value, TaskArgumentError)
    assert isinstance(info.value, PayloadError)
    assert isinstance(info.value, SerializationError)


def test_an_error_names_where_the_value_came_from() -> None:
    with pytest.raises(ValueNotPortableError, match=r"rule 'r' argument 'x'\[1\]\['k'\] = <object"):
        encode_rule_work(["r"], {"r": [{"x": [1, {"k": object()}]}]})
    with pytest.raises(ValueNotPortableError, match=r"task 't' argument 'who'"):
        TaskMessage(name="t", kwargs={"who": object()}).to_json()
    with pytest.raises(ValueNotPortableError, match=r"f argument 'user'"):
        encode_key("f", {"user": object()})


def test_the_largest_allowed_values_are_accepted() -> None:
    biggest = 10**4300 - 1
    assert through_json(biggest) == biggest
    deepest = _deep(MAX_DEPTH)
    assert through_json(deepest) == deepest
    key_fragment(deepest)
    JsonCodec().decode(JsonCodec().encode(deepest))


@pytest.mark.parametrize(
    "data",
    [
        "\ud800",
        10**5000,
        _deep(MAX_DEPTH + 1),
        float("nan"),
        {"__cw__": "tuple"},
        {"__cw__": "tuple", "v": [], "extra": 1},
        {"__cw__": "set", "v": [[1]]},
        {"__cw__": "date", "v": "x" * 1000},
        {"__cw__": "datetime", "v": "2026-01-01T00:00:00+01:00"},
        {"__cw__": "datetime", "v": "2026-01-01T00:00:00", "tz": "+99:00"},
        {"__cw__": "datetime", "v": "2026-01-01T00:00:00", "tz": "Nowhere/Special"},
        {"__cw__": "datetime", "v": "2026-01-01T00:00:00", "fold": 2},
        {"__cw__": "time", "v": "25:00"},
        {"__cw__": "bytes", "v": "***"},
        {"__cw__": "decimal", "v": "one"},
        {"__cw__": "float", "v": "1.5"},
        {"__cw__": "dict", "v": [["a"]]},
        {"__cw__": "enum", "t": "tests.core.test_values:Level", "v": 99},
        {"__cw__": ["tuple"], "v": []},
        {1, 2},
    ],
    ids=lambda data: type(data).__name__,
)
def test_malformed_portable_data_raises_the_documented_error(data: Any) -> None:
    with pytest.raises(ValueNotPortableError):
        from_portable(data)


# --------------------------------------------------------------- subclasses


def test_subclasses_travel_as_their_base_type_and_keep_their_key() -> None:
    Point = namedtuple("Point", "x y")

    class Name(str):
        pass

    for value, base in [
        (Point(1, 2), (1, 2)),
        (OrderedDict(a=1), {"a": 1}),
        (Name("n"), "n"),
    ]:
        assert key_fragment(value) == key_fragment(base)
        back = through_json(value)
        assert type(back) is type(base)
        assert back == base


def test_nan_and_infinities_travel_tagged() -> None:
    for value in (math.nan, math.inf, -math.inf):
        back = through_json(value)
        assert repr(back) == repr(value)
    assert key_fragment(math.nan) == key_fragment(float("nan"))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.uuids(), st.decimals(allow_nan=False, allow_infinity=False))
def test_uuid_and_decimal_task_arguments_round_trip(value: uuid.UUID, amount: Any) -> None:
    message = TaskMessage(name="pay", args=(value, amount))
    back = TaskMessage.from_json(message.to_json())
    assert back.args == (value, amount)
    assert type(back.args[1]) is decimal.Decimal


def test_a_change_with_a_value_that_cannot_travel_raises_the_documented_error() -> None:
    from cachewire.rules import changed

    @cached(cache=InMemoryCacheAdapter(), partition=("n",), name="test_values.huge")
    def by_number(n: int) -> int:
        return n

    Rule(model="test_values.Huge", field_mapping={"n": "n"}, function=by_number)
    for value in (HUGE, SURROGATE):
        with pytest.raises(ValueNotPortableError) as info:
            changed("test_values.Huge", {"n": value})
        assert len(str(info.value)) < 600
