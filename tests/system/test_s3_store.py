"""Uploads on S3-compatible object storage (UPLOAD_STORE=s3://bucket/prefix), against a real S3 server.

The server is moto's standalone server (`python -m moto.server`, from the `moto[server]` test extra),
started here on a free loopback port and stopped at the end: no MinIO server can be installed from
PyPI or Debian (Debian has only MinIO's Go client libraries; the MinIO server is a download of its
own). It speaks the S3 REST API over HTTP, so the service's aiobotocore client is exercised exactly as
against S3 or MinIO, multipart uploads included.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from shared.config import S3Location, SettingsError, load_settings
from shared.infra.storage import S3_PART_BYTES, S3UploadStore
from tests.conftest import DATA, truncate_all
from tests.support.procs import (
    Service,
    free_port,
    get_json,
    http,
    service_env,
    upload,
    wait_http_ready,
    wait_job,
)
from tests.support.workbooks import HEADER, csv_bytes, customers

KEY_ID, SECRET = "test-key-id", "test-secret-key"
BUCKET = "customer-uploads"


class MotoServer:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = (log_dir / "moto.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto.server exited: {(log_dir / 'moto.log').read_text()}")
            try:
                self.client.list_buckets()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        answer = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for item in answer.get("Contents", [])]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    try:
        server.client.create_bucket(Bucket=BUCKET)
        yield server
    finally:
        server.stop()


def _store(s3: MotoServer, root: Path, prefix: str) -> S3UploadStore:
    return S3UploadStore(
        root,
        S3Location(BUCKET, prefix),
        endpoint_url=s3.endpoint,
        region="us-east-1",
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
    )


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 65536):
        yield data[start : start + 65536]


async def test_the_s3_store_spools_sends_in_parts_downloads_and_deletes(s3: MotoServer, tmp_path: Path) -> None:
    prefix = f"unit-{uuid.uuid4().hex[:8]}"
    store = _store(s3, tmp_path / "spool", prefix)
    await store.open()
    try:
        big = os.urandom(2 * S3_PART_BYTES + 12345)
        small = b"email\r\na@example.com\r\n"
        for job_id, data, parts in (("big-job", big, 3), ("small-job", small, 0)):
            received = await store.receive(job_id, _chunks(data), max_bytes=len(data))
            assert received.sha256 == hashlib.sha256(data).hexdigest()
            await store.commit(received, job_id, "csv")
            assert not received.path.exists()  # the spool is gone once the object is stored
            key = f"{prefix}/{job_id}.csv"
            head = s3.client.head_object(Bucket=BUCKET, Key=key)
            assert head["ContentLength"] == len(data)
            # A multipart object's ETag ends in -<number of parts>; a single PUT's has no dash.
            etag = head["ETag"].strip('"')
            assert (etag.rsplit("-", 1)[1] if "-" in etag else "0") == str(parts), etag
            async with store.local_copy(job_id, "csv") as path:
                assert path is not None and path.parent == tmp_path / "spool"
                assert hashlib.sha256(path.read_bytes()).hexdigest() == received.sha256
            assert not path.exists()  # the download is deleted when the block ends
            await store.remove_job_files(job_id)
            with pytest.raises(ClientError):
                s3.client.head_object(Bucket=BUCKET, Key=key)
            async with store.local_copy(job_id, "csv") as gone:
                assert gone is None
        assert s3.keys(BUCKET, prefix) == []
        assert sorted(os.listdir(tmp_path / "spool")) == []
    finally:
        await store.close()


def _wide_csv(rows: int, width: int) -> bytes:
    """Customers plus a `notes` column (ignored, with a warning) that makes the file big."""
    note = "n" * width
    return csv_bytes([[*row, note] for row in customers(rows, domain="s3.example.com")], header=[*HEADER, "notes"])


def _wait_until_gone(s3: MotoServer, prefix: str, scratch: Path, timeout: float = 15) -> None:
    """The worker deletes the object and its download right after recording the job's end."""
    deadline = time.monotonic() + timeout
    while s3.keys(BUCKET, prefix) or os.listdir(scratch):
        assert time.monotonic() < deadline, (s3.keys(BUCKET, prefix), os.listdir(scratch))
        time.sleep(0.1)


