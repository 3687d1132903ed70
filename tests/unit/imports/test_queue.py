"""The queue contract (shared.imports.queue): outcomes as arq records them, and the ids that make
enqueueing idempotent."""

from __future__ import annotations

import pickle

import pytest

from shared.imports import job_repo
from shared.imports.queue import (
    Outcome,
    first_arq_id,
    first_part_id,
    requeued_arq_id,
    requeued_part_id,
    webhook_arq_id,
)


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("completed", Outcome.COMPLETED),
        ("failed", Outcome.FAILED),
        ("skipped", Outcome.SKIPPED),
        ("lease-lost", Outcome.LEASE_LOST),
        ("split", Outcome.SPLIT),
    ],
)
def test_an_outcome_is_the_text_arq_records_and_reads_back(text: str, outcome: Outcome) -> None:
    assert Outcome(text) is outcome
    assert outcome == text and str(outcome) == text
    assert pickle.loads(pickle.dumps(outcome)) is outcome  # arq pickles a job's result


def test_only_a_completed_or_failed_run_ended_the_job_with_the_status_the_row_holds() -> None:
    assert {o for o in Outcome if o.ended} == {Outcome.COMPLETED, Outcome.FAILED}
    assert {o.value for o in Outcome if o.ended} == {job_repo.COMPLETED, job_repo.FAILED}


def test_an_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError):
        Outcome("lease_lost")


def test_ids_of_a_job_its_parts_and_its_webhook_never_collide() -> None:
    job = "0f0e0d0c-0000-4000-8000-000000000001"
    ids = [
        first_arq_id(job),
        requeued_arq_id(job, 1, 7),
        requeued_arq_id(job, 2, 7),
        requeued_arq_id(job, 1, 8),
        first_part_id(job, 0),
        first_part_id(job, 1),
        requeued_part_id(job, 0, 1, 7),
        webhook_arq_id(job, "0"),
        webhook_arq_id(job, "1:7"),
    ]
    assert len(set(ids)) == len(ids)
    assert first_arq_id(job) == f"import:{job}"  # what queued jobs already in Redis carry
    assert requeued_arq_id(job, 3, 9).startswith(first_arq_id(job) + ":")
    assert first_part_id(job, 2) == f"part:{job}:2"
