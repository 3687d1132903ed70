"""Import modes (DESIGN "Jobs"): what each valid row of a batch does to the table, decided in Python
from what the table holds of the batch (customer_repo.known) before anything is written.

    mode        upsert (insert new emails, update known ones) | insert (known: skipped) | update (new: skipped)
    blank_cells keep (an empty cell never erases a stored value) | clear (it does)
    match_on    email | id (the file's `id` column names the customer; its email may change)

and the optimistic lock of a `version` column: a row older than the stored customer is a row error.

The rows are decided in file order against a running state (the table's rows, then what earlier rows
of the batch made of them), so a file is applied as if row by row. A row's values after the blank-cell
rule are written whole (its staging line and hash replaced), so what is stored always matches its hash
and the cache documents built from the lines. Counting is per row: each valid row ends inserted,
updated, unchanged, skipped or invalid (a row error found here), never two of these.

The parser process also finds a file's repeated emails (DuplicateFinder): a compact array of the
emails' hashes, sorted once at the end, so a million-row file costs 16 bytes a row, not a dict.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.customers import customer_repo
from shared.customers.fields import ATTRIBUTES, STORED_FIELDS
from shared.spreadsheet.rules import column_letter, fold_header, normalize_cell
from worker.pipeline.messages import ParsedBatch, StagedRows
from worker.pipeline.stage import stage_rows

UPSERT, INSERT, UPDATE = "upsert", "insert", "update"
KEEP, CLEAR = "keep", "clear"
BY_EMAIL, BY_ID = "email", "id"
_ATTRIBUTES_AT = STORED_FIELDS.index(ATTRIBUTES)


@dataclass(frozen=True)
class Modes:
    mode: str = UPSERT
    blank_cells: str = KEEP
    match_on: str = BY_EMAIL

    @classmethod
    def of(cls, options: Any) -> Modes:
        """The modes an ImportOptions gives (None: the default)."""
        return cls(
            getattr(options, "mode", None) or UPSERT,
            getattr(options, "blank_cells", None) or KEEP,
            getattr(options, "match_on", None) or BY_EMAIL,
        )


@dataclass
class Customer:
    """A customer as the batch sees it: the table's row, or one an earlier row of the file inserts
    (id None). `version` stays the table's (what a file's `version` column is compared with)."""

    id: int | None
    email: str
    version: int | None
    hash: str
    values: list[str | None] | None = None  # STORED_FIELDS order; None: read from `line` when needed
    line: int | None = None  # the batch row whose values these are


@dataclass
class State:
    by_email: dict[str, Customer] = field(default_factory=dict)
    by_id: dict[int, Customer] = field(default_factory=dict)

    def add(self, customer: Customer) -> None:
        self.by_email[customer.email] = customer
        if customer.id is not None:
            self.by_id[customer.id] = customer


@dataclass
class Plan:
    """What a batch's valid rows do. `upsert`: row indices for the email upsert (new customers, and
    in email matching the changed ones); `update`: (row index, customer id) for UPDATE by id, in file
    order, run before the upsert (match_on=id). `inserting`: how many distinct emails the upsert adds."""

    upsert: list[int] = field(default_factory=list)
    update: list[tuple[int, int]] = field(default_factory=list)
    inserting: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (row index, column, message)
    hashes_found: list[tuple[int, str]] = field(default_factory=list)  # (id, hash) of rows equal by value
    exact: bool = True  # every stored email matched a batch email byte for byte


def state_from(found: Sequence[customer_repo.KnownRow]) -> tuple[State, set[int]]:
    """The running state from customer_repo.known's rows, and the ids whose stored hash was unknown."""
    state = State()
    unhashed: set[int] = set()
    for email, customer_id, version, digest, values in found:
        if digest is None:
            digest = customer_repo.row_hash_hex(values or [])
            unhashed.add(customer_id)
        state.add(Customer(customer_id, email, version, digest, values))
    return state, unhashed