@pytest.mark.e2e
def test_gateway_and_worker_share_no_directory_with_uploads_on_s3(
    s3: MotoServer, settings: Any, pool: object, tmp_path: Path
) -> None:
    truncate_all(settings)
    prefix = f"e2e-{uuid.uuid4().hex[:8]}/uploads"
    gateway_dir, worker_dir = tmp_path / "gateway-spool", tmp_path / "worker-scratch"
    common = {
        "UPLOAD_STORE": f"s3://{BUCKET}/{prefix}",
        "S3_ENDPOINT_URL": s3.endpoint,
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": KEY_ID,
        "S3_SECRET_ACCESS_KEY": SECRET,
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gateway = Service("gateway", service_env(settings, PORT=port, UPLOAD_DIR=gateway_dir, **common), tmp_path, "gw")
    worker = Service("worker", service_env(settings, UPLOAD_DIR=worker_dir, **common), tmp_path, "worker")
    services = [gateway, worker]
    try:
        wait_http_ready(base, gateway)
        # Over one part (5 MiB): the gateway sends it as a multipart upload, one part in memory at a time.
        rows = 1500
        data = _wide_csv(rows, 4000)
        assert len(data) > S3_PART_BYTES
        status, job = upload(base, "wide.csv", data, "?preview=true")
        assert status == 201, job
        job_id = job["job_id"]
        key = f"{prefix}/{job_id}.csv"
        assert s3.keys(BUCKET, prefix) == [key]
        head = s3.client.head_object(Bucket=BUCKET, Key=key)
        assert head["ContentLength"] == len(data)
        parts = int(head["ETag"].strip('"').rsplit("-", 1)[1])
        assert parts == -(-len(data) // S3_PART_BYTES) and parts > 1
        assert os.listdir(gateway_dir) == []  # nothing stays on the gateway

        # Start the preview: the gateway reads the object back to check the options, the worker imports it.
        status, _, _ = http("POST", f"{base}/jobs/{job_id}/start", b"{}", {"Content-Type": "application/json"})
        assert status == 202
        done = wait_job(base, job_id, timeout=120)
        logs = "\n".join(s.output()[-3000:] for s in services)
        assert done["status"] == "completed", logs
        assert (done["rows_read"], done["rows_inserted"], done["rows_updated"], done["rows_unchanged"]) == (
            rows,
            rows,
            0,
            0,
        )
        assert done["rows_invalid"] == 0
        assert done["sha256"] == hashlib.sha256(data).hexdigest()
        _wait_until_gone(s3, prefix, worker_dir)  # the object is deleted once the job has ended
        assert os.listdir(gateway_dir) == []

        # A direct upload (no preview): a workbook, checked at once by the gateway, imported by the worker.
        status, body = upload(
            base, "Sample_Employee_data_xlsx.xlsx", (DATA / "Sample_Employee_data_xlsx.xlsx").read_bytes()
        )
        assert status == 202, body
        done = wait_job(base, body["job_id"], timeout=120)
        assert done["status"] == "completed", "\n".join(s.output()[-3000:] for s in services)
        assert (done["rows_read"], done["rows_inserted"], done["rows_unchanged"], done["rows_invalid"]) == (
            2000,
            500,
            1500,
            0,
        )
        _wait_until_gone(s3, prefix, worker_dir)
        assert os.listdir(gateway_dir) == []

        # A rejected upload leaves nothing in the bucket or the spool.
        status, problem = upload(base, "bad.csv", b"name,age\r\nx,1\r\n")
        assert status == 422, problem
        assert s3.keys(BUCKET, prefix) == [] and os.listdir(gateway_dir) == []
        _, jobs = get_json(f"{base}/jobs?limit=5")
        assert len(jobs["items"]) == 2
    finally:
        for service in services:
            service.stop()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"UPLOAD_STORE": "gs://bucket"}, "UPLOAD_STORE must be empty"),
        ({"UPLOAD_STORE": "s3://"}, "UPLOAD_STORE must name an S3 bucket"),
        ({"UPLOAD_STORE": "s3://Bad_Bucket/x"}, "UPLOAD_STORE must name an S3 bucket"),
        ({"UPLOAD_STORE": "s3://bucket/x?y=1"}, "UPLOAD_STORE takes no query"),
        ({"S3_ENDPOINT_URL": "minio:9000"}, "S3_ENDPOINT_URL must look like https://host"),
        ({"S3_ENDPOINT_URL": "http://minio:port"}, "S3_ENDPOINT_URL has a bad port"),
        ({"S3_REGION": "US East"}, "S3_REGION must be a region name"),
        ({"S3_ACCESS_KEY_ID": "only-the-id"}, "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together"),
    ],
)
def test_s3_settings_are_checked_with_a_clear_error(env: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env, cwd=tmp_path)


