"""The import modes' pure parts (worker/pipeline/modes.py): how a batch's rows are decided against what the
table holds, the blank-cell merge, and the repeated emails' rows. (Against MariaDB: tests/api/imports/test_modes.py.)"""

from __future__ import annotations

from shared.customers import customer_repo
from shared.customers.fields import STORED_FIELDS
from worker.pipeline.modes import (
    Customer,
    DuplicateFinder,
    Modes,
    State,
    all_unchanged,
    merge_blanks,
    plan_batch,
    plan_new,
)
from worker.pipeline.stage import stage_rows

EMAIL, CITY, ATTRS = STORED_FIELDS.index("email"), STORED_FIELDS.index("city"), STORED_FIELDS.index("attributes")


def row(email: str, city: str | None = "Leeds", attributes: str | None = None) -> tuple[str | None, ...]:
    values: list[str | None] = [None] * len(STORED_FIELDS)
    values[STORED_FIELDS.index("first_name")] = "Ada"
    values[EMAIL], values[CITY], values[ATTRS] = email, city, attributes
    return tuple(values)


def stored(customer_id: int, values: tuple[str | None, ...], version: int = 1) -> Customer:
    return Customer(customer_id, str(values[EMAIL]), version, customer_repo.row_hash_hex(values), list(values))


def state(*customers: Customer) -> State:
    found = State()
    for customer in customers:
        found.add(customer)
    return found


def test_each_mode_decides_known_and_new_emails() -> None:
    table = state(stored(1, row("a@x.com")))
    rows = [row("a@x.com", "Paris"), row("b@x.com")]
    upsert = plan_batch(stage_rows(rows), table, Modes())
    assert (upsert.upsert, upsert.inserting, upsert.skipped) == ([0, 1], 1, 0)
    insert = plan_batch(stage_rows(rows), state(stored(1, row("a@x.com"))), Modes(mode="insert"))
    assert (insert.upsert, insert.skipped) == ([1], 1)
    update = plan_batch(stage_rows(rows), state(stored(1, row("a@x.com"))), Modes(mode="update"))
    assert (update.upsert, update.inserting, update.skipped) == ([0], 0, 1)


def test_keep_fills_empty_cells_from_the_stored_row_and_rehashes_the_line() -> None:
    table = state(stored(1, row("a@x.com", "Leeds")))
    staged = stage_rows([row("a@x.com", None)])
    plan = plan_batch(staged, table, Modes())
    assert plan.unchanged == 1 and plan.upsert == []  # the empty city is no change
    staged = stage_rows([row("a@x.com", None)])
    plan = plan_batch(staged, state(stored(1, row("a@x.com", "Leeds"))), Modes(blank_cells="clear"))
    assert plan.upsert == [0]
    assert customer_repo.values_of_line(staged.lines[0])[CITY] is None


def test_keep_merges_attributes_by_name() -> None:
    merged = merge_blanks(list(row("a@x.com", None, '{"tier":"gold"}')), row("a@x.com", "Leeds", '{"vip":"yes"}'))
    assert merged[CITY] == "Leeds" and merged[ATTRS] == '{"tier":"gold","vip":"yes"}'


def test_a_version_older_than_the_stored_one_is_a_row_error() -> None:
    staged = stage_rows([row("a@x.com", "Paris"), row("a@x.com", "Rome")])
    staged.versions = [2, 3]
    plan = plan_batch(staged, state(stored(1, row("a@x.com"), version=3)), Modes())
    assert plan.errors == [(0, "version", "changed since this file was exported: stored version 3")]
    assert plan.upsert == [1]


def test_match_on_id_changes_emails_in_file_order() -> None:
    # Customers 1 (a@) and 2 (b@): row 0 moves 1 to c@, row 1 then moves 2 to a@ (free by then), row 2 names
    # an id that does not exist, row 3 moves 1 to b@ (free since row 1).
    table = state(stored(1, row("a@x.com")), stored(2, row("b@x.com")))
    staged = stage_rows([row("c@x.com"), row("a@x.com"), row("d@x.com"), row("b@x.com")])
    staged.ids = [1, 2, 9, 1]
    plan = plan_batch(staged, table, Modes(match_on="id"))
    assert plan.update == [(0, 1), (1, 2), (3, 1)]
    assert plan.errors == [(2, "id", "no customer has id 9")]
    staged = stage_rows([row("b@x.com")])
    staged.ids = [1]
    clash = plan_batch(staged, state(stored(1, row("a@x.com")), stored(2, row("b@x.com"))), Modes(match_on="id"))
    assert clash.errors == [(0, "email", "b@x.com is the email of customer 2")]


