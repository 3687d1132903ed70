"""What a column's values say about the field it holds.

Values confirm or question a header's suggestion (an `Ort` column with no values loses to
`Ort geschäftlich` with some; a `Phone` column of record ids or amounts is doubted), and where a column
has no header (or one that names nothing) a guess is made from its values alone, only where they fit a
field's shape: emails, web addresses (never amounts like `809.47`, IP addresses or emails), phone numbers
(recognised by libphonenumber; never bare record ids), postcodes of a lettered pattern (UK, Canada, the
Netherlands: bare digits could be anything). A value guess is never stronger than a header match
(shared.spreadsheet.headers.assign places header matches first).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import phonenumbers

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^(?:https?://|www\.)\S+$", re.I)
_DOMAIN = re.compile(r"^(?:[a-z0-9-]+\.)+[a-z]{2,}(?:/\S*)?$", re.I)
_IP = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$|^[0-9a-f:]+:[0-9a-f:]+$", re.I)
# Money as exports write it: two decimals, maybe thousands separators and a currency sign (`809.47`,
# `1,204.00`, `-59.90`, `€12,50`).
_AMOUNT = re.compile(r"^-?[$€£]?(?:\d{1,3}(?:[,.\s]\d{3})+|\d+)[.,]\d{2}$")
_DIGITS_ONLY = re.compile(r"^\d+$")
_PHONE_CHARS = re.compile(r"^\+?[\d\s().\-/]+(?:\s*(?:x|ext\.?|extension|#|durchwahl|poste)\s*\d{1,6})?$", re.I)
_LETTERED_POSTCODE = re.compile(
    r"^(?:[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}|[A-Z]\d[A-Z]\s?\d[A-Z]\d|\d{4}\s?[A-Z]{2})$", re.I
)
_DATE = re.compile(r"^\d{1,4}[-./]\d{1,2}[-./]\d{1,4}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?")


def is_phone(value: str, region: str | None = None) -> bool:
    """A value written as a phone number: `+44 20 7946 0018`, `(512) 757-6000`, `01835-703597`,
    `(202) 555-0111 ext. 42`; not a record id (`51234567801`), an amount or a date."""
    text = value.strip()
    if not _PHONE_CHARS.match(text) or _DATE.match(text) or _IP.match(text):
        return False
    digits = sum(c.isdigit() for c in text)
    if not 7 <= digits <= 20:
        return False
    if _DIGITS_ONLY.match(text) and not text.startswith("0"):
        return False  # bare digits: a record id as often as a phone
    if "." in text and _AMOUNT.match(text):
        return False
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else (region or "GB"))
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_possible_number(number) or not text.startswith("+")


def normalize_phone(value: str, region: str, max_length: int) -> str:
    """A phone in international format (`020 7946 0018` in GB → `+44 20 7946 0018`, an extension kept),
    a number without a country code read as `region`'s; as written when it does not parse as a possible
    number, or would not fit `max_length`."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return value
    if not phonenumbers.is_possible_number(number):
        return value
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return formatted if len(formatted) <= max_length else value


@dataclass(frozen=True)
class Profile:
    """The shares of a column's sample values with each shape (0..1), and how many there were."""

    count: int
    email: float = 0.0
    web: float = 0.0
    ip: float = 0.0
    amount: float = 0.0
    record_id: float = 0.0
    phone: float = 0.0
    lettered_postcode: float = 0.0
    numeric: float = 0.0
    words: float = 0.0


def profile(values: Sequence[str]) -> Profile:
    """The shapes of a column's (non-empty, normalised) sample values."""
    values = [v for v in values if v]
    n = len(values)
    if not n:
        return Profile(0)

    def share(test: Callable[[str], bool]) -> float:
        return round(sum(1 for v in values if test(v)) / n, 3)

    return Profile(
        n,
        email=share(lambda v: bool(EMAIL.match(v))),
        web=share(lambda v: bool(_URL.match(v) or (_DOMAIN.match(v) and not _IP.match(v))) and "@" not in v),
        ip=share(lambda v: bool(_IP.match(v))),
        amount=share(lambda v: bool(_AMOUNT.match(v))),
        record_id=share(lambda v: bool(_DIGITS_ONLY.match(v)) and len(v) >= 6 and not v.startswith("0")),
        phone=share(is_phone),
        lettered_postcode=share(lambda v: bool(_LETTERED_POSTCODE.match(v))),
        numeric=share(lambda v: bool(re.match(r"^[-+]?\d+(?:[.,]\d+)?$", v))),
        words=share(lambda v: any(c.isalpha() for c in v)),
    )


def weigh(target: str, score: float, shape: Profile) -> float:
    """A header's score as the column's values confirm or question it."""
    if shape.count == 0:
        return score * 0.6  # nothing to confirm it: a column with values of the same name wins
    if target == "email":
        return score if shape.email >= 0.5 else score * 0.4
    if target == "web":
        if shape.amount >= 0.5 or shape.ip >= 0.5 or shape.email >= 0.5:
            return score * 0.2
        return score
    if target == "phone":
        if shape.amount >= 0.5 or shape.record_id >= 0.5 or shape.email >= 0.5:
            return score * 0.4
        return score
    if target == "postal":
        if (shape.record_id >= 0.5 and shape.lettered_postcode == 0) or shape.email >= 0.5:
            return score * 0.4
        return score
    if target in ("first_name", "last_name", "full_name", "company_name", "city", "county", "country"):
        if shape.email >= 0.5 or shape.web >= 0.8 or (shape.numeric >= 0.8 and target != "county"):
            return score * 0.4
        if target == "county" and shape.numeric >= 0.5:
            return score * 0.6
        return score
    return score


# The strongest a value-only guess gets (times the share of values that fit); header matches are placed
# before any of them (headers.assign), whatever their scores.
VALUE_CONFIDENCE = {"email": 0.75, "web": 0.65, "phone": 0.65, "postal": 0.6}


def guess(shape: Profile) -> tuple[str, float] | None:
    """The field a column's values alone point to, if they fit its shape (see the module doc)."""
    if shape.count == 0:
        return None
    if shape.email >= 0.8:
        return "email", round(VALUE_CONFIDENCE["email"] * shape.email, 2)
    if shape.amount >= 0.5 or shape.ip >= 0.5:
        return None
    if shape.web >= 0.8:
        return "web", round(VALUE_CONFIDENCE["web"] * shape.web, 2)
    if shape.phone >= 0.8 and shape.record_id < 0.5:
        return "phone", round(VALUE_CONFIDENCE["phone"] * shape.phone, 2)
    if shape.lettered_postcode >= 0.8:
        return "postal", round(VALUE_CONFIDENCE["postal"] * shape.lettered_postcode, 2)
    return None
