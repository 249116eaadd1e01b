"""`cache_view`: whole responses cached per request variant, in partitions rules can invalidate.

The key is the method, the path, the sorted query string and the request headers the view varies
on (``Accept`` by default, so each negotiated format has its own entry). Only GET and HEAD
requests are served from the cache; only 2xx responses that set no cookie, are not private or
``no-store``, and vary on no other header are stored. Partitions come from URL keyword arguments,
so a rule mapping a model field to that argument invalidates exactly the pages of the changed row.
"""

from __future__ import annotations

import base64
import contextvars
import functools
import inspect
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse

from cachewire import MISSING, BaseCacheAdapter, cached
from cachewire.errors import ConfigurationError

__all__ = ["CachedViewMixin", "cache_view"]

logger = logging.getLogger("cachewire.django")

_CACHEABLE_METHODS = ("GET", "HEAD")
_COMMA = re.compile(r"\s*,\s*")
_call: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar("cachewire_django_view")


class _NotStored(Exception):
    """The response must not be cached; it travels back to the caller that produced it."""

    def __init__(self, response: HttpResponse, request: HttpRequest) -> None:
        super().__init__("response not cacheable")
        self.response = response
        self.request = request


def _variant(request: HttpRequest, headers: Sequence[str]) -> str:
    query = sorted(request.GET.lists())
    parts = [request.method or "GET", request.path, repr(query)]
    parts.extend(f"{h}={request.headers.get(h, '')}" for h in headers)
    return "\n".join(parts)


def _why_not_stored(response: HttpResponse, headers: Sequence[str]) -> str | None:
    if not 200 <= response.status_code < 300:
        return f"status {response.status_code}"
    if response.cookies:
        return "it sets a cookie"
    if getattr(response, "streaming", False):
        return "it is streaming"
    control = {
        part.split("=", 1)[0].strip().lower()
        for part in _COMMA.split(response.get("Cache-Control", ""))
    }
    if control & {"private", "no-store", "no-cache"}:
        return "Cache-Control forbids it"
    declared = {h.lower() for h in headers}
    varies = {h.strip().lower() for h in response.get("Vary", "").split(",") if h.strip()}
    if "*" in varies or varies - declared:
        return f"it varies on {sorted(varies - declared)}, not in vary_on_headers"
    return None


def _freeze(response: HttpResponse, headers: Sequence[str]) -> dict[str, Any]:
    if hasattr(response, "render") and not getattr(response, "is_rendered", True):
        response.render()
    reason = _why_not_stored(response, headers)
    if reason is not None:
        raise _NotStored(response, _call.get()[1])
    return {
        "status": response.status_code,
        "headers": [[k, v] for k, v in response.items()],
        "content": base64.b64encode(response.content).decode("ascii"),
    }


def _thaw(frozen: dict[str, Any]) -> HttpResponse:
    response = HttpResponse(base64.b64decode(frozen["content"]), status=frozen["status"])
    for name, value in frozen["headers"]:
        response[name] = value
    return response


