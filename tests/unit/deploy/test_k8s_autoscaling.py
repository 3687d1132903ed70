"""deploy/k8s autoscaling: the workers' KEDA ScaledObject against KEDA's CRD schema (committed in
deploy/k8s/schemas/ with its source), the gateway's HPA against Kubernetes' own schema
(kubernetes-validate, as deploy/validate.sh uses), and the queue the ScaledObject reads is the one arq
fills, measured in a real Redis the way KEDA's redis scaler measures it."""

from __future__ import annotations

import importlib.util
import json
import uuid
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml
from arq import create_pool
from arq.constants import job_key_prefix
from redis.asyncio import Redis

from shared.config import Settings
from worker.settings import redis_settings

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"
K8S_VERSION = "1.30.0"  # deploy/validate.sh's default

# KEDA v2.20.2, pkg/scalers/redis_scaler.go (NewRedisScaler): how the `redis` scaler reads a length.
KEDA_LENGTH_SCRIPT = """
local listName = KEYS[1]
local listType = redis.call('type', listName).ok
if listType == 'zset' then
    return redis.call('zcard', listName)
elseif listType == 'set' then
    return redis.call('scard', listName)
elseif listType == 'hash' then
    return redis.call('hlen', listName)
elseif listType == 'list' or listType == 'none' then
    return redis.call('llen', listName)
else
    return redis.error_reply('ERR unsupported key type: ' .. listType)
end
"""


def _check_crds() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_crds", REPO / "deploy" / "check_crds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _doc(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs[0]


def _deployment(name: str) -> dict[str, Any]:
    return next(d for d in yaml.safe_load_all((K8S / f"{name}.yaml").read_text()) if d and d["kind"] == "Deployment")


def test_the_worker_scaled_object_fits_kedas_crd_schema() -> None:
    check = _check_crds()
    so = _doc("worker-scaledobject.yaml")
    assert check.problems(so) == []
    source = json.loads((K8S / "schemas" / "keda-scaledobject.json").read_text())
    assert source["x-source"]["repository"] == "kedacore/keda" and len(source["x-source"]["commit"]) == 40
    assert "v2.20.2" in source["$comment"]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("spec", "cooldownPeriods"), 300, "'cooldownPeriods' was unexpected"),
        (("spec", "minReplicaCount"), "1", "is not of type 'integer'"),
        (("spec", "triggers"), [{"metadata": {"listName": "arq:queue"}}], "'type' is a required property"),
        (("spec", "scaleTargetRef"), {"kind": "Deployment"}, "'name' is a required property"),
    ],
)
def test_a_scaled_object_that_does_not_fit_the_schema_is_refused(
    path: tuple[str, ...], value: object, message: str
) -> None:
    so = _doc("worker-scaledobject.yaml")
    target = so
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert any(message in p for p in _check_crds().problems(so)), _check_crds().problems(so)


def test_workers_scale_from_one_to_n_on_the_arq_queue_with_a_cool_down() -> None:
    so = _doc("worker-scaledobject.yaml")["spec"]
    config = _doc("configmap.yaml")["data"]
    worker = _deployment("worker")
    assert so["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": worker["metadata"]["name"]}
    assert so["minReplicaCount"] == 1 < so["maxReplicaCount"]
    assert so["cooldownPeriod"] > 0
    assert so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
    (trigger,) = so["triggers"]
    assert trigger["type"] == "redis"
    queue = Settings(redis_prefix=config["REDIS_PREFIX"]).queue_name
    assert trigger["metadata"]["listName"] == queue
    assert trigger["metadata"]["listLength"] == config["WORKER_CONCURRENCY"]
    # The Redis the workers use (configmap's REDIS_URL names the Service), named for the KEDA operator,
    # which runs in another namespace.
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    assert trigger["metadata"]["address"] == f"redis.{namespace}.svc.cluster.local:6379"
    assert config["REDIS_URL"] == "redis://redis:6379/0" and trigger["metadata"]["databaseIndex"] == "0"
    assert "replicas" not in worker["spec"]  # KEDA owns them


def test_the_gateway_hpa_fits_the_kubernetes_schema_and_scales_on_cpu() -> None:
    hpa = _doc("gateway-hpa.yaml")
    kubernetes_validate.validate(hpa, K8S_VERSION, strict=True)
    bad = {**hpa, "spec": {**hpa["spec"], "minReplica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    spec = hpa["spec"]
    gateway = _deployment("gateway")
    assert spec["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
    (metric,) = spec["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert 1 <= spec["minReplicas"] < spec["maxReplicas"]
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
    (container,) = [c for c in gateway["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway"]
    assert container["resources"]["requests"]["cpu"]  # utilisation is of the request
    assert "replicas" not in gateway["spec"]


def test_kustomization_and_validate_sh_include_the_autoscalers() -> None:
    resources = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert {"gateway-hpa.yaml", "worker-scaledobject.yaml"} <= set(resources)
    assert "deploy/check_crds.py" in (REPO / "deploy" / "validate.sh").read_text()


async def test_kedas_length_of_the_arq_queue_counts_the_jobs_arq_queued(settings: Settings) -> None:
    """arq's queue is a sorted set: KEDA's redis scaler (ZCARD for a zset) reads its length."""
    own = replace(settings, redis_prefix=f"{settings.redis_prefix}keda:")
    arq = await create_pool(redis_settings(own), default_queue_name=own.queue_name)
    redis = Redis.from_url(settings.redis_url)
    ids = [f"import:keda-check-{uuid.uuid4()}" for _ in range(3)]
    try:
        length = redis.register_script(KEDA_LENGTH_SCRIPT)
        assert await length(keys=[own.queue_name]) == 0
        for job_id in ids:
            await arq.enqueue_job("import_workbook", job_id, _job_id=job_id)
        assert await redis.type(own.queue_name) == b"zset"
        assert await length(keys=[own.queue_name]) == 3
    finally:
        # arq's job keys are not under the queue's prefix: delete exactly the ones made here.
        await redis.delete(own.queue_name, *(f"{job_key_prefix}{job_id}" for job_id in ids))
        await redis.aclose()
        await arq.aclose()
