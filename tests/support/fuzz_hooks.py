"""Schemathesis hooks for tests/system/test_fuzz.py (named by `hooks` in tests/schemathesis.toml; they run in
the schemathesis process, never in pytest's).

* Links for the stateful phase, added to the document as loaded (the served document has none):
  upload -> the job's operations; create customer -> read, replace, change, delete it.
* Half of the generated uploads carry a valid CSV of customers instead of random bytes, so the
  options and the job operations after an upload are reached, not only the file checks.
* A `cursor` is opaque: only a `next_cursor` the API answered is a valid one, which no schema can
  generate. Cases meant to be valid (positive_data_acceptance) go without one; the others still send
  drawn cursors, which must be refused (400 naming `cursor`).
"""

from __future__ import annotations

import re
from typing import Any, cast

import hypothesis.strategies as st
import schemathesis

from gateway.openapi.operations import IF_MATCH as IF_MATCH_HEADER

VALID_CSV = (
    b"first_name,last_name,company_name,address,city,county,postal,phone,email,web\r\n"
    b"Ada,Lovelace,Analytical,1 High Street,London,Greater London,N1 1AA,0113-000001,ada@example.com,"
    b"http://example.com\r\n"
    b"Alan,Turing,Bletchley,2 Park Road,Wilmslow,Cheshire,SK9 1AA,0113-000002,alan@example.com,"
    b"http://example.org\r\n"
)

JOB = {"id": "$response.body#/job_id"}
CUSTOMER = {"id": "$response.body#/id"}
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, dict[str, str]]]] = {
    ("/upload", "post", "202"): {
        "job": ("getJob", JOB),
        "jobErrors": ("listJobErrors", JOB),
        "jobRejected": ("getRejectedRows", JOB),
    },
    ("/upload", "post", "201"): {
        "job": ("getJob", JOB),
        "start": ("startJob", JOB),
    },
    ("/customers", "post", "201"): {
        "read": ("getCustomer", CUSTOMER),
        "replace": ("replaceCustomer", CUSTOMER),
        "change": ("updateCustomer", CUSTOMER),
        "delete": ("deleteCustomer", CUSTOMER),
    },
    ("/customers/{id}", "patch", "200"): {"deleteAfterChange": ("deleteCustomer", CUSTOMER)},
    ("/customers/{id}", "put", "200"): {"readAfterReplace": ("getCustomer", CUSTOMER)},
}


@schemathesis.hook
def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
    for (path, method, status), links in LINKS.items():
        response = raw_schema["paths"][path][method]["responses"][status]
        response["links"] = {
            name: {"operationId": operation, "parameters": parameters}
            for name, (operation, parameters) in links.items()
        }


def _with_valid_file(drawn: tuple[Any, bool]) -> Any:
    body, valid = drawn
    if valid and isinstance(body, dict):
        return {**body, "file": VALID_CSV}
    return body


@schemathesis.hook
def before_generate_body(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    operation = context.operation
    if operation is None or (operation.method.upper(), operation.path) != ("POST", "/upload"):
        return strategy
    return st.tuples(strategy, st.booleans()).map(_with_valid_file)


# The If-Match header's pattern (gateway/openapi/operations.py IF_MATCH) needs `"`; schemathesis' coverage
# phase narrows header values to letters and digits, so the "valid" If-Match it sends (`0`) is not
# (schemathesis 4.32 limitation): such a value is taken out of a case meant to be valid.
IF_MATCH = re.compile(cast(dict[str, str], IF_MATCH_HEADER["schema"])["pattern"])


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    if isinstance(case.query, dict):
        case.query.pop("cursor", None)
    if isinstance(case.headers, dict):
        for name in [n for n in case.headers if n.lower() == "if-match"]:
            if not IF_MATCH.match(str(case.headers[name])):
                del case.headers[name]
    return case
