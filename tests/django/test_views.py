"""`cache_view` caches whole responses per variant; rules invalidate the pages of a row."""

from __future__ import annotations

import pytest
from django.test import AsyncClient, Client
from testapp.models import Post
from testapp.views import RENDERS

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fresh() -> None:
    from testapp import views

    RENDERS.clear()
    for view in (views.post_detail, views.apost_detail, views.special):
        view.cache.invalidate_all()  # type: ignore[attr-defined]


def test_a_page_is_rendered_once_and_a_save_drops_it(client: Client) -> None:
    post = Post.objects.create(title="first")
    other = Post.objects.create(title="other")
    first = client.get(f"/posts/{post.pk}/")
    again = client.get(f"/posts/{post.pk}/")
    client.get(f"/posts/{other.pk}/")
    assert first.json() == again.json() == {"id": post.pk, "title": "first", "page": None}
    assert first["Content-Type"] == again["Content-Type"] == "application/json"
    assert RENDERS == ["sync", "sync"]
    post.title = "changed"
    post.save()
    assert client.get(f"/posts/{post.pk}/").json()["title"] == "changed"
    client.get(f"/posts/{other.pk}/")  # another partition: still cached
    assert RENDERS == ["sync", "sync", "sync"]


def test_query_format_and_accept_are_part_of_the_key(client: Client) -> None:
    post = Post.objects.create(title="t")
    url = f"/posts/{post.pk}/"
    assert client.get(url, {"page": "2"}).json()["page"] == "2"
    assert client.get(url, {"page": "3"}).json()["page"] == "3"
    assert client.get(url, {"format": "text"}).content == b"t"
    assert client.get(url, headers={"accept": "text/plain"}).content == b"t"
    assert client.get(url).json()["page"] is None
    assert len(RENDERS) == 5
    # Query parameters in another order are the same page.
    client.get(url, {"page": "2", "format": "json"})
    client.get(f"{url}?format=json&page=2")
    assert len(RENDERS) == 6


@pytest.mark.parametrize("kind", ["missing", "cookie", "private", "vary"])
def test_responses_that_must_not_be_shared_are_not_stored(client: Client, kind: str) -> None:
    first = client.get(f"/special/{kind}/", headers={"authorization": "alice"})
    second = client.get(f"/special/{kind}/", headers={"authorization": "bob"})
    assert [kind, kind] == RENDERS
    if kind == "vary":
        assert first.json() == {"user": "alice"}
        assert second.json() == {"user": "bob"}
    if kind == "cookie":
        assert second.cookies["session"].value == "secret"


def test_other_methods_are_not_cached(client: Client) -> None:
    assert client.post("/special/plain/").content == b"POST"
    assert client.post("/special/plain/").content == b"POST"
    assert client.get("/special/plain/").content == b"GET"
    assert client.get("/special/plain/").content == b"GET"
    assert RENDERS == ["plain", "plain", "plain"]


async def test_async_views(async_client: AsyncClient) -> None:
    post = await Post.objects.acreate(title="a")
    assert (await async_client.get(f"/aposts/{post.pk}/")).json()["title"] == "a"
    assert (await async_client.get(f"/aposts/{post.pk}/")).json()["title"] == "a"
    assert RENDERS == ["async"]
    post.title = "b"
    await post.asave()
    assert (await async_client.get(f"/aposts/{post.pk}/")).json()["title"] == "b"
    assert RENDERS == ["async", "async"]
