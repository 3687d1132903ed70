"""The webhook delivery job (arq): one attempt per run, the next one queued with back-off."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from shared.imports import job_repo
from shared.imports.queue import enqueue_delivery
from shared.imports.service import get_job
from shared.imports.webhooks import attempt, backoff_s
from shared.infra.db import connection
from shared.infra.logs import job_id_var
from worker.importer import WorkerDeps

log = logging.getLogger(__name__)


async def deliver_webhook(ctx: dict[str, Any], job_id: str) -> str:
    deps: WorkerDeps = ctx["deps"]
    settings = deps.settings
    token = job_id_var.set(job_id)
    try:
        async with connection(deps.pool) as conn, conn.cursor() as cur:
            job = await job_repo.get(cur, job_id)
        if job is None or not job.callback_url or not job.webhook or job.webhook.get("status") != "pending":
            return "nothing owed"
        state = job.webhook
        body = orjson.dumps(await get_job(deps.pool, job_id))
        record = await attempt(
            ctx["http"],
            job.callback_url,
            body,
            secret=settings.webhook_secret,
            delivery_id=state["delivery_id"],
            timeout_s=settings.webhook_timeout_s,
            allow_private=settings.webhook_allow_private,
        )
        ok = record.pop("ok")
        state["attempts"].append(record)
        retry_in: float | None = None
        if ok:
            state["status"] = "delivered"
        elif len(state["attempts"]) >= settings.webhook_max_attempts:
            state["status"] = "failed"
        else:
            retry_in = backoff_s(len(state["attempts"]), settings.webhook_backoff_s)
        async with connection(deps.pool) as conn, conn.cursor() as cur:
            await job_repo.record_webhook(cur, job_id, state, retry_in)
        log.info(
            "webhook attempt",
            extra={"attempt": len(state["attempts"]), "http_status": record["status"], "outcome": state["status"]},
        )
        if retry_in is not None:
            await enqueue_delivery(ctx["redis"], settings, job_id, str(len(state["attempts"])), retry_in)
        return str(state["status"])
    finally:
        job_id_var.reset(token)
