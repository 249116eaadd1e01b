from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import pickle
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachewire.cache import JsonCodec, PickleCodec
from cachewire.cache import _codec as codec_module
from cachewire.errors import ConfigurationError, SerializationError, ValueNotPortableError

ORJSON_DUMPS = codec_module._orjson_dumps


@pytest.fixture(autouse=True, scope="module", params=["orjson", "json"])
def json_encoder(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every JsonCodec test runs with the optional orjson encoder and with json alone."""
    if request.param == "orjson" and ORJSON_DUMPS is None:
        pytest.skip("the orjson extra is not installed")
    codec_module._orjson_dumps = ORJSON_DUMPS if request.param == "orjson" else None
    yield request.param
    codec_module._orjson_dumps = ORJSON_DUMPS


class Shade(enum.Enum):
    DARK = "dark"


class Level(enum.IntEnum):
    HIGH = 3


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_json_values_round_trip_equal(value: Any) -> None:
    codec = JsonCodec()
    assert codec.decode(codec.encode(value)) == value


@pytest.mark.parametrize(
    "value",
    [{1: 2}, {"a": [object()]}, "\ud800", 10**5000, _deep(101), object()],
    ids=["int-key", "object-in-list", "surrogate", "5000-digits", "101-deep", "object"],
)
def test_values_outside_the_policy_are_refused_before_storing(value: Any) -> None:
    with pytest.raises(ValueNotPortableError) as info:
        JsonCodec().encode(value)
    assert isinstance(info.value, SerializationError)
    assert len(str(info.value)) < 600


@pytest.mark.parametrize(
    "value",
    [
        (1, "a"),
        {"a": {3}},
        frozenset({(1, 2)}),
        b"x",
        float("nan"),
        float("-inf"),
        {"__cw__": "tuple", "v": [1]},
        [{"__cw__": 1}, "__cw__"],
        dt.datetime(2026, 1, 10, 12, tzinfo=ZoneInfo("Europe/London")),
        uuid.UUID(int=5),
        Decimal("1.50"),
        Shade.DARK,
        Level.HIGH,
    ],
)
def test_tagged_values_come_back_as_the_same_type(value: Any) -> None:
    codec = JsonCodec()
    back = codec.decode(codec.encode(value))
    assert type(back) is type(value)
    assert back == value or (value != value and back != back)
    if isinstance(value, dt.datetime):
        assert back.tzinfo is value.tzinfo


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"\xff\xfe",
        b"[1] 2",
        b'{"__cw__": "nope", "v": 1}',
        b'{"__cw__": "uuid", "v": "not a uuid"}',
        b'{"__cw__": "enum", "t": "os:system", "v": 1}',
        b'{"__cw__": "datetime", "v": "2026-01-01T00:00:00", "tz": "../../etc/passwd"}',
        b"[" * 10_000 + b"]" * 10_000,
    ],
)
def test_damaged_bytes_raise_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError):
        JsonCodec().decode(data)


def test_json_codec_takes_a_key_keyword() -> None:
    codec = JsonCodec()
    assert codec.decode(codec.encode([1], key="k"), key="k") == [1]


class Word(str):
    pass


class Count(int):
    pass


class Row(dict[Any, Any]):
    pass


class Items(list[Any]):
    pass


# Plain JSON and everything an encoder might take for it: tuples, subclasses, enums, non-str
# and tag keys, NaN and infinities, integers beyond 64 bits.
near_json = st.recursive(
    json_values.filter(lambda v: not isinstance(v, list | dict))
    | st.sampled_from(
        [Word("w"), Count(3), Level.HIGH, Shade.DARK, "__cw__", float("nan"), float("inf")]
    )
    | st.sampled_from([2**64, -(2**63) - 1, 10**30, 1e-5, -0.0]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.lists(inner, max_size=3).map(Items)
        | st.dictionaries(st.text(max_size=3) | st.just("__cw__"), inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3).map(Row)
        | st.dictionaries(st.integers() | st.none() | st.just(Word("k")), inner, max_size=2)
    ),
    max_leaves=12,
)


def _outcome(value: Any) -> tuple[str, Any]:
    try:
        data = JsonCodec().encode(value)
    except ValueNotPortableError:
        return "refused", None
    return "stored", data


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(near_json)
def test_both_encoders_take_and_refuse_the_same_values_and_read_each_other(value: Any) -> None:
    if ORJSON_DUMPS is None:
        pytest.skip("the orjson extra is not installed")
    try:
        codec_module._orjson_dumps = ORJSON_DUMPS
        fast = _outcome(value)
        codec_module._orjson_dumps = None
        plain = _outcome(value)
    finally:
        codec_module._orjson_dumps = ORJSON_DUMPS
    assert fast[0] == plain[0]
    if fast[0] == "stored":
        codec = JsonCodec()
        assert repr(codec.decode(fast[1])) == repr(codec.decode(plain[1]))


def test_a_dict_whose_keys_were_not_all_str_is_still_read_key_by_key() -> None:
    # Deleting the int key leaves the dict in CPython's layout for mixed keys.
    mixed: dict[Any, Any] = {"a": 1, 2: "b"}
    del mixed[2]
    codec = JsonCodec()
    assert codec.decode(codec.encode([mixed])) == [{"a": 1}]
    mixed[Word("w")] = 1
    mixed[3] = 1
    with pytest.raises(ValueNotPortableError):
        codec.encode({"x": [mixed]})


# ------------------------------------------------------------------ signed pickle

SECRET = "a secret of more than sixteen bytes"
unpickled: list[str] = []


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


def _record_unpickling(label: str) -> None:
    unpickled.append(label)


class Tripwire:
    """Unpickling it leaves a trace: proof that bytes were (or were not) unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        # A module-level function, pickled by name: `unpickled.append` would pickle a copy of
        # the list, and the trace would land in that copy.
        return (_record_unpickling, ("unpickled",))


@pytest.fixture(autouse=True)
def _no_trace() -> Iterator[None]:
    unpickled.clear()
    yield
    unpickled.clear()


def test_the_tripwire_leaves_a_trace_when_unpickled() -> None:
    pickle.loads(pickle.dumps(Tripwire()))
    assert unpickled == ["unpickled"]


@pytest.mark.parametrize(
    "value",
    [(1, "a"), {1: "int key"}, {2, 3}, dt.datetime(2026, 11, 25, 8, 0), Point(1, 2), None],
)
def test_pickle_codec_round_trips_what_json_cannot(value: Any) -> None:
    codec = PickleCodec(SECRET)
    assert codec.decode(codec.encode(value)) == value


def test_altered_bytes_are_refused_and_never_unpickled() -> None:
    codec = PickleCodec(SECRET)
    signed = codec.encode("harmless")
    forged = signed[:32] + pickle.dumps(Tripwire())
    with pytest.raises(SerializationError, match="signature"):
        codec.decode(forged)
    with pytest.raises(SerializationError, match="signature"):
        codec.decode(b"short")
    assert unpickled == []


def test_another_key_cannot_read_and_cannot_forge() -> None:
    forged = PickleCodec("another secret of sixteen+ bytes").encode(Tripwire())
    with pytest.raises(SerializationError, match="secret_key"):
        PickleCodec(SECRET).decode(forged)
    assert unpickled == []


@pytest.mark.parametrize("key", ["", "short", b"fifteen bytes!!"])
def test_a_short_secret_is_refused(key: Any) -> None:
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        PickleCodec(key)


@pytest.mark.parametrize("key", [32, None, ["a secret of more than sixteen bytes"]])
def test_a_secret_that_is_not_bytes_or_str_is_refused(key: Any) -> None:
    with pytest.raises(ConfigurationError, match="bytes or str"):
        PickleCodec(key)


def test_unpicklable_values_fail_loudly() -> None:
    with pytest.raises(SerializationError, match="cannot be pickled"):
        PickleCodec(SECRET).encode(lambda: 1)


def test_codec_ids_keep_json_and_pickle_apart() -> None:
    assert PickleCodec(SECRET).codec_id != JsonCodec.codec_id
    assert PickleCodec(SECRET, protocol=4).codec_id != PickleCodec(SECRET, protocol=5).codec_id


@pytest.mark.redis
async def test_redis_adapter_with_pickle_codec(redis_db_url: str) -> None:
    from cachewire.cache import RedisCacheAdapter

    namespace = f"pickle-{uuid.uuid4().hex}"
    writer = RedisCacheAdapter(redis_db_url, namespace=namespace, codec=PickleCodec(SECRET))
    stranger = RedisCacheAdapter(
        redis_db_url, namespace=namespace, codec=PickleCodec("another secret of sixteen+ bytes")
    )
    plain = RedisCacheAdapter(redis_db_url, namespace=namespace)
    try:
        value = (Point(1, 2), dt.date(2026, 11, 25))
        assert await writer.get_or_create("k", lambda: value) == value
        assert await writer.get_or_create("k", lambda: "recomputed") == value  # a hit, same types
        # A reader with another key refuses the bytes, counts it, recomputes and overwrites.
        assert await stranger.get("k", "absent") == "absent"
        assert await stranger.get_or_create("k", lambda: "theirs") == "theirs"
        assert stranger.get_stats()["decode_errors"] == 2
        # A JSON reader sees a value of another codec: a clean miss, nothing decoded.
        assert await plain.get("k", "absent") == "absent"
        assert plain.get_stats()["decode_errors"] == 0
        # What a wrong key wrote is never unpickled: the caller gets a fresh value, no error.
        await stranger.set("trap", Tripwire())
        assert await writer.get_or_create("trap", lambda: ("safe",)) == ("safe",)
        assert writer.sync.get_or_create("trap", lambda: ("unused",)) == ("safe",)
        assert writer.get_stats()["decode_errors"] == 1
        assert unpickled == []
    finally:
        for adapter in (writer, stranger, plain):
            await adapter.aclose()
