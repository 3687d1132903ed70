"""Customer CRUD over HTTP as a client uses it, against the real app, MariaDB and Redis: each test runs
with the cache on the shared Redis ([redis]) and on a real 3-master Redis Cluster ([cluster])."""

from __future__ import annotations

from typing import Any

import pytest
import redis as sync_redis
from aiohttp.test_utils import TestClient

from shared.config import Settings
from tests.conftest import on_cache_backend

pytestmark = pytest.mark.usefixtures("clean")


# Not about the cache: run on the shared Redis only.
REDIS_ONLY = {
    "test_bad_cursors_are_400_naming_the_parameter",
    "test_a_parameter_an_endpoint_does_not_take_is_400",
    "test_a_bad_post_is_422_naming_every_field",
    "test_numbers_are_accepted_where_the_import_accepts_them",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.function.__name__ not in REDIS_ONLY:
        metafunc.parametrize("cache_backend", ["redis", "cluster"], indirect=True)


@pytest.fixture
def settings(request: pytest.FixtureRequest, settings: Settings, cache_backend: str) -> Settings:
    return on_cache_backend(request, settings, cache_backend)


PROBLEM = "application/problem+json"


def ada(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company_name": "Analytical Engines",
        "address": "12 St James's Square",
        "city": "London",
        "county": "Greater London",
        "postal": "SW1Y 4JH",
        "phone": "020-7946-0000",
        "email": "ada@example.com",
        "web": "http://example.com",
    }
    body.update(changes)
    return body


async def create(client: TestClient, **changes: Any) -> dict[str, Any]:
    response = await client.post("/customers", json=ada(**changes))
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    return dict(await response.json())


async def test_post_answers_201_with_location_and_put_replaces(client: TestClient) -> None:
    created = await create(client)
    assert created["version"] == 1
    response = await client.get(f"/customers/{created['id']}")
    assert response.headers["ETag"] == '"v1"'
    replaced = ada(city="Leeds", county=None, company_name=None)
    response = await client.put(f"/customers/{created['id']}", json=replaced, headers={"If-Match": '"v1"'})
    assert response.status == 200
    doc = await response.json()
    assert (doc["city"], doc["county"], doc["company_name"], doc["version"]) == ("Leeds", None, None, 2)
    assert response.headers["ETag"] == '"v2"'
    assert (await (await client.get(f"/customers/{created['id']}")).json())["city"] == "Leeds"


async def test_get_edit_put_round_trip_accepts_the_read_only_fields(client: TestClient) -> None:
    created = await create(client)
    url = f"/customers/{created['id']}"
    doc = await (await client.get(url)).json()
    doc["city"] = "Bath"
    response = await client.put(url, json=doc)  # id, version, created_at, updated_at sent back
    assert response.status == 200, await response.text()
    assert (await response.json())["version"] == 2
    # The version sent back is checked like If-Match: the copy is now stale.
    doc["city"] = "York"
    body = await problem(await client.put(url, json=doc), 412)
    assert "version is 2" in body["detail"]
    # Another customer's id is refused.
    doc["version"] = 2
    doc["id"] = created["id"] + 1
    body = await problem(await client.put(url, json=doc), 422)
    assert body["errors"][0]["field"] == "id"


async def test_stale_if_match_is_412_and_malformed_is_400(client: TestClient) -> None:
    created = await create(client)
    url = f"/customers/{created['id']}"
    assert (await client.patch(url, json={"city": "Leeds"})).status == 200
    body = await problem(await client.patch(url, json={"city": "York"}, headers={"If-Match": '"v1"'}), 412)
    assert "changed" in body["detail"]
    for bad in ("abc", "v2", '"2"', '"vx"'):
        body = await problem(await client.patch(url, json={"city": "York"}, headers={"If-Match": bad}), 400)
        assert body["errors"][0]["field"] == "If-Match"
    assert (await (await client.get(url)).json())["city"] == "Leeds"
    # RFC 9110: If-Match compares strongly, so the weak form of the current tag is a 412 for every write.
    weak = {"If-Match": 'W/"v2"'}
    for response in (
        await client.patch(url, json={"city": "York"}, headers=weak),
        await client.put(url, json=ada(city="York"), headers=weak),
        await client.delete(url, headers=weak),
        await client.patch(url, json={"city": "York"}, headers={"If-Match": 'W/"v2", W/"v1"'}),
    ):
        await problem(response, 412)
        assert response.headers["ETag"] == '"v2"'
    assert (await client.patch(url, json={"city": "York"}, headers={"If-Match": 'W/"v2", "v2"'})).status == 200


async def test_if_none_match_gives_304(client: TestClient) -> None:
    created = await create(client)
    url = f"/customers/{created['id']}"
    response = await client.get(url, headers={"If-None-Match": '"v1"'})
    assert response.status == 304
    assert response.headers["ETag"] == '"v1"'
    assert (await client.get(url, headers={"If-None-Match": '"v9"'})).status == 200


async def test_a_taken_email_is_409(client: TestClient) -> None:
    await create(client)
    other = await create(client, email="grace@example.com")
    body = await problem(await client.post("/customers", json=ada(email="ADA@example.com")), 409)
    assert body["errors"][0]["field"] == "email"
    await problem(await client.patch(f"/customers/{other['id']}", json={"email": "ada@example.com"}), 409)


async def test_a_bad_post_is_422_naming_every_field(client: TestClient) -> None:
    body = await problem(
        await client.post("/customers", json={"email": "nope", "phone": "1" * 51, "web": "w" * 256}), 422
    )
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"email", "phone", "web"}
    body = await problem(await client.post("/customers", json=ada(age=3)), 422)
    assert body["errors"][0]["field"] == "age"


