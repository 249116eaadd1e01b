"""Everything the Redis adapter decides without I/O; both twins drive it.

Key layout, the record format and its strict parsing, TTL and lease arithmetic, what a read
result means, and the steps of a miss (look again and take the lease, wait, compute, publish) as
generators that *yield* the I/O they need (`Eval`, `Pause`, `Compute`, ...) and receive its
result. `RedisCacheAdapter` performs those steps with awaits, its blocking twin with blocking
calls, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors

from cachewire.cache._base import (
    MISSING,
    _Missing,
    invalidations_are_strict,
    validate_key,
    validate_ttl,
)
from cachewire.cache._breaker import BackendSkipped, CircuitBreaker
from cachewire.cache._codec import Codec, JsonCodec, codec_call
from cachewire.cache._flight import check_refresh_options, early_refresh_draw, jittered
from cachewire.cache._keys import escape
from cachewire.cache._redis._record import (
    BUMP,
    EXTEND,
    INVALIDATE,
    MAX_DIGITS,
    READ,
    RELEASE,
    WRITE,
    Read,
    parse_record,
    parse_reply,
)
from cachewire.cache._redis._steps import (
    Call,
    Compute,
    Eval,
    Heartbeat,
    Pause,
    Refresh,
    Steps,
)
from cachewire.cache._stats import CacheStats
from cachewire.errors import CacheBackendError, ConfigurationError

__all__ = ["BACKEND_ERRORS", "RedisCore"]

logger = logging.getLogger("cachewire.cache")

#: Every error of the Redis client, and a call the circuit breaker skipped.
BACKEND_ERRORS = (redis_errors.RedisError, BackendSkipped)
_CODEC_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# Hits repeat their keys and tags, and escaping one costs more than the rest of a hit's Python
# work: the escaped forms of recent ones are kept.
_escaped = functools.lru_cache(maxsize=4096)(escape)
#: What a plain set writes against: no read, no epoch, no tag versions.
_NOTHING_READ = Read("m", False, b"", b"", b"")
_REMEMBERED_TAG_SETS = 4096


class RedisCore:
    """The adapter's configuration and every decision that needs no I/O."""

    #: Values whose encoding is at least this long are staged: the record goes to Redis with a
    #: plain SET under a staging key, and the write script moves it into place (a script that
    #: is handed a large value costs the server several times the SET).
    STAGE_BYTES = 64 * 1024
    #: How long a staged record may wait for the write script (ms).
    STAGE_MS = 60_000

    def __init__(
        self,
        *,
        namespace: str,
        codec: Codec | None,
        default_ttl: float | None,
        lock_timeout: float,
        stale_ttl: float | None,
        early_refresh_beta: float | None,
        jitter: float,
        fail_open: bool,
        where: str,
        breaker_threshold: int,
        breaker_cool_down: float,
    ) -> None:
        if not lock_timeout > 0:
            raise ConfigurationError(f"lock_timeout must be > 0 seconds, got {lock_timeout!r}")
        check_refresh_options(early_refresh_beta=early_refresh_beta, jitter=jitter)
        self.codec: Codec = codec or JsonCodec()
        if not _CODEC_ID.fullmatch(self.codec.codec_id):
            raise ConfigurationError(
                f"codec_id {self.codec.codec_id!r} of {type(self.codec).__name__} must be 1 to 64 "
                "characters of A-Z, a-z, 0-9, '_', '.', '-'"
            )
        self._encode, self._decode = codec_call(self.codec)
        self.codec_id = self.codec.codec_id.encode()
        self.default_ttl = validate_ttl(default_ttl, name="default_ttl")
        self.stale_ttl = validate_ttl(stale_ttl, name="stale_ttl") or 0.0
        self.lock_timeout = float(validate_ttl(lock_timeout, name="lock_timeout") or 0)
        self.early_refresh_beta = early_refresh_beta
        self.jitter = jitter
        self.fail_open = fail_open
        self.where = where
        self.ns = escape(namespace)
        self.epoch_key = f"{self.ns}:epoch"
        self.wake_channel = f"{self.ns}:epoch:wake"
        self.lock_ms = max(1, round(self.lock_timeout * 1000))
        self.stale_ms = round(self.stale_ttl * 1000)
        self.clock_checks = self.stale_ms > 0 or early_refresh_beta is not None
        self.stats = CacheStats()
        self.breaker = CircuitBreaker(
            self.stats,
            name=f"Redis at {where}",
            threshold=breaker_threshold,
            cool_down=breaker_cool_down,
        )
        self.tag_prefix = f"{self.ns}:t:"
        self._tag_keys: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._last_ttl: tuple[Any, tuple[float | None, int]] = (object(), (None, -1))
        self._token_base = secrets.token_hex(6)
        self._tokens = itertools.count()

    # ------------------------------------------------------------ key layout

    def value_key(self, key: str) -> str:
        if type(key) is not str:
            validate_key(key)  # raises the error every adapter gives, unless a str subclass
        try:
            return f"{self.ns}:v:{_escaped(key)}"
        except UnicodeEncodeError:
            validate_key(key)  # a lone surrogate: the same error as on every adapter
            raise

    def lock_key(self, key: str) -> str:
        return f"{self.ns}:l:{escape(validate_key(key))}"

    def tag_key(self, tag: str) -> str:
        return f"{self.ns}:t:{_escaped(tag)}"

    def tag_keys(self, tags: Sequence[str]) -> Sequence[str]:
        """The Redis names of ``tags``; remembered per tuple (a cached function passes the same
        tuple on every call of a partition)."""
        try:
            return self._tag_keys[tags]  # type: ignore[index]
        except KeyError:
            pass
        except TypeError:  # a list
            return [self.tag_key(t) for t in tags]
        names = tuple(self.tag_key(t) for t in tags)
        if len(self._tag_keys) >= _REMEMBERED_TAG_SETS:
            self._tag_keys.clear()
        self._tag_keys[tags] = names  # type: ignore[index]
        return names

    def keys(self, key: str, tags: Sequence[str]) -> list[str]:
        """value, lease, epoch, then one key per tag: the layout every script takes."""
        escaped = _escaped(validate_key(key))
        keys = [f"{self.ns}:v:{escaped}", f"{self.ns}:l:{escaped}", self.epoch_key]
        keys.extend(self.tag_keys(tags))
        return keys

    # ------------------------------------------------------------ arithmetic

    def ttl_ms(self, ttl_seconds: float | _Missing | None) -> tuple[float | None, int]:
        """(ttl, ttl in ms with -1 = none); the same object as last time is not checked again."""
        if ttl_seconds is self._last_ttl[0]:
            return self._last_ttl[1]
        ttl = self.default_ttl if isinstance(ttl_seconds, _Missing) else validate_ttl(ttl_seconds)
        checked = (ttl, (-1 if ttl is None else max(1, round(ttl * 1000))))
        self._last_ttl = (ttl_seconds, checked)
        return checked

    def token(self) -> str:
        # The pid keeps tokens apart in forked children that inherit the counter.
        return f"{self._token_base}-{os.getpid()}-{next(self._tokens)}"

    def read_args(self, token: str, force: bool, *, prepare: bool = False) -> list[Any]:
        draw = (
            ""
            if self.early_refresh_beta is None
            else repr(early_refresh_draw(self.early_refresh_beta))
        )
        return [
            token,
            "1" if force else "0",
            self.codec.codec_id,
            self.lock_ms,
            draw,
            "1" if prepare else "",
        ]

    def write(
        self, keys: list[str], token: str, read: Read, data: bytes, ttl_ms: int, creator_ms: int
    ) -> Eval:
        """The write script's call for ``data`` under the lease ``token``, checked against what
        ``read`` found: the payload as an argument, or staged when it is large (`STAGE_BYTES`)."""
        if len(data) >= self.STAGE_BYTES:
            return self.staged_write(keys, token, read, data, ttl_ms, creator_ms)
        return self.inline_write(keys, token, read, data, ttl_ms, creator_ms)

    def inline_write(
        self, keys: list[str], token: str, read: Read, data: bytes, ttl_ms: int, creator_ms: int
    ) -> Eval:
        """The write with ``data`` passed to the script."""
        return Eval(
            WRITE,
            [*keys[:3], "", *keys[3:]],
            self._write_args(token, read, data, ttl_ms, creator_ms),
        )

    def staged_write(
        self, keys: list[str], token: str, read: Read, data: bytes, ttl_ms: int, creator_ms: int
    ) -> Eval:
        """The write of a large value: its whole record, staged under a key of its own with the
        soft expiry left as zeros for the script to write, carrying the tag versions that
        ``read`` found (the script refuses it if they moved)."""
        stage_key = f"{self.ns}:s:{token or self.token()}"
        record = b"%s\n%d\n%s\n%s\n%s" % (
            b"0" * MAX_DIGITS,
            creator_ms,
            self.codec_id,
            read.versions,
            data,
        )
        return Eval(
            WRITE,
            [*keys[:3], stage_key, *keys[3:]],
            self._write_args(token, read, b"", ttl_ms, creator_ms),
            stage=(stage_key, record, self.STAGE_MS),
        )

    def _write_args(
        self, token: str, read: Read, data: bytes, ttl_ms: int, creator_ms: int
    ) -> list[Any]:
        if ttl_ms > 0 and self.jitter:
            ttl_ms = max(1, round(jittered(ttl_ms, self.jitter)))
        return [
            token,
            read.epoch,
            read.versions,
            self.codec.codec_id,
            data,
            ttl_ms,
            self.stale_ms,
            creator_ms,
            self.wake_channel,
        ]

    # --------------------------------------------------------- what a read means

    def encode(self, key: str, value: Any) -> bytes:
        return self._encode(value, key)

    def decode(self, key: str, payload: bytes) -> Any:
        """The value of a payload, or MISSING (counted and logged) when it cannot be decoded."""
        try:
            return self._decode(payload, key)
        except Exception as exc:
            self.stats.decode_errors += 1
            logger.warning(
                "cachewire: a cached value in %s could not be decoded by %s (%s); it is computed "
                "again and overwritten",
                self.ns,
                type(self.codec).__name__,
                exc,
            )
            return MISSING

    def decode_record(self, key: str, raw: bytes) -> Any:
        record = parse_record(raw)
        return MISSING if record is None else self.decode(key, record.payload)

    def fresh(
        self, key: str, raw: bytes | None, versions: bytes, *, early: bool = True
    ) -> tuple[Any, bool]:
        """(value, unreadable): the value of a fresh, current record, else MISSING.

        Redis drops a record at its TTL unless it keeps it for serve-stale, so only then (or for
        early refresh) is the soft expiry compared, on this host's clock; whatever looks due is
        left to the read script, which decides on the server's clock. This is the hit path: it
        checks the record as strictly as `parse_record` without building one.
        """
        if raw is None:
            return MISSING, False
        parts = raw.split(b"\n", 4)
        if len(parts) != 5 or parts[2] != self.codec_id or parts[3] != versions:
            return MISSING, False  # the read script replaces it
        soft, took = parts[0], parts[1]
        if not (soft.isdigit() and took.isdigit() and len(soft) <= MAX_DIGITS >= len(took)):
            return MISSING, False  # damaged: the read script replaces it
        if self.clock_checks and (soft_ms := int(soft)):  # 0, or zeros: no expiry
            draw = (
                early_refresh_draw(self.early_refresh_beta)
                if self.early_refresh_beta and early
                else 0.0
            )
            if time.time() * 1000 + int(took) * draw >= soft_ms:
                return MISSING, False
        value = self.decode(key, parts[4])
        return value, value is MISSING

    def served(self, call: Call, read: Read) -> Any:
        """The stale or early-refresh value this caller may be answered with, else MISSING."""
        if not read.record or read.state == "m":
            return MISSING
        if read.state == "s" and call.stale_ttl is not None and call.stale_ttl <= 0:
            return MISSING
        value = self.decode_record(call.key, read.record)
        if value is MISSING:
            return MISSING
        if read.state == "s":
            self.stats.stale_hits += 1
        else:
            self.stats.hits += 1
            if read.won:
                self.stats.early_refreshes += 1
        return value

    def backend_failed(self, exc: BaseException, *, strict: bool = False) -> None:
        """Count (and log, rate-limited) a Redis failure; raise `CacheBackendError` unless the
        adapter fails open and the call is not ``strict``."""
        self.stats.backend_errors += 1
        self.breaker.failed(exc)
        if strict or not self.fail_open or invalidations_are_strict():
            raise CacheBackendError(f"Redis at {self.where} failed: {exc}") from exc

    # ------------------------------------------------------------------ steps

    def miss_steps(self, call: Call, *, force: bool, pause: bool = False) -> Steps:
        """After a read that found no fresh value: look again on the server, take the lease or
        wait for its holder (taking over when it is gone), and compute when it is ours.

        Returns (value, a `Refresh` to run after answering or None, source). ``source`` says
        which moment the value is current as of, for callers that joined meanwhile: "read" (the
        last read script), "computed" (the creator's start: writers change the data before they
        invalidate), or "published" (stored with the lease intact: the write script's sending).
        """
        attempt, waited = 0, False
        while True:
            if pause:
                yield Pause(call.keys[1], attempt)
                attempt += 1
            pause = True
            token = self.token()
            try:
                found = parse_reply((yield Eval(READ, call.keys, self.read_args(token, force))))
            except BACKEND_ERRORS as exc:
                self.backend_failed(exc)
                return (yield Compute(call.key, call.creator))[0], None, "computed"
            if isinstance(found, bytes):
                value = self.decode_record(call.key, found)
                if value is not MISSING:
                    self.stats.hits += 1
                    return value, None, "read"
                force, pause = True, False  # unreadable: look again, replacing it
                continue
            served = self.served(call, found)
            if served is not MISSING:
                return served, (Refresh(call, token, found) if found.won else None), "read"
            if found.won:
                value, published = yield from self.lead_steps(call, token, found)
                return value, None, ("published" if published else "computed")
            if not waited:
                self.stats.coalesced += 1  # another caller (or process) holds the lease
                self.stats.lock_waits += 1
                waited = True

    def lead_steps(self, call: Call, token: str, read: Read) -> Steps:
        """Compute while holding the lease, then publish if the lease and the key are intact.

        Returns (value, published). The lease never outlives a failure here: it is released (or
        fenced by the write script), and whoever waits for it is woken.
        """
        beat = yield Heartbeat([call.keys[1], *call.keys[3:]], token)
        try:
            value, creator_ms = yield Compute(call.key, call.creator)
            data = self.encode(call.key, value)
        except BaseException:
            yield Heartbeat([], token, stop=beat)
            yield from self.release_steps(call.keys[1], token)
            raise
        yield Heartbeat([], token, stop=beat)
        if call.ttl == 0:  # nothing is published: only as current as the lease's read
            yield from self.release_steps(call.keys[1], token)
            return value, False
        try:
            written = yield self.write(call.keys, token, read, data, call.ttl_ms, creator_ms)
        except BACKEND_ERRORS as exc:
            yield from self.release_steps(call.keys[1], token)
            self.backend_failed(exc)
            return value, False  # unknown whether an invalidation came in between
        if not written:
            self.stats.writes_rejected += 1
        return value, bool(written)

    def release_steps(self, lock_key: str, token: str) -> Steps:
        # A lease that cannot be released expires by itself; the caller's outcome stands.
        try:
            yield Eval(RELEASE, [lock_key], [token, self.wake_channel])
        except BACKEND_ERRORS:
            self.stats.backend_errors += 1

    def set_steps(
        self, key: str, value: Any, ttl_seconds: float | _Missing | None, tags: Sequence[str]
    ) -> Steps:
        ttl, ttl_ms = self.ttl_ms(ttl_seconds)
        keys = self.keys(key, tags)
        if ttl == 0:  # "do not store": nothing older stays readable either
            yield from self.invalidate_steps(key, strict=False)
            return
        data = self.encode(key, value)
        try:
            if len(data) < self.STAGE_BYTES or not (
                yield from self.staged_set_steps(keys, data, ttl_ms)
            ):
                yield self.inline_write(keys, "", _NOTHING_READ, data, ttl_ms, 0)
        except BACKEND_ERRORS as exc:
            self.backend_failed(exc)

    def staged_set_steps(self, keys: list[str], data: bytes, ttl_ms: int) -> Steps:
        """A plain set of a large value, staged: read the tags' versions (making a missing tag
        last the lease's time), stage the record with them and publish it; read again while a
        bump moved them in between (at most three times). Returns False when it did not get
        through (the caller writes it the usual way)."""
        read = _NOTHING_READ
        for _ in range(3):
            if len(keys) > 3:
                look = self.read_args("", True, prepare=True)  # a missing tag is made now
                found = parse_reply((yield Eval(READ, keys, look)))
                if not isinstance(found, Read):
                    return False
                read = found
            if (yield self.staged_write(keys, "", read, data, ttl_ms, 0)) == 1:
                return True
        return False

    def invalidate_steps(self, key: str, *, strict: bool) -> Steps:
        keys = self.keys(key, ())
        try:
            removed = yield Eval(INVALIDATE, keys[:2], [self.wake_channel])
        except BACKEND_ERRORS as exc:
            self.backend_failed(exc, strict=strict)
            return False
        return bool(removed)

    def bump_steps(self, tags: Sequence[str], *, strict: bool) -> Steps:
        if not tags:
            return
        try:
            yield Eval(BUMP, list(self.tag_keys(tags)), [self.wake_channel])
        except BACKEND_ERRORS as exc:
            self.backend_failed(exc, strict=strict)

    def heartbeat_steps(self, keys: list[str], token: str) -> Steps:
        """One beat: extend the lease; returns False once it is lost (counted)."""
        try:
            kept = yield Eval(EXTEND, keys, [token, self.lock_ms])
        except BACKEND_ERRORS:
            self.stats.backend_errors += 1
            return True
        if not kept:
            self.stats.lock_lost += 1
        return bool(kept)
