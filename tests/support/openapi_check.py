"""Check responses against the OpenAPI document the gateway serves (gateway.openapi.document.build_spec).

`check(method, path, status, headers, body)` finds the operation, and fails (OpenAPIMismatch, an
AssertionError) unless the status is declared for it, the response's content type is one it declares
for that status (or it declares no content and the body is empty), every header it declares as
required is there and matches its schema, and a JSON body validates against the declared schema
(JSON Schema 2020-12, formats checked).

A path no operation matches may only answer 404, and a method a path does not have 405, both as
problem documents. HEAD is checked as GET with no body. A body not read (None: a stream the test
reads itself) is not checked; everything else is.

The tests hook it into every aiohttp test client of the gateway app (CheckedTestClient, the
`aiohttp_client_cls` of tests/conftest.py) and into tests/support/procs.http(), so any response a
test sees is checked, and a mismatch fails the test that saw it, naming it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from yarl import URL

from gateway.http.keys import SETTINGS
from gateway.openapi.document import build_spec

DOCUMENT_URI = "urn:customer-import:openapi"
PROBLEM_SCHEMA = {"$ref": f"{DOCUMENT_URI}#/components/schemas/Problem"}


class OpenAPIMismatch(AssertionError):
    """A response the OpenAPI document does not describe."""


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


class Checker:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
        self.format_checker = FormatChecker()
        self._validators: dict[str, Draft202012Validator] = {}
        # Literal paths first, then by fewest templated segments: /customers/cache before /customers/{id}.
        self.paths: list[tuple[re.Pattern[str], str]] = sorted(
            ((self._pattern(path), path) for path in document["paths"]),
            key=lambda item: (item[1].count("{"), item[1]),
        )

    @staticmethod
    def _pattern(path: str) -> re.Pattern[str]:
        parts = re.split(r"(\{[^}/]+\})", path)
        regex = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
        return re.compile(f"^{regex}$")

    def resolve(self, obj: Any) -> Any:
        """Follow a local `$ref` (responses, headers, parameters) to the object it names."""
        while isinstance(obj, dict) and "$ref" in obj:
            target: Any = self.document
            for token in obj["$ref"].removeprefix("#/").split("/"):
                target = target[token.replace("~1", "/").replace("~0", "~")]
            obj = target
        return obj

    def match(self, path: str) -> str | None:
        for pattern, template in self.paths:
            if pattern.match(path):
                return template
        return None

    def validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        """A validator for a schema found in the document (its local refs point into the document)."""
        text = json.dumps(schema, sort_keys=True)
        found = self._validators.get(text)
        if found is None:
            rebased = json.loads(text.replace('"#/components/', f'"{DOCUMENT_URI}#/components/'))
            found = Draft202012Validator(rebased, registry=self.registry, format_checker=self.format_checker)
            self._validators[text] = found
        return found

    def validate(self, schema: dict[str, Any], value: Any) -> list[str]:
        """Messages for every way `value` breaks `schema` (a schema inside the document)."""
        validator = self.validator(schema)
        messages = []
        for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
            where = "".join(f"[{p!r}]" for p in error.absolute_path) or "(the body)"
            messages.append(f"{where}: {error.message}")
        return messages

    def check(self, method: str, path: str, status: int, headers: Mapping[str, str], body: bytes | None) -> None:
        """`body` None: not read (a stream); all but the body is checked."""
        method = method.upper()
        lower = {k.lower(): v for k, v in headers.items()}
        what = f"{method} {path} answered {status}"
        template = self.match(path)
        if template is None:
            if status != 404:
                raise OpenAPIMismatch(f"{what}, but no path of the OpenAPI document matches {path!r}")
            self._check_problem(what, lower, body)
            return
        item = self.document["paths"][template]
        operation = item.get("get" if method == "HEAD" else method.lower())
        if operation is None:
            if status != 405:
                raise OpenAPIMismatch(f"{what}, but the OpenAPI document has no {method} operation on {template}")
            self._check_problem(what, lower, body)
            return
        what = f"{method} {path} ({operation['operationId']}) answered {status}"
        responses = operation["responses"]
        declared = responses.get(str(status)) or responses.get(f"{status // 100}XX") or responses.get("default")
        if declared is None:
            raise OpenAPIMismatch(f"{what}, which the document does not declare (it declares {', '.join(responses)})")
        response = self.resolve(declared)
        self._check_headers(what, response.get("headers", {}), lower)
        content: dict[str, Any] = response.get("content", {})
        if not content:
            length = len(body) if body is not None else int(lower.get("content-length") or 0)
            if length:
                raise OpenAPIMismatch(f"{what} with a body of {length} bytes, but the document declares none")
            return
        media_type = _media_type(lower.get("content-type"))
        if media_type not in content:
            raise OpenAPIMismatch(
                f"{what} as {media_type or 'no content type'!r}; the document declares {', '.join(content)}"
            )
        if method == "HEAD" or body is None or not _is_json(media_type):
            return
        self._check_json(what, content[media_type].get("schema", {}), body)

    def _check_headers(self, what: str, declared: dict[str, Any], headers: dict[str, str]) -> None:
        for name, spec in declared.items():
            header = self.resolve(spec)
            value = headers.get(name.lower())
            if value is None:
                if header.get("required"):
                    raise OpenAPIMismatch(f"{what} without the {name} header the document requires")
                continue
            schema = header.get("schema")
            if schema is not None:
                problems = self.validate(schema, value)
                if problems:
                    raise OpenAPIMismatch(f"{what} with header {name}: {value!r}: {'; '.join(problems)}")

    def _check_json(self, what: str, schema: dict[str, Any], body: bytes | None) -> None:
        if body is None:
            return
        try:
            value = json.loads(body)
        except ValueError as exc:
            raise OpenAPIMismatch(f"{what} with a body that is not JSON ({exc}): {body[:200]!r}") from None
        problems = self.validate(schema, value)
        if problems:
            listed = "\n  ".join(problems[:10]) + ("\n  ..." if len(problems) > 10 else "")
            raise OpenAPIMismatch(
                f"{what} with a body the document does not describe:\n  {listed}\nbody: {body[:1000]!r}"
            )

    def _check_problem(self, what: str, headers: dict[str, str], body: bytes | None) -> None:
        media_type = _media_type(headers.get("content-type"))
        if media_type != "application/problem+json":
            raise OpenAPIMismatch(f"{what} as {media_type!r}, not application/problem+json")
        self._check_json(what, PROBLEM_SCHEMA, body)


@functools.cache
def checker() -> Checker:
    return Checker(build_spec())


def check(method: str, path: str, status: int, headers: Mapping[str, str], body: bytes | None) -> None:
    """Fail (OpenAPIMismatch) unless the OpenAPI document describes this response."""
    checker().check(method, path, status, headers, body)


class CheckedTestClient(TestClient):
    """An aiohttp TestClient that checks every response of the gateway app against the document."""

    async def _request(self, method: str, path: str | URL, **kwargs: Any) -> ClientResponse:
        response = await super()._request(method, path, **kwargs)
        if self.app is None or SETTINGS not in self.app:
            return response  # not the gateway (a test's stand-in server): nothing to check against
        # Only a JSON body is read here (it stays readable); others may be streams the test reads
        # as they come (text/event-stream, downloads): their status, type and headers are checked.
        body = await response.read() if _is_json(_media_type(response.headers.get("Content-Type"))) else None
        check(method, response.url.path, response.status, response.headers, body)
        return response
