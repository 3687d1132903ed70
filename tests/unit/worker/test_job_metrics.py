"""How the worker's metrics count each Outcome of an import attempt (worker.job_metrics)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.imports.queue import Outcome
from worker.job_metrics import FAILURE_OF_OUTCOME, FAILURE_REASONS, WorkerMetrics, instrumented_import


def _failures(metrics: WorkerMetrics) -> dict[str, float]:
    return {reason: metrics.failures.labels(reason)._value.get() for reason in FAILURE_REASONS}


def _durations(metrics: WorkerMetrics) -> dict[str, float]:
    samples = metrics.registry.get_sample_value
    return {s: samples("import_job_duration_seconds_count", {"status": s}) or 0 for s in ("completed", "failed")}


def test_every_failure_an_outcome_maps_to_is_a_known_reason() -> None:
    assert set(FAILURE_OF_OUTCOME.values()) <= set(FAILURE_REASONS)
    assert Outcome.COMPLETED not in FAILURE_OF_OUTCOME and Outcome.SPLIT not in FAILURE_OF_OUTCOME


@pytest.mark.parametrize(
    ("outcome", "duration", "failure"),
    [
        (Outcome.COMPLETED, "completed", None),
        (Outcome.LEASE_LOST, None, "lease_lost"),
        (Outcome.SKIPPED, None, None),
        (Outcome.SPLIT, None, None),
    ],
)
async def test_an_attempt_is_counted_by_its_outcome(
    outcome: Outcome, duration: str | None, failure: str | None
) -> None:
    metrics = WorkerMetrics()

    async def attempt(ctx: dict[str, Any], job_id: str) -> Outcome:
        return outcome

    assert await instrumented_import(attempt)({"metrics": metrics}, "job") is outcome
    assert _durations(metrics) == {s: 1 if s == duration else 0 for s in ("completed", "failed")}
    assert _failures(metrics) == {r: 1 if r == failure else 0 for r in FAILURE_REASONS}
    assert metrics.running._value.get() == 0