def test_s3_settings_are_read(tmp_path: Path) -> None:
    s = load_settings(
        {
            "UPLOAD_STORE": "s3://my-bucket/imports/",
            "S3_ENDPOINT_URL": "http://minio:9000",
            "S3_REGION": "eu-west-3",
            "S3_ACCESS_KEY_ID": "id",
            "S3_SECRET_ACCESS_KEY": "s3cr3t-value",
        },
        cwd=tmp_path,
    )
    assert (s.upload_store, s.s3_endpoint_url, s.s3_region) == (
        "s3://my-bucket/imports/",
        "http://minio:9000",
        "eu-west-3",
    )
    assert "s3cr3t-value" not in repr(s)
    assert s.s3 is not None and s.s3 == S3Location("my-bucket", "imports")  # parsed once, at start
    store = S3UploadStore(s.upload_dir, s.s3)
    assert (store.bucket, store.key_for("j", "csv")) == ("my-bucket", "imports/j.csv")
    assert load_settings({}, cwd=tmp_path).upload_store == ""


def test_the_compose_minio_profile_points_gateway_and_workers_at_its_bucket(tmp_path: Path) -> None:
    """`docker compose --env-file deploy/minio.env --profile minio`: a MinIO, a job that makes the
    bucket, and the gateway and workers configured for it (settings the service accepts)."""
    import shutil

    import yaml

    repo = Path(__file__).resolve().parents[2]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        compose = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        compose = ["docker-compose"]
    else:
        pytest.skip("neither `docker compose` nor docker-compose is installed (apt-get install docker-compose)")
    args = [*compose, "-f", "docker-compose.yml", "--env-file", "deploy/minio.env", "--profile", "minio", "config"]
    proc = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    assert {"minio", "minio-bucket", "gateway", "worker"} <= set(services)
    bucket_env = services["minio-bucket"]["environment"]
    for name in ("gateway", "worker"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        s = load_settings(env, cwd=tmp_path)
        assert s.upload_store == f"s3://{bucket_env['BUCKET']}/uploads"
        assert s.s3_endpoint_url == "http://minio:9000"
        assert f"{s.s3_access_key_id}:{s.s3_secret_access_key}@minio:9000" in bucket_env["MC_HOST_local"]
    # Without the env file the services keep the shared volume.
    plain = subprocess.run([*compose, "-f", "docker-compose.yml", "config"], cwd=repo, capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    assert yaml.safe_load(plain.stdout)["services"]["gateway"]["environment"]["UPLOAD_STORE"] in ("", None)


async def test_without_s3_keys_the_standard_aws_variables_are_used(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import NoCredentialsError

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    data = b"email\r\nb@example.com\r\n"

    async def store_one() -> None:
        store = S3UploadStore(
            tmp_path / "spool", S3Location(BUCKET, "env"), endpoint_url=s3.endpoint, region="us-east-1"
        )
        await store.open()
        try:
            await store.commit(await store.receive("env-job", _chunks(data), 1000), "env-job", "csv")
            await store.remove_job_files("env-job")
        finally:
            await store.close()

    with pytest.raises(NoCredentialsError):
        await store_one()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    await store_one()
    assert s3.keys(BUCKET, "env/") == []
