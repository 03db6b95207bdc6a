"""Presigned download links against the test bed's real S3 server, fetched with httpx as a browser would:
the store answers them as an attachment of a harmless type whatever the object was stored as (an
uploaded HTML page never renders on the store's origin), and a link is signed in the bucket asked for."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import httpx
import pytest

from operators.storage.hook import ObjectStoreHook

pytestmark = pytest.mark.integration
PAGE = b"<!doctype html><script>alert(document.domain)</script>"


@pytest.fixture
def store() -> ObjectStoreHook:
    return ObjectStoreHook()


@pytest.fixture
def other_bucket(store: ObjectStoreHook) -> Iterator[str]:
    """A bucket of its own, not the connection's default one (removed afterwards, with what it holds)."""
    name = f"uf-tests-{uuid.uuid4().hex[:12]}"
    store.client.make_bucket(name)
    yield name
    for found in store.client.list_objects(name, recursive=True):
        store.client.remove_object(name, found.object_name)
    store.client.remove_bucket(name)


def key(name: str) -> str:
    return f"tests/{uuid.uuid4().hex[:12]}/{name}"


def test_a_download_is_an_attachment_of_a_harmless_type(store: ObjectStoreHook) -> None:
    k = key("page.html")
    store.put_stream(k, io.BytesIO(PAGE), content_type="text/html")  # as uploads were stored before
    try:
        response = httpx.get(store.presigned_get(k), timeout=10)
        assert response.status_code == 200 and response.content == PAGE
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"] == 'attachment; filename="page.html"'
    finally:
        store.delete(k)


def test_a_link_is_signed_in_the_bucket_asked_for(store: ObjectStoreHook, other_bucket: str) -> None:
    k = key("burn_probability.csv")
    store.client.put_object(other_bucket, k, io.BytesIO(b"p\n0.5\n"), 6)
    assert httpx.get(store.presigned_get(k), timeout=10).status_code == 404  # not in the default bucket
    response = httpx.get(store.presigned_get(k, bucket=other_bucket), timeout=10)
    assert response.status_code == 200 and response.content == b"p\n0.5\n"
    assert response.headers["content-disposition"] == 'attachment; filename="burn_probability.csv"'