class _ViewCache:
    """One cached function for the responses of one view (or of every ``as_view()`` of a
    class), and the wrappers that serve from it."""

    def __init__(
        self,
        *,
        cache_id: str,
        is_async: bool,
        ttl: Any,
        partition: Sequence[str],
        headers: tuple[str, ...],
        cache: BaseCacheAdapter | None,
        invalidates_on: Sequence[Any],
    ) -> None:
        self.partition = tuple(partition)
        self.headers = headers
        self.is_async = is_async
        parameters = [
            inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY)
            for p in (*self.partition, "variant")
        ]

        if is_async:

            async def compute(**_: Any) -> dict[str, Any]:
                view, request, args, kwargs = _call.get()
                return _freeze(await view(request, *args, **kwargs), headers)

        else:

            def compute(**_: Any) -> dict[str, Any]:  # type: ignore[misc]
                view, request, args, kwargs = _call.get()
                return _freeze(view(request, *args, **kwargs), headers)

        compute.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        self.stored: Any = cached(
            cache, ttl=ttl, partition=partition, name=cache_id, invalidates_on=invalidates_on
        )(compute)

    def _arguments(self, request: HttpRequest, kwargs: dict[str, Any]) -> dict[str, Any]:
        values = {p: kwargs[p] for p in self.partition}
        values["variant"] = _variant(request, self.headers)
        return values

    def wrap(self, view: Callable[..., Any]) -> Callable[..., Any]:
        """``view`` served from the cache (GET and HEAD), with ``.cache`` the cached function."""
        if inspect.iscoroutinefunction(view) != self.is_async:
            raise ConfigurationError(
                f"{self.stored.cache_id}: one response cache serves sync or async views, not both"
            )
        stored, arguments = self.stored, self._arguments

        if self.is_async:

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if request.method not in _CACHEABLE_METHODS:
                    return await view(request, *args, **kwargs)
                token = _call.set((view, request, args, kwargs))
                try:
                    return _thaw(await stored(**arguments(request, kwargs)))
                except _NotStored as error:
                    if error.request is request:
                        return error.response
                    return await view(request, *args, **kwargs)  # another request's response
                finally:
                    _call.reset(token)

            async_wrapper.cache = stored  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if request.method not in _CACHEABLE_METHODS:
                return view(request, *args, **kwargs)
            token = _call.set((view, request, args, kwargs))
            try:
                return _thaw(stored(**arguments(request, kwargs)))
            except _NotStored as error:
                if error.request is request:
                    return error.response
                return view(request, *args, **kwargs)  # another request's response
            finally:
                _call.reset(token)

        wrapper.cache = stored  # type: ignore[attr-defined]
        return wrapper


def cache_view(
    *,
    ttl: float | Any | None = MISSING,
    partition: Sequence[str] = (),
    vary_on_headers: Sequence[str] = ("Accept",),
    cache: BaseCacheAdapter | None = None,
    name: str | None = None,
    invalidates_on: Sequence[Any] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache a Django view's responses (sync or async view).

    ``partition`` names URL keyword arguments; ``invalidates_on`` takes rules whose
    ``field_mapping`` maps those names to model fields, so a change of a row drops every cached
    page of that row (each query string and format). ``view.cache`` is the underlying cached
    function: ``view.cache.invalidate(post_id=3)`` or ``view.cache.invalidate_all()``.
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        return _ViewCache(
            cache_id=name or f"{view.__module__}.{view.__qualname__}",
            is_async=inspect.iscoroutinefunction(view),
            ttl=ttl,
            partition=partition,
            headers=tuple(vary_on_headers),
            cache=cache,
            invalidates_on=invalidates_on,
        ).wrap(view)

    return decorate


class CachedViewMixin:
    """Response caching for class-based views, Django's and Django REST framework's alike::

        class ProductDetail(CachedViewMixin, APIView):
            cache_partition = ["product_id"]
            cache_rules = [Rule(model=Product, field_mapping={"product_id": "id"})]

    The options are `cache_view`'s, as class attributes. The whole view is cached, after
    authentication, content negotiation and rendering (so ``?format=`` and ``Accept`` pick
    their own entries); every ``as_view()`` of the class shares one cached function,
    ``View.cache``.
    """

    cache_ttl: Any = MISSING
    cache_partition: Sequence[str] = ()
    cache_vary_on_headers: Sequence[str] = ("Accept",)
    cache_backend: BaseCacheAdapter | None = None
    cache_name: str | None = None
    cache_rules: Sequence[Any] = ()

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        view = super().as_view(**initkwargs)  # type: ignore[misc]
        responses = cls.__dict__.get("_cachewire_responses")
        if responses is None:
            responses = _ViewCache(
                cache_id=cls.cache_name or f"{cls.__module__}.{cls.__qualname__}",
                is_async=inspect.iscoroutinefunction(view),
                ttl=cls.cache_ttl,
                partition=cls.cache_partition,
                headers=tuple(cls.cache_vary_on_headers),
                cache=cls.cache_backend,
                invalidates_on=cls.cache_rules,
            )
            cls._cachewire_responses = responses  # type: ignore[attr-defined]
            cls.cache = responses.stored  # type: ignore[attr-defined]
        wrapped = responses.wrap(view)
        for attribute in ("view_class", "view_initkwargs", "cls", "initkwargs", "csrf_exempt"):
            if hasattr(view, attribute):
                setattr(wrapped, attribute, getattr(view, attribute))
        return wrapped
