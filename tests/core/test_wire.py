"""The wire envelope and its decoders: versions, and hostile or damaged input."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cachewire.wire
from cachewire.cache import JsonCodec
from cachewire.errors import (
    PayloadError,
    SerializationError,
    TaskError,
    TaskMessageError,
    UnsupportedVersionError,
)
from cachewire.wire import (
    WIRE_VERSION,
    Envelope,
    RuleWork,
    TaskMessage,
    decode_envelope,
    decode_rule_work,
    encode_envelope,
    encode_rule_work,
)


def test_all_names_exist() -> None:
    for name in cachewire.wire.__all__:
        assert hasattr(cachewire.wire, name), name


def test_an_envelope_round_trips() -> None:
    text = encode_envelope("rules", {"rule_ids": []})
    assert json.loads(text) == {"kind": "rules", "v": list(WIRE_VERSION), "body": {"rule_ids": []}}
    assert decode_envelope(text) == Envelope(
        kind="rules", version=WIRE_VERSION, body={"rule_ids": []}
    )
    assert decode_envelope(text.encode()) == decode_envelope(text)


def test_rule_work_round_trips() -> None:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    text = encode_rule_work(["a", "b"], {"a": [{"x": 1}, {"x": (2, when)}]}, {"origin": "db"})
    work = decode_rule_work(text)
    assert work == RuleWork(
        rule_ids=["a", "b"],
        rule_kwargs={"a": [{"x": 1}, {"x": (2, when)}], "b": []},
        context={"origin": "db"},
    )
    assert decode_rule_work(decode_envelope(text)) == work


def _envelope(kind: str, body: dict[str, Any], version: Any = None, **extra: Any) -> str:
    return json.dumps(
        {"kind": kind, "v": list(WIRE_VERSION) if version is None else version, "body": body}
        | extra
    )


def _newer_minor() -> list[int]:
    return [WIRE_VERSION[0], WIRE_VERSION[1] + 1]


def test_a_newer_minor_version_with_extra_fields_is_accepted() -> None:
    body = {"rule_ids": ["r"], "rule_kwargs": {"r": [{"x": 1}]}, "priority": 3}
    work = decode_rule_work(_envelope("rules", body, _newer_minor(), trace="abc"))
    assert work.rule_kwargs == {"r": [{"x": 1}]}
    message = json.loads(TaskMessage(name="t", args=(1,)).to_json())
    message["v"] = _newer_minor()
    message["body"]["eta"] = "2030-01-01"
    assert TaskMessage.from_json(json.dumps(message)).args == (1,)


def test_extra_fields_of_the_same_version_are_refused() -> None:
    body = {"rule_ids": [], "rule_kwargs": {}, "priority": 3}
    with pytest.raises(PayloadError, match="priority"):
        decode_rule_work(_envelope("rules", body))
    with pytest.raises(PayloadError, match="trace"):
        decode_envelope(_envelope("rules", {}, trace=1))


@pytest.mark.parametrize("major", [WIRE_VERSION[0] + 1, 99])
def test_a_newer_major_version_is_refused_with_a_hint(major: int) -> None:
    text = _envelope("rules", {"rule_ids": [], "rule_kwargs": {}}, [major, 0])
    with pytest.raises(UnsupportedVersionError, match="upgrade the workers"):
        decode_rule_work(text)
    with pytest.raises(UnsupportedVersionError):
        TaskMessage.from_json(_envelope("task", {"name": "t"}, [major, 0]))


def test_an_older_major_version_is_refused() -> None:
    with pytest.raises(UnsupportedVersionError, match="older release"):
        decode_envelope(_envelope("task", {}, [0, 9]))


def test_the_unversioned_formats_of_cachewire_0_1_are_refused_cleanly() -> None:
    old_task = json.dumps({"name": "t", "args": [1], "kwargs": {}, "uuid": "u"})
    with pytest.raises(TaskMessageError, match="no wire version"):
        TaskMessage.from_json(old_task)
    old_rules = json.dumps({"v": 1, "rule_ids": [], "rule_kwargs": {}, "context": {}})
    with pytest.raises(PayloadError, match="version 1 "):
        decode_rule_work(old_rules)


def test_kinds_are_not_mixed_up() -> None:
    with pytest.raises(PayloadError, match="expected rule work"):
        decode_rule_work(TaskMessage(name="t").to_json())
    with pytest.raises(TaskMessageError, match="expected a task message"):
        TaskMessage.from_json(encode_rule_work([], {}))
    with pytest.raises(PayloadError, match="kind"):
        encode_envelope("email", {})
    with pytest.raises(PayloadError, match="kind"):
        decode_envelope(_envelope("email", {}))


# ------------------------------------------------------------ task message fields


def _task(**changes: Any) -> str:
    message = json.loads(TaskMessage(name="t", args=(1,)).to_json())
    message["body"].update(changes)
    for field, value in changes.items():
        if value is _DROP:
            del message["body"][field]
    return json.dumps(message)


_DROP = object()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ["x"]}, "name"),
        ({"name": ""}, "name"),
        ({"name": _DROP}, "name"),
        ({"on_duplicate": "sometimes"}, "on_duplicate"),
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": 10**400}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"attempt": "2"}, "attempt"),
        ({"attempt": 1.5}, "attempt"),
        ({"attempt": -1}, "attempt"),
        ({"bind": "yes"}, "bind"),
        ({"labels": ["a"]}, "labels"),
        ({"kwargs": []}, "kwargs"),
        ({"args": {"a": 1}}, "args"),
        ({"queue": 3}, "queue"),
        ({"registry": {}}, "registry"),
        ({"dispatcher": ["x"]}, "dispatcher"),
        ({"uuid": None}, "uuid"),
        ({"args": [{"__cw__": "uuid", "v": "nope"}]}, "argument 0"),
        ({"kwargs": {"k": {"__cw__": "nope", "v": 1}}}, "argument 'k'"),
    ],
)
def test_wrongly_typed_task_fields_are_refused_by_name(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(TaskMessageError, match=field) as info:
        TaskMessage.from_json(_task(**changes))
    assert isinstance(info.value, PayloadError)
    assert isinstance(info.value, TaskError)


def test_a_nan_timeout_is_refused() -> None:
    text = _task(timeout=None).replace('"timeout": null', '"timeout": NaN')
    assert "NaN" in text
    with pytest.raises(TaskMessageError):
        TaskMessage.from_json(text)


def test_a_message_with_bad_options_cannot_be_encoded_either() -> None:
    with pytest.raises(TaskMessageError, match="on_duplicate"):
        TaskMessage(name="t", on_duplicate="sometimes").to_json()
    with pytest.raises(TaskMessageError, match="timeout"):
        TaskMessage(name="t", timeout=float("nan")).to_json()


def test_task_message_round_trips_every_field() -> None:
    message = TaskMessage(
        name="n",
        args=(uuid.UUID(int=3), (1, "a")),
        kwargs={"when": dt.date(2026, 1, 1)},
        queue="",
        timeout=0,
        bind=True,
        on_duplicate="serial",
        labels={"cache_ttl": 5},
        attempt=3,
        registry="r",
        dispatcher="inline",
    )
    assert TaskMessage.from_json(message.to_json()) == message


# ------------------------------------------------------------ hostile input

DECODERS: dict[str, Callable[[Any], Any]] = {
    "decode_envelope": decode_envelope,
    "decode_rule_work": decode_rule_work,
    "TaskMessage.from_json": TaskMessage.from_json,
}
ERRORS: dict[str, type[Exception]] = {
    "decode_envelope": PayloadError,
    "decode_rule_work": PayloadError,
    "TaskMessage.from_json": PayloadError,
    "JsonCodec.decode": SerializationError,
}


def _decode_with(name: str, raw: Any) -> None:
    """Run one decoder; it may succeed or raise its documented error, nothing else."""
    decoder = JsonCodec().decode if name == "JsonCodec.decode" else DECODERS[name]
    try:
        decoder(raw)
    except ERRORS[name]:
        pass


ALL_DECODERS = sorted(ERRORS)

json_data = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["__cw__", "rules", "task", "v", "tuple", "enum", "datetime"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "kind",
                    "v",
                    "body",
                    "__cw__",
                    "name",
                    "args",
                    "kwargs",
                    "rule_ids",
                    "rule_kwargs",
                    "context",
                    "t",
                    "tz",
                    "fold",
                    "timeout",
                    "labels",
                    "x",
                ]
            )
            | st.text(max_size=5),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("decoder", ALL_DECODERS)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_input_raises_only_the_documented_error(decoder: str, raw: Any) -> None:
    if decoder == "JsonCodec.decode" and isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    _decode_with(decoder, raw)


@pytest.mark.parametrize("decoder", ALL_DECODERS)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=json_data, kind=st.sampled_from(["rules", "task"]), wrap=st.booleans())
def test_arbitrary_json_raises_only_the_documented_error(
    decoder: str, data: Any, kind: str, wrap: bool
) -> None:
    document = {"kind": kind, "v": list(WIRE_VERSION), "body": data} if wrap else data
    raw = json.dumps(document)
    _decode_with(decoder, raw if decoder != "JsonCodec.decode" else raw.encode())


def _valid_messages() -> list[str]:
    when = dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)
    return [
        encode_rule_work(["a", "b"], {"a": [{"x": 1, "y": (when, uuid.UUID(int=1))}]}, {"o": "db"}),
        TaskMessage(
            name="t", args=(1, {"k": [1.5, None]}), kwargs={"d": frozenset({1})}, timeout=3
        ).to_json(),
    ]


def _mutate(node: Any, rng: random.Random, replacement: Any) -> Any:
    """``node`` with one randomly chosen sub-node replaced, dropped or retyped."""
    if isinstance(node, dict) and node and rng.random() < 0.8:
        key = rng.choice(sorted(node))
        copy = dict(node)
        roll = rng.random()
        if roll < 0.2:
            del copy[key]
        elif roll < 0.5:
            copy[key] = replacement
        else:
            copy[key] = _mutate(node[key], rng, replacement)
        return copy
    if isinstance(node, list) and node and rng.random() < 0.8:
        index = rng.randrange(len(node))
        copy = list(node)
        copy[index] = _mutate(node[index], rng, replacement) if rng.random() < 0.6 else replacement
        return copy
    return replacement


@pytest.mark.parametrize("decoder", ALL_DECODERS)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(which=st.integers(0, 1), seed=st.integers(0, 2**32 - 1), replacement=json_data)
def test_mutated_envelopes_raise_only_the_documented_error(
    decoder: str, which: int, seed: int, replacement: Any
) -> None:
    valid = json.loads(_valid_messages()[which])
    mutated = json.dumps(_mutate(valid, random.Random(seed), replacement))
    _decode_with(decoder, mutated if decoder != "JsonCodec.decode" else mutated.encode())


@pytest.mark.parametrize("decoder", ALL_DECODERS)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    which=st.integers(0, 1),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 2)),
        min_size=1,
        max_size=6,
    ),
)
def test_byte_damaged_envelopes_raise_only_the_documented_error(
    decoder: str, which: int, edits: list[tuple[int, int, int]]
) -> None:
    """A short fuzz: flip, insert or delete bytes of valid messages."""
    raw = bytearray(_valid_messages()[which].encode())
    for position, byte, action in edits:
        at = position % (len(raw) + 1)
        if action == 0 and at < len(raw):
            raw[at] = byte
        elif action == 1:
            raw.insert(at, byte)
        elif at < len(raw):
            del raw[at]
    _decode_with(decoder, bytes(raw))


@pytest.mark.parametrize("decoder", ALL_DECODERS)
@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"kind":"rules","v":[1,0],"body":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b"1" * 5000,
        b'{"kind":"task","v":[1,0],"body":{"name":"t","args":['
        + b"9" * 5000
        + b'],"kwargs":{},"uuid":"u"}}',
        b'{"kind":"task","v":[1,0],"body":{"name":"t","args":["\\ud800"],"kwargs":{},"uuid":"u"}}',
        b"\xff\xfe\x00",
        b"",
        b"null",
        b'{"kind": "rules", "v": [true, false], "body": {}}',
        b'{"kind": "rules", "v": [1, 0, 0], "body": {}}',
        b'{"kind": "rules", "v": [1, 0], "body": {"rule_ids": "abc", "rule_kwargs": {}}}',
        b'{"kind": "rules", "v": [1, 0], "body": {"rule_ids": ["a"], "rule_kwargs": {"b": []}}}',
        b'{"kind": "rules", "v": [1, 0], "body": {"rule_ids": ["a"], "rule_kwargs": {"a": [1]}}}',
    ],
    ids=lambda raw: f"{len(raw)}-bytes",
)
def test_known_hostile_inputs_raise_only_the_documented_error(decoder: str, raw: bytes) -> None:
    if decoder in ("JsonCodec.decode", "decode_envelope"):
        _decode_with(decoder, raw)  # valid JSON, or a valid envelope: not all of these are bad
        return
    with pytest.raises(ERRORS[decoder]) as info:
        DECODERS[decoder](raw)
    assert len(str(info.value)) < 700


@pytest.mark.parametrize(
    "raw", [b"[" * 10_000 + b"]" * 10_000, b"1" * 5000, b"\xff\xfe\x00", b"", b"null", b"[]"]
)
def test_what_is_no_envelope_is_refused(raw: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_envelope(raw)


def test_the_wire_imports_nothing_of_cachewire_but_its_errors() -> None:
    import ast
    import pathlib

    folder = pathlib.Path(cachewire.wire.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                if name.startswith("cachewire"):
                    assert name == "cachewire.errors" or name.startswith("cachewire.wire"), (
                        f"{path.name} imports {name}"
                    )
