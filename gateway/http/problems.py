"""RFC 9457 problem documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from gateway.http.responses import json_response

PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise from a handler to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


def field_problem(status: int, title: str, detail: str, field: str, message: str) -> Problem:
    """A problem about one named input: `errors` names the field for clients that map them to a form."""
    return Problem(status, title, detail, errors=[{"field": field, "message": message}])


def problem_response(request: web.Request, problem: Problem) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": problem.title, "status": problem.status}
    if problem.detail:
        body["detail"] = problem.detail
    body["instance"] = request.path
    if problem.errors:
        body["errors"] = problem.errors
    body.update(problem.extra)
    return json_response(body, status=problem.status, headers=problem.headers, content_type=PROBLEM_TYPE)


def field_errors(errors: Sequence[tuple[str | None, str]]) -> list[dict[str, Any]]:
    return [{"field": field, "message": message} for field, message in errors]
