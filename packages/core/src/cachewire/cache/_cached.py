"""`@cached`: cached functions whose partitions are invalidated in O(1)."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

from cachewire._settings import get_settings
from cachewire.cache._base import MISSING, BaseCacheAdapter, _Missing, validate_ttl
from cachewire.cache._keys import encode_key, encode_value, escape
from cachewire.errors import ConfigurationError

__all__ = ["CachedFunction", "cached", "get_cached_function"]

P = ParamSpec("P")
R = TypeVar("R")

_registry_lock = threading.Lock()
_registry: dict[str, CachedFunction[Any, Any]] = {}
_default_cache: BaseCacheAdapter | None = None


def _fallback_cache() -> BaseCacheAdapter:
    global _default_cache
    configured = get_settings().default_cache
    if configured is not None:
        return configured  # type: ignore[no-any-return]
    with _registry_lock:
        if _default_cache is None:
            from cachewire.cache._memory import InMemoryCacheAdapter

            _default_cache = InMemoryCacheAdapter()
        return _default_cache


def get_cached_function(cache_id: str) -> CachedFunction[Any, Any]:
    """The cached function registered under ``cache_id``; `ConfigurationError` if none."""
    try:
        return _registry[cache_id]
    except KeyError:
        raise ConfigurationError(
            f"no cached function has the id {cache_id!r}; import the module that defines it"
        ) from None


class CachedFunction(Generic[P, R]):
    """A function whose results are cached per argument set, in partitions that can be
    invalidated in O(1) (a version bump, never a key scan)."""

    def __init__(
        self,
        function: Callable[P, R],
        *,
        cache: BaseCacheAdapter | None,
        ttl: float | _Missing | None,
        partition: Sequence[str],
        name: str | None,
        stale_ttl: float | None,
        invalidates_on: Sequence[Any],
        self_key: Callable[[Any], Any] | None = None,
    ) -> None:
        self.__wrapped__ = function
        functools.update_wrapper(self, function)
        qualname = getattr(function, "__qualname__", "")
        if name is None and ("<locals>" in qualname or "<lambda>" in qualname):
            raise ConfigurationError(
                f"@cached on {qualname!r} needs name=: a local function or lambda has no stable "
                "identity across processes"
            )
        self.cache_id = name or f"{function.__module__}.{qualname}"
        self._signature = inspect.signature(function)
        #: The instance parameter of a method (``self``/``cls``), kept out of the key unless
        #: ``self_key`` says what of the instance to key on.
        self.receiver = _receiver(qualname, self._signature)
        if self_key is not None and self.receiver is None:
            raise ConfigurationError(
                f"@cached(self_key=...) on {self.cache_id}: it is not a method (no self parameter)"
            )
        self._self_key = self_key
        self.parameters = tuple(
            p for p in self._signature.parameters if p != self.receiver or self_key is not None
        )
        unknown = [p for p in partition if p not in self.parameters]
        if unknown:
            raise ConfigurationError(
                f"@cached partition {unknown} names no parameter of {self.cache_id}; "
                f"its parameters are {list(self.parameters)}"
            )
        self.partition = tuple(partition)
        self._cache = cache
        self._ttl = ttl if isinstance(ttl, _Missing) else validate_ttl(ttl, name="ttl")
        self._stale_ttl = stale_ttl
        self._is_async = inspect.iscoroutinefunction(function)
        self._function_tag = "f:" + escape(self.cache_id)
        self._partition_prefix = f"p:{escape(self.cache_id)}|"
        self._plans: dict[frozenset[str], str] = {}  # invalidation kind per set of names
        with _registry_lock:
            existing = _registry.get(self.cache_id)
            if existing is not None and existing.__wrapped__.__qualname__ != qualname:
                raise ConfigurationError(
                    f"two cached functions share the id {self.cache_id!r}; give one a name="
                )
            _registry[self.cache_id] = self
        self.rules = tuple(invalidates_on)
        for rule in self.rules:
            rule.attach(self)

    # ------------------------------------------------------------------ keys

    @property
    def cache(self) -> BaseCacheAdapter:
        """The adapter in use: the decorator's, else the settings' default, else in-memory."""
        return self._cache if self._cache is not None else _fallback_cache()

    def _bind(self, args: Any, kwargs: Any) -> dict[str, Any]:
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if self.receiver is not None:
            instance = arguments.pop(self.receiver)
            if self._self_key is not None:
                arguments[self.receiver] = self._self_key(instance)
        return arguments

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None or self.receiver is None:
            return self
        return BoundCachedMethod(self, instance)

    def _partition_tag(self, arguments: dict[str, Any]) -> str:
        values = "".join(
            encode_value(arguments[name], where=f"argument {name!r}") for name in self.partition
        )
        return self._partition_prefix + values

    def _tags(self, arguments: dict[str, Any]) -> tuple[str, ...]:
        if self.partition:
            return (self._function_tag, self._partition_tag(arguments))
        return (self._function_tag,)

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of one call."""
        return encode_key(self.cache_id, self._bind(args, kwargs))

    # ---------------------------------------------------------------- calls

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        arguments = self._bind(args, kwargs)
        key = encode_key(self.cache_id, arguments)
        tags = self._tags(arguments)
        if self._is_async:
            return self._acall(key, tags, args, kwargs)  # type: ignore[return-value]
        return self.cache.sync.get_or_create(
            key,
            lambda: self.__wrapped__(*args, **kwargs),
            self._ttl,
            tags=tags,
            stale_ttl=self._stale_ttl,
        )

    async def _acall(self, key: str, tags: tuple[str, ...], args: Any, kwargs: Any) -> Any:
        return await self.cache.get_or_create(
            key,
            lambda: self.__wrapped__(*args, **kwargs),
            self._ttl,
            tags=tags,
            stale_ttl=self._stale_ttl,
        )

    def uncached(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the original function."""
        return self.__wrapped__(*args, **kwargs)

    # ---------------------------------------------------------- invalidation

    def check_invalidation_params(self, names: Collection[str]) -> None:
        """Check that invalidating by these parameter names is precise; raise if not.

        Allowed: no names (the whole function), every parameter (one entry), or a set that covers
        the partition parameters (that partition).
        """
        names = set(names)
        unknown = sorted(names - set(self.parameters))
        if unknown:
            raise ConfigurationError(
                f"{self.cache_id} has no parameter {unknown}; its parameters are "
                f"{list(self.parameters)}"
            )
        if not names or names == set(self.parameters):
            return
        if not self.partition:
            raise ConfigurationError(
                f"{self.cache_id} has no partition, so invalidating by {sorted(names)} would be "
                f"imprecise; declare @cached(partition=...) or map every parameter "
                f"{list(self.parameters)}"
            )
        missing = [p for p in self.partition if p not in names]
        if missing:
            raise ConfigurationError(
                f"invalidating {self.cache_id} by {sorted(names)} leaves the partition parameter"
                f"(s) {missing} unmapped; map them too"
            )

    def _plan(self, kwargs: dict[str, Any]) -> tuple[str, str | None]:
        names = frozenset(kwargs)
        kind = self._plans.get(names)
        if kind is None:
            self.check_invalidation_params(names)
            if not names:
                kind = "function"
            elif names == set(self.parameters) and (
                not self.partition or len(self.partition) < len(self.parameters)
            ):
                kind = "key"
            else:
                kind = "partition"
            self._plans[names] = kind
        if kind == "function":
            return "tag", self._function_tag
        if kind == "key":
            arguments = {name: kwargs[name] for name in self.parameters}
            return "key", encode_key(self.cache_id, arguments)
        return "tag", self._partition_tag(kwargs)

    def invalidate(self, /, **kwargs: Any) -> None:
        """Invalidate the partition (or the one entry, or with no arguments the whole function)
        that these arguments name. O(1) on every adapter."""
        kind, target = self._plan(kwargs)
        if kind == "key":
            self.cache.sync.invalidate(target)  # type: ignore[arg-type]
        else:
            self.cache.sync.invalidate_tags([target])  # type: ignore[list-item]

    async def ainvalidate(self, /, **kwargs: Any) -> None:
        """Async twin of `invalidate`."""
        kind, target = self._plan(kwargs)
        if kind == "key":
            await self.cache.invalidate(target)  # type: ignore[arg-type]
        else:
            await self.cache.invalidate_tags([target])  # type: ignore[list-item]

    def invalidate_all(self) -> None:
        """Invalidate every entry of this function."""
        self.cache.sync.invalidate_tags([self._function_tag])

    async def ainvalidate_all(self) -> None:
        """Async twin of `invalidate_all`."""
        await self.cache.invalidate_tags([self._function_tag])


class BoundCachedMethod:
    """A cached method bound to an instance: calls pass the instance to the function, and the
    key leaves it out (or holds ``self_key(instance)``)."""

    __slots__ = ("__func__", "__self__")

    def __init__(self, function: CachedFunction[Any, Any], instance: Any) -> None:
        self.__func__ = function
        self.__self__ = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__(self.__self__, *args, **kwargs)

    def key_for(self, *args: Any, **kwargs: Any) -> str:
        """The cache key of one call on this instance."""
        return self.__func__.key_for(self.__self__, *args, **kwargs)

    def uncached(self, *args: Any, **kwargs: Any) -> Any:
        """Call the original method on this instance."""
        return self.__func__.uncached(self.__self__, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__func__, name)

    def __repr__(self) -> str:
        return f"<bound cached method {self.__func__.cache_id} of {self.__self__!r}>"


def _receiver(qualname: str, signature: inspect.Signature) -> str | None:
    """``self``/``cls`` when the function is defined in a class body, else None."""
    owner, _, _ = qualname.rpartition(".")
    if not owner or owner.endswith("<locals>"):
        return None
    first = next(iter(signature.parameters.values()), None)
    if first is None or first.name not in ("self", "cls"):
        return None
    if first.kind not in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD):
        return None
    return first.name


@overload
def cached(function: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cached(
    cache: BaseCacheAdapter | None = None,
    *,
    ttl: float | _Missing | None = MISSING,
    partition: Sequence[str] = (),
    name: str | None = None,
    stale_ttl: float | None = None,
    invalidates_on: Sequence[Any] = (),
    self_key: Callable[[Any], Any] | None = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


def cached(
    cache: Any = None,
    *,
    ttl: float | _Missing | None = MISSING,
    partition: Sequence[str] = (),
    name: str | None = None,
    stale_ttl: float | None = None,
    invalidates_on: Sequence[Any] = (),
    self_key: Callable[[Any], Any] | None = None,
) -> Any:
    """Cache a sync or async function's results per argument set (``@cached`` or
    ``@cached(...)``).

    ``partition`` names the parameters whose values form a partition; ``f.invalidate(**values)``
    makes that partition stale in O(1). ``invalidates_on`` attaches `Rule`s. On a method the
    instance is not part of the key, unless ``self_key(instance)`` gives a value to key on.
    """

    def decorate(function: Callable[P, R]) -> CachedFunction[P, R]:
        return CachedFunction(
            function,
            cache=cache,
            ttl=ttl,
            partition=partition,
            name=name,
            stale_ttl=stale_ttl,
            invalidates_on=invalidates_on,
            self_key=self_key,
        )

    if cache is not None and not isinstance(cache, BaseCacheAdapter):
        if callable(cache):
            function, cache = cache, None
            return decorate(function)  # bare @cached
        raise ConfigurationError(f"@cached(cache={cache!r}) needs a cache adapter")
    return decorate
