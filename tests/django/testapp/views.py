from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from cachewire import Rule
from cachewire_django import cache_view

from .models import Post

RENDERS: list[str] = []


def _post_rules(name: str) -> list[Rule]:
    return [Rule(model=Post, field_mapping={"post_id": "id"}, name=name)]


@cache_view(partition=["post_id"], invalidates_on=_post_rules("views.post_detail"))
def post_detail(request: HttpRequest, post_id: int) -> HttpResponse:
    RENDERS.append("sync")
    post = Post.objects.get(pk=post_id)
    if request.GET.get("format") == "text" or request.headers.get("Accept") == "text/plain":
        return HttpResponse(post.title, content_type="text/plain")
    return JsonResponse({"id": post.pk, "title": post.title, "page": request.GET.get("page")})


@cache_view(partition=["post_id"], invalidates_on=_post_rules("views.apost_detail"))
async def apost_detail(request: HttpRequest, post_id: int) -> HttpResponse:
    RENDERS.append("async")
    post = await Post.objects.aget(pk=post_id)
    return JsonResponse({"id": post.pk, "title": post.title})


@cache_view()
def special(request: HttpRequest, kind: str) -> HttpResponse:
    RENDERS.append(kind)
    if kind == "missing":
        return HttpResponse("no", status=404)
    if kind == "cookie":
        response = HttpResponse("c")
        response.set_cookie("session", "secret")
        return response
    if kind == "private":
        response = HttpResponse("p")
        response["Cache-Control"] = "private"
        return response
    if kind == "vary":
        response = JsonResponse({"user": request.headers.get("Authorization", "")})
        response["Vary"] = "Authorization"
        return response
    return HttpResponse(request.method or "")


def anything(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    return HttpResponse("")
