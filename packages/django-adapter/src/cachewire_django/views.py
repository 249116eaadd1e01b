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
from collections.abc import Callable, Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.cache import cc_delim_re

from cachewire import MISSING, BaseCacheAdapter, cached

__all__ = ["cache_view"]

logger = logging.getLogger("cachewire.django")

_CACHEABLE_METHODS = ("GET", "HEAD")
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
        for part in cc_delim_re.split(response.get("Cache-Control", ""))
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
        raise _NotStored(response, _call.get()[0])
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
    headers = tuple(vary_on_headers)

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        cache_id = name or f"{view.__module__}.{view.__qualname__}"
        parameters = [
            inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in (*partition, "variant")
        ]
        signature = inspect.Signature(parameters)
        is_async = inspect.iscoroutinefunction(view)

        if is_async:

            async def compute(**_: Any) -> dict[str, Any]:
                request, args, kwargs = _call.get()
                return _freeze(await view(request, *args, **kwargs), headers)

        else:

            def compute(**_: Any) -> dict[str, Any]:  # type: ignore[misc]
                request, args, kwargs = _call.get()
                return _freeze(view(request, *args, **kwargs), headers)

        compute.__signature__ = signature  # type: ignore[attr-defined]
        compute.__module__ = view.__module__
        compute.__qualname__ = view.__qualname__
        stored: Any = cached(
            cache, ttl=ttl, partition=partition, name=cache_id, invalidates_on=invalidates_on
        )(compute)

        def arguments(request: HttpRequest, kwargs: dict[str, Any]) -> dict[str, Any]:
            values = {p: kwargs[p] for p in partition}
            values["variant"] = _variant(request, headers)
            return values

        def not_stored(error: _NotStored, request: HttpRequest) -> HttpResponse | None:
            if error.request is request:
                return error.response
            return None  # another request's response: compute this one's own

        if is_async:

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if request.method not in _CACHEABLE_METHODS:
                    return await view(request, *args, **kwargs)
                token = _call.set((request, args, kwargs))
                try:
                    return _thaw(await stored(**arguments(request, kwargs)))
                except _NotStored as error:
                    mine = not_stored(error, request)
                    return mine if mine is not None else await view(request, *args, **kwargs)
                finally:
                    _call.reset(token)

            async_wrapper.cache = stored  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if request.method not in _CACHEABLE_METHODS:
                return view(request, *args, **kwargs)
            token = _call.set((request, args, kwargs))
            try:
                return _thaw(stored(**arguments(request, kwargs)))
            except _NotStored as error:
                mine = not_stored(error, request)
                return mine if mine is not None else view(request, *args, **kwargs)
            finally:
                _call.reset(token)

        wrapper.cache = stored  # type: ignore[attr-defined]
        return wrapper

    return decorate