def test_repeated_emails_are_named_by_their_rows() -> None:
    finder = DuplicateFinder()
    finder.add(["a@x.com", "b@x.com", "a@x.com"], [2, 3, 4])
    finder.add(["c@x.com", "b@x.com", "a@x.com"], [5, 6, 9])
    assert finder.repeated() == [[2, 4, 9], [3, 6]]
    assert finder.warning("upsert") == (
        "the same email is in more than one row (the later row's values are kept): rows 2, 4, 9; rows 3, 6"
    )
    assert "first row counts" in str(finder.warning("insert"))
    assert DuplicateFinder().warning("upsert") is None


def test_repeated_emails_are_all_found_across_the_sorted_slices() -> None:
    """repeated() sorts the hashes a slice at a time: every repeated email of a big file is found."""
    finder = DuplicateFinder()
    emails = [f"person{i % 9000}@example.com" for i in range(10_000)]  # 1,000 emails twice, 8,000 once
    for start in range(0, len(emails), 2000):
        finder.add(emails[start : start + 2000], list(range(start + 2, start + 2002)))
    expected = sorted(([i + 2, i + 9002] for i in range(1000)), key=lambda rows: rows[0])
    assert finder.repeated() == expected


def test_a_batch_told_all_unchanged_is_what_plan_batch_finds_all_unchanged() -> None:
    """all_unchanged answers for plan_batch without its state: True only where plan_batch counts every
    row unchanged and finds nothing else to do; False where a row is new, changed, refused or skipped
    whatever its hash, or stored with other letter cases or no hash (plan_batch then decides)."""
    a, b = row("a@x.com"), row("b@x.com")
    table = [stored(1, a, version=3), stored(2, b)]
    cases: list[tuple[str, list[tuple[str | None, ...]], Modes, list[int | None] | None, bool]] = [
        ("every row as stored", [a, b], Modes(), None, True),
        ("an email twice", [a, b, a], Modes(), None, True),
        ("update mode", [a, b], Modes(mode="update"), None, True),
        ("versions as stored or newer", [a, b], Modes(), [3, None], True),
        ("a changed row", [a, row("b@x.com", "Paris")], Modes(), None, False),
        ("a new email", [a, row("c@x.com")], Modes(), None, False),
        ("insert mode skips stored emails", [a, b], Modes(mode="insert"), None, False),
        ("an older version is a row error", [a, b], Modes(), [2, None], False),
        ("matching on id", [a, b], Modes(match_on="id"), None, False),
    ]
    for name, rows, modes, versions, expected in cases:
        staged = stage_rows(rows)
        staged.versions = versions
        found = [(c.email, c.id, c.version, c.hash, None) for c in table]
        assert all_unchanged(staged, found, modes) is expected, name
        if expected:
            plan = plan_batch(staged, state(*(stored(c.id, tuple(c.values), c.version) for c in table)), modes)
            assert (plan.unchanged, plan.upsert, plan.update, plan.errors, plan.skipped) == (len(rows), [], [], [], 0)
    other_case = [("A@x.com", 1, 1, customer_repo.row_hash_hex(a), None)]
    assert not all_unchanged(stage_rows([a]), other_case, Modes())
    unhashed = [("a@x.com", 1, 1, None, list(a))]
    assert not all_unchanged(stage_rows([a]), unhashed, Modes())


def test_a_batch_guessed_new_is_planned_as_plan_batch_plans_it_against_an_empty_table() -> None:
    rows = [row("a@x.com"), row("b@x.com", None), row("c@x.com", "Paris", '{"tier":"gold"}')]
    for mode in ("upsert", "insert", "update"):
        for blank_cells in ("keep", "clear"):
            modes = Modes(mode=mode, blank_cells=blank_cells)
            assert plan_new(stage_rows(rows), modes) == plan_batch(stage_rows(rows), State(), modes), modes
