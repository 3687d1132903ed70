"""The history's pure parts: what a change records, and how a job's changes merge per customer."""

from __future__ import annotations

import datetime as dt

from shared.customers import history_repo
from shared.customers.history_repo import Entry
from shared.imports.service import job_changes

AT = dt.datetime(2026, 1, 2, 3, 4, 5)


def entry(id_: int, customer: int, action: str, changes: dict) -> Entry:
    return Entry(id_, customer, AT, action, "ops", "import", "job", None, 1, changes)


def test_diff_records_only_what_changed_and_no_attributes_is_null() -> None:
    before = {"email": "a@x.org", "city": "Leeds", "phone": None, "attributes": {}}
    after = {"email": "a@x.org", "city": "York", "phone": None, "attributes": {}}
    assert history_repo.diff(before, after) == {"city": ["Leeds", "York"]}
    assert history_repo.diff(None, {"email": "a@x.org"}) == {"email": [None, "a@x.org"]}
    assert history_repo.diff({"email": "a@x.org", "city": "Leeds"}, None) == {
        "email": ["a@x.org", None],
        "city": ["Leeds", None],
    }
    assert history_repo.diff(before, dict(before)) == {}


def test_readable_changes_decode_an_imports_attributes_text() -> None:
    stored = {"attributes": [None, '{"tier":"gold"}'], "city": ["A", "B"]}
    assert history_repo.readable_changes(stored) == {"attributes": [None, {"tier": "gold"}], "city": ["A", "B"]}


def test_a_jobs_changes_merge_per_customer_first_old_last_new() -> None:
    entries = [
        entry(1, 7, "created", {"email": [None, "a@x.org"], "city": [None, "Leeds"]}),
        entry(5, 7, "updated", {"city": ["Leeds", "York"]}),
        entry(2, 9, "updated", {"city": ["Hull", "Bath"], "phone": ["1", "2"]}),
        entry(6, 9, "updated", {"phone": ["2", "1"]}),  # back as it was: not a change of the job
        entry(3, 11, "deleted", {"email": ["gone@x.org", None]}),
    ]
    items = job_changes(entries, {7: "a@x.org", 9: "b@x.org"})
    assert items == [
        {"customer_id": 7, "email": "a@x.org", "action": "inserted",
         "changes": {"email": [None, "a@x.org"], "city": [None, "York"]}},
        {"customer_id": 9, "email": "b@x.org", "action": "updated", "changes": {"city": ["Hull", "Bath"]}},
        {"customer_id": 11, "email": "gone@x.org", "action": "deleted", "changes": {"email": ["gone@x.org", None]}},
    ]  # fmt: skip