def _values(staged: StagedRows, index: int) -> list[str | None]:
    return customer_repo.values_of_line(staged.lines[index])


def _stored_values(staged: StagedRows, customer: Customer) -> list[str | None] | None:
    if customer.values is None and customer.line is not None:
        customer.values = _values(staged, customer.line)
    return customer.values


def merge_blanks(new: list[str | None], stored: Sequence[str | None]) -> list[str | None]:
    """blank_cells=keep: the file's values, an empty one replaced by the stored value; attributes
    merged by name (the file's win)."""
    merged = [value if value is not None else old for value, old in zip(new, stored, strict=True)]
    mine, theirs = new[_ATTRIBUTES_AT], stored[_ATTRIBUTES_AT]
    if mine is not None and theirs is not None and mine != theirs:
        attributes = customer_repo.decode_attributes(theirs)
        attributes.update(customer_repo.decode_attributes(mine))
        merged[_ATTRIBUTES_AT] = customer_repo.encode_attributes(attributes)
    return merged


def plan_new(staged: StagedRows, modes: Modes) -> Plan:
    """plan_batch against a table holding none of the batch's emails, each of which the batch holds
    once (a batch guessed to be new customers), without building the state it would throw away (a
    Customer a row: ~7 % of the worker's CPU on a file of new customers)."""
    if modes.mode == UPDATE or modes.match_on == BY_ID:
        return plan_batch(staged, State(), modes)
    return Plan(upsert=list(range(len(staged))), inserting=len(staged))


def all_unchanged(staged: StagedRows, found: Sequence[customer_repo.KnownRow], modes: Modes) -> bool:
    """Whether plan_batch would find every row of the batch unchanged, told without building the
    state (a re-import of an unchanged file, batch after batch: state_from and plan_batch were a
    sixth of the worker's CPU): each row's email is stored byte for byte with that row's hash, and
    no `version` cell is older than the stored version. Not for insert mode (a stored customer is
    skipped) nor matching on id."""
    if modes.mode == INSERT or modes.match_on == BY_ID:
        return False
    stored = {row[0]: row for row in found}
    versions = staged.versions
    for index, (email, digest) in enumerate(zip(staged.emails, staged.hashes, strict=True)):
        customer = stored.get(email)
        if customer is None or customer[3] != digest:
            return False
        if versions is not None and (version := versions[index]) is not None and version < customer[2]:
            return False
    return True


def plan_batch(staged: StagedRows, state: State, modes: Modes, unhashed: set[int] | None = None) -> Plan:
    """Decide each valid row of the batch, in file order; rewrites the staged line and hash of a row
    whose values the blank-cell rule changes. `state` is updated as rows are decided."""
    plan = Plan()
    unhashed = unhashed if unhashed is not None else set()
    emails, hashes = staged.emails, staged.hashes
    ids = staged.ids if modes.match_on == BY_ID else None
    versions = staged.versions
    keep = modes.blank_cells == KEEP
    by_email, by_id = state.by_email, state.by_id
    batch_emails = set(emails)
    wanted_ids = {i for i in ids or () if i is not None}
    plan.exact = all(c.email in batch_emails or c.id in wanted_ids for c in by_email.values())
    for index, email in enumerate(emails):
        wanted = ids[index] if ids is not None else None
        if wanted is not None:
            customer = by_id.get(wanted)
            if customer is None:
                plan.errors.append((index, "id", f"no customer has id {wanted}"))
                continue
        else:
            customer = by_email.get(email)
        if customer is None:
            if modes.mode == UPDATE:
                plan.skipped += 1
                continue
            state.add(Customer(None, email, None, hashes[index], line=index))
            plan.upsert.append(index)
            plan.inserting += 1
            continue
        if modes.mode == INSERT:
            plan.skipped += 1
            continue
        file_version = versions[index] if versions is not None else None
        if file_version is not None and customer.version is not None and file_version < customer.version:
            plan.errors.append(
                (index, "version", f"changed since this file was exported: stored version {customer.version}")
            )
            continue
        digest = hashes[index]
        merged: list[str | None] | None = None
        if keep and digest != customer.hash:
            new = _values(staged, index)
            if None in new:
                stored = _stored_values(staged, customer)
                if stored is not None:
                    merged = merge_blanks(new, stored)
                    if merged != new:
                        line, digest = customer_repo.stage_line(index, merged)
                        staged.lines[index], hashes[index] = line, digest
        if digest == customer.hash:
            plan.unchanged += 1
            if customer.id in unhashed:
                unhashed.discard(customer.id)
                plan.hashes_found.append((customer.id, digest))
            continue
        if customer.email != email:  # match_on=id: the row changes the customer's email
            holder = by_email.get(email)
            if holder is not None and holder is not customer:
                who = f"customer {holder.id}" if holder.id is not None else "a customer this file adds"
                plan.errors.append((index, "email", f"{email} is the email of {who}"))
                continue
            if by_email.get(customer.email) is customer:
                del by_email[customer.email]
            customer.email = email
            by_email[email] = customer
        customer.hash, customer.values, customer.line = digest, merged, index
        unhashed.discard(customer.id)
        if modes.match_on == BY_ID and customer.id is not None:
            plan.update.append((index, customer.id))
        else:
            plan.upsert.append(index)
    return plan