async def test_nothing_changes_nothing_bumps(client: TestClient) -> None:
    created = await create(client)
    url = f"/customers/{created['id']}"
    for body in ({}, {"city": "London"}, {"first_name": "Ada", "email": "ADA@example.com"}):
        response = await client.patch(url, json=body)
        assert response.status == 200
        doc = await response.json()
        assert doc["version"] == 1 and doc["updated_at"] == created["updated_at"], body
    assert (await (await client.put(url, json=ada())).json())["version"] == 1
    assert (await (await client.patch(url, json={"city": "Leeds"})).json())["version"] == 2


async def test_numbers_are_accepted_where_the_import_accepts_them(client: TestClient) -> None:
    created = await create(client, phone=12345, postal=90210.0)
    assert (created["phone"], created["postal"]) == ("12345", "90210")
    patched = await (await client.patch(f"/customers/{created['id']}", json={"phone": 7.5})).json()
    assert patched["phone"] == "7.5"
    await problem(await client.patch(f"/customers/{created['id']}", json={"phone": True}), 422)


async def test_every_response_is_utf8_json(client: TestClient) -> None:
    response = await client.post("/customers", json=ada(city="Zürich"))
    raw = await response.read()
    assert "Zürich".encode() in raw and b"\\u00fc" not in raw
    created = await response.json()
    for response in (
        await client.put(f"/customers/{created['id']}", json=ada(city="Zürich", county="Genève")),
        await client.get(f"/customers/{created['id']}"),
        await client.get("/customers?q=Ada"),
    ):
        raw = await response.read()
        assert "Zürich".encode() in raw and b"\\u00" not in raw


async def test_search_finds_names_emails_and_companies(client: TestClient) -> None:
    await create(client)
    await create(client, first_name="Grace", last_name="Hopper", email="grace@navy.example", company_name="Navy")
    await create(client, first_name="Alan", last_name="Turing", email="alan@example.org", company_name="Bletchley")

    async def found(q: str) -> set[str]:
        response = await client.get("/customers", params={"q": q})
        assert response.status == 200
        return {item["email"] for item in (await response.json())["items"]}

    assert await found("hopper") == {"grace@navy.example"}
    assert await found("example.org") == {"alan@example.org"}
    assert await found("Bletch") == {"alan@example.org"}
    assert await found("100%_") == set()  # LIKE wildcards are literal
    assert len(await found("a")) == 3


