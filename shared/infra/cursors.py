"""Opaque page cursors, one format for every paginated endpoint.

A cursor is URL-safe base64 of a small JSON object. Clients pass back what they were given; anything
else (not base64, not JSON, a missing or out-of-range field) is BadCursor, which the API answers
with a 400 naming `cursor`, never a 500 from a database given a number it cannot hold.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

# Room for a sorted page's cursor: the last row's value (a text field of up to 255 characters, JSON-escaped).
MAX_CURSOR_LENGTH = 4096
# Whole numbers a cursor may carry: row ids (BIGINT), SCAN cursors (unsigned 64-bit).
MAX_ID = 2**63 - 1
MAX_SCAN = 2**64 - 1


class BadCursor(ValueError):
    """The cursor is not one this API issued."""


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise BadCursor(cursor)
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise BadCursor(cursor) from None
    if not isinstance(payload, dict):
        raise BadCursor(cursor)
    return payload


def whole_number(payload: dict[str, Any], name: str, maximum: int = MAX_ID) -> int:
    """A field of a decoded cursor that must be a whole number in 0..maximum."""
    value = payload.get(name)
    if type(value) is not int or not 0 <= value <= maximum:
        raise BadCursor(name)
    return value


def text(payload: dict[str, Any], name: str, max_length: int = 64) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise BadCursor(name)
    return value


def timestamp(payload: dict[str, Any], name: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text(payload, name))
    except ValueError:
        raise BadCursor(name) from None