class RowKeys:
    """In the parser process: what the modes need of each valid row besides its values (its number,
    its `id` and `version` cells as an export writes them) and the query for the table's state.
    A file's `id` column is read only when the import matches on id; `version` whenever present."""

    def __init__(self, modes: Modes, header_cells: Sequence[Any], has_header: bool, email_at: int) -> None:
        folded = [fold_header(cell) for cell in header_cells] if has_header else []
        self.modes = modes
        self.id_at = folded.index("id") if "id" in folded and modes.match_on == BY_ID else None
        self.version_at = folded.index("version") if "version" in folded else None
        self.labels = {
            name: str(normalize_cell(header_cells[at]) if has_header and at < len(header_cells) else column_letter(at))
            for name, at in (("id", self.id_at), ("version", self.version_at), ("email", email_at))
            if at is not None
        }
        self.duplicates = DuplicateFinder()

    def missing_id_column(self) -> str | None:
        if self.modes.match_on == BY_ID and self.id_at is None:
            return (
                "match_on=id needs the file's id column (as an export writes it): this file has no column"
                " headed `id`; import it with match_on=email, or add the column"
            )
        return None

    def _number(self, cells: Sequence[Any], at: int | None) -> tuple[int | None, bool]:
        """The whole number in the cell (None when empty), and whether the cell was fine."""
        if at is None or at >= len(cells):
            return None, True
        text = normalize_cell(cells[at])
        if text is None:
            return None, True
        text = str(text).strip()
        if text.isascii() and text.isdigit() and len(text) <= 18:
            return int(text), True
        return None, False

    def stage(
        self, batch: ParsedBatch, valid: Sequence[tuple[int, list[Any]]], values: list[tuple[str | None, ...]]
    ) -> StagedRows:
        """Stage the valid rows; a row whose id or version cell is not a whole number becomes invalid."""
        numbers = [number for number, _ in valid]
        ids: list[int | None] | None = None
        versions: list[int | None] | None = None
        if self.id_at is not None or self.version_at is not None:
            ids, versions = [], []
            kept_values, kept = [], []
            for (number, cells), row in zip(valid, values, strict=True):
                wanted, id_ok = self._number(cells, self.id_at)
                version, version_ok = self._number(cells, self.version_at)
                if id_ok and version_ok:
                    ids.append(wanted)
                    versions.append(version)
                    kept_values.append(row)
                    kept.append((number, cells))
                    continue
                batch.invalid += 1
                for name, at, fine in (("id", self.id_at, id_ok), ("version", self.version_at, version_ok)):
                    if not fine and at is not None:
                        batch.errors.append(
                            (number, self.labels[name], name, str(normalize_cell(cells[at]))[:100],
                             f"not a customer {name}: a whole number, as an export writes it")
                        )  # fmt: skip
                batch.rejected.append((number, [normalize_cell(c) for c in cells]))
            if len(kept) != len(valid):
                batch.errors.sort(key=lambda error: error[0])
                batch.rejected.sort(key=lambda row: row[0])
            valid, values, numbers = kept, kept_values, [number for number, _ in kept]
            if self.id_at is None:
                ids = None
        wanted_ids = sorted({i for i in ids if i is not None}) if ids else []
        staged = stage_rows(values, ids=wanted_ids, with_values=self.modes.blank_cells == KEEP)
        staged.rows = numbers
        staged.ids, staged.versions, staged.labels = ids, versions, self.labels
        if ids is not None or versions is not None:
            # A row error found at commit is reported with the row as uploaded (the rejected rows).
            staged.cells = [[normalize_cell(c) for c in cells] for _, cells in valid]
        self.duplicates.add(staged.emails, numbers)
        return staged

    def skipped_rows(self, items: Sequence[tuple[int, list[Any]]], email_at: int) -> None:
        """Rows before a resumed job's checkpoint: read again only so repeated emails are still found."""
        emails, numbers = [], []
        for number, cells in items:
            text = normalize_cell(cells[email_at]) if email_at < len(cells) else None
            if text:
                emails.append(str(text).strip().lower())
                numbers.append(number)
        self.duplicates.add(emails, numbers)

    def warnings(self) -> list[str]:
        warning = self.duplicates.warning(self.modes.mode)
        return [warning] if warning else []