async def test_walking_every_page_sees_each_customer_once(client: TestClient) -> None:
    ids = [(await create(client, email=f"c{i}@example.com"))["id"] for i in range(23)]
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "5", **({"cursor": cursor} if cursor else {})}
        response = await client.get("/customers", params=params)
        assert response.status == 200
        page = await response.json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids) and pages == 5


async def test_the_cache_listing_honours_limit_with_opaque_cursors(client: TestClient) -> None:
    ids = [(await create(client, email=f"k{i}@example.com"))["id"] for i in range(12)]
    seen: list[int] = []
    cursor: str | None = None
    while True:
        response = await client.get("/customers/cache", params={"limit": "3", **({"cursor": cursor} if cursor else {})})
        assert response.status == 200
        page = await response.json()
        assert len(page["items"]) <= 3
        assert all(0 < item["ttl_s"] <= 300 for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert not cursor.isdigit()  # opaque, like every other cursor
    assert sorted(seen) == ids


@pytest.mark.parametrize("path", ["/customers", "/customers/cache", "/jobs"])
@pytest.mark.parametrize("cursor", ["99999999999999999999999", "-5", "abc", "eyJhZnRlciI6IC01fQ", "W10"])
async def test_bad_cursors_are_400_naming_the_parameter(client: TestClient, path: str, cursor: str) -> None:
    body = await problem(await client.get(path, params={"cursor": cursor}), 400)
    assert body["errors"] == [{"field": "cursor", "message": "Not a cursor this API issued."}]


async def test_out_of_range_numbers_in_a_cursor_are_400(client: TestClient) -> None:
    from shared.infra.cursors import encode_cursor

    for path, payload in (
        ("/customers", {"after": 2**64}),
        ("/customers", {"after": -1}),
        ("/customers/cache", {"scan": -5, "skip": 0}),
        ("/customers/cache", {"scan": 2**70, "skip": 0}),
        ("/jobs", {"created_at": "yesterday", "id": "x"}),
    ):
        await problem(await client.get(path, params={"cursor": encode_cursor(payload)}), 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/customers"),
        ("GET", "/customers/cache"),
        ("GET", "/customers/1"),
        ("DELETE", "/customers/1"),
        ("GET", "/jobs"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    ],
)
async def test_a_parameter_an_endpoint_does_not_take_is_400(client: TestClient, method: str, path: str) -> None:
    body = await problem(await client.request(method, path, params={"colour": "blue"}), 400)
    assert body["errors"][0]["field"] == "colour"
    assert "colour" in body["detail"]


async def test_a_cache_page_looks_at_a_bounded_number_of_keys(client: TestClient, settings: Settings) -> None:
    # Redis holding much else (here 30,000 keys of another prefix): a page stops early, shorter, with a
    # cursor, instead of walking every key in one request; walking the cursors still finds every customer.
    if settings.cache_redis_cluster:
        pytest.skip("the noise is written to the plain Redis")
    other = sync_redis.Redis.from_url(settings.redis_url)
    noise = f"{settings.redis_prefix}noise:"
    try:
        with other.pipeline(transaction=False) as pipe:
            for i in range(30_000):
                pipe.set(f"{noise}{i}", b"x", ex=120)
            pipe.execute()
        ids = [(await create(client, email=f"b{i}@example.com"))["id"] for i in range(3)]
        seen: list[int] = []
        cursor: str | None = None
        pages = 0
        while True:
            response = await client.get(
                "/customers/cache", params={"limit": "50", **({"cursor": cursor} if cursor else {})}
            )
            assert response.status == 200
            page = await response.json()
            seen += [item["id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == ids
        assert pages > 1  # 30,000 keys do not fit one page's steps
    finally:
        keys = list(other.scan_iter(match=f"{noise}*", count=5000))
        for start in range(0, len(keys), 5000):
            other.delete(*keys[start : start + 5000])
        other.close()