class DuplicateFinder:
    """The rows of emails that occur more than once in a file (or in one part of a split job: an
    email's rows all fall in one part). Python's str hash is per process, and a resumed job reads the
    file again in a new process, so hashes never outlive the process that made them. (Two different
    emails sharing a 64-bit hash in one file: about one chance in 10^7 for a million rows.)"""

    LISTED = 20  # repeated emails named in the warning; the rest are counted

    def __init__(self) -> None:
        self.hashes = array("q")
        self.rows = array("q")

    def add(self, emails: Sequence[str], rows: Sequence[int]) -> None:
        self.hashes.extend(map(hash, emails))
        self.rows.extend(rows)

    SLICES = 16  # the hashes are sorted a slice at a time (see repeated)

    def repeated(self) -> list[list[int]]:
        """The rows of each repeated email, by first row. The hashes are dealt into SLICES arrays by
        their low bits and each sorted on its own: sorting them all at once made a million Python ints
        at the end of a million-row file, ~50 MB more for a moment, the parser's peak."""
        mask = self.SLICES - 1
        slices = [array("q") for _ in range(self.SLICES)]
        appends = [part.append for part in slices]
        for digest in self.hashes:
            appends[digest & mask](digest)
        twice: set[int] = set()
        for part in slices:
            ordered = sorted(part)
            twice.update(a for a, b in itertools.pairwise(ordered) if a == b)
        del slices, ordered
        if not twice:
            return []
        found: dict[int, list[int]] = {}
        for digest, row in zip(self.hashes, self.rows, strict=True):
            if digest in twice:
                found.setdefault(digest, []).append(row)
        return sorted((sorted(rows) for rows in found.values()), key=lambda rows: rows[0])

    def warning(self, mode: str) -> str | None:
        repeated = self.repeated()
        if not repeated:
            return None
        rule = (
            "with mode=insert the first row counts and the later ones are skipped"
            if mode == INSERT
            else "the later row's values are kept"
        )
        named = "; ".join(f"rows {', '.join(map(str, rows))}" for rows in repeated[: self.LISTED])
        more = len(repeated) - self.LISTED
        tail = f"; and {more} more" if more > 0 else ""
        return f"the same email is in more than one row ({rule}): {named}{tail}"
