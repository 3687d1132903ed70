"""Uploads, stored under the job id (never under the client's filename).

Two stores with one interface:

* `UploadStore` (the default): a directory, `UPLOAD_DIR`, that the gateway and every worker share.
* `S3UploadStore` (`UPLOAD_STORE=s3://bucket/prefix`): an S3-compatible bucket, so that no volume is
  shared. `UPLOAD_DIR` is then each process's own scratch directory.

Either way the gateway first spools the upload to `<UPLOAD_DIR>/<job>.part` (counting and hashing it,
never holding it in memory), because its checks and the spreadsheet readers need a seekable file (a
zip's central directory is at its end). `commit` then renames the spool to `<job>.<kind>` (directory)
or sends it to the bucket as a multipart upload of `S3_PART_BYTES` parts and deletes it (S3).
`local_copy` gives a reader a local path for the job's file: the file itself (directory), or the object
streamed into a temporary file in `UPLOAD_DIR` that is deleted when the block ends (S3).
`remove_job_files` deletes what a job left, once it has ended.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.config import S3Location, Settings

log = logging.getLogger(__name__)

FILE_KINDS = ("xlsx", "csv")
# Every part of a multipart upload but the last must be at least 5 MiB (S3's rule, MinIO's too); the
# gateway holds one part in memory at a time per upload it is sending.
S3_PART_BYTES = 5 * 1024 * 1024
DOWNLOAD_CHUNK_BYTES = 1024 * 1024


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the upload is larger than the limit of {limit // (1024 * 1024)} MB")
        self.limit = limit


@dataclass(frozen=True)
class StoredUpload:
    job_id: str
    path: Path
    size: int
    sha256: str


class UploadStore:
    """Uploads in a directory shared by the gateway and the workers."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    async def open(self) -> None:
        """Connect to the storage (nothing to do for a directory)."""
        self.ensure()

    async def close(self) -> None:
        pass

    def path_for(self, job_id: str, kind: str) -> Path:
        return self.root / f"{job_id}.{kind}"

    def _partial(self, job_id: str) -> Path:
        return self.root / f"{job_id}.part"

    async def receive(self, job_id: str, chunks: AsyncIterator[bytes], max_bytes: int) -> StoredUpload:
        """Write the stream to `<job id>.part`, counting and hashing; never holds the whole body."""
        self.ensure()
        path = self._partial(job_id)
        digest = hashlib.sha256()
        size = 0
        try:
            with path.open("wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadTooLarge(max_bytes)
                    digest.update(chunk)
                    fh.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StoredUpload(job_id, path, size, digest.hexdigest())

    async def commit(self, upload: StoredUpload, job_id: str, kind: str) -> None:
        """Keep the checked upload as the job's file."""
        os.replace(upload.path, self.path_for(job_id, kind))

    def discard(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    @contextlib.asynccontextmanager
    async def local_copy(self, job_id: str, kind: str) -> AsyncIterator[Path | None]:
        """A local path of the job's file for the block (None when it is gone)."""
        path = self.path_for(job_id, kind)
        yield path if path.exists() else None

    async def remove_job_files(self, job_id: str) -> None:
        for kind in (*FILE_KINDS, "part"):
            (self.root / f"{job_id}.{kind}").unlink(missing_ok=True)


class S3UploadStore(UploadStore):
    """Uploads as objects `<prefix>/<job>.<kind>` in an S3-compatible bucket (aiobotocore). `root` is
    this process's own scratch directory: the gateway's spool, a worker's downloads."""

    def __init__(
        self,
        root: str | Path,
        location: S3Location,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_bytes: int = S3_PART_BYTES,
    ) -> None:
        super().__init__(root)
        self.url = location.url
        self.bucket = location.bucket
        self.prefix = location.prefix
        self.part_bytes = part_bytes
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url or None,
            "region_name": region or None,
            "aws_access_key_id": access_key_id or None,
            "aws_secret_access_key": secret_access_key or None,
        }
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    def __str__(self) -> str:
        return self.url

    def key_for(self, job_id: str, kind: str) -> str:
        name = f"{job_id}.{kind}"
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3UploadStore.open() was not called")
        return self._client

    async def open(self) -> None:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        self.ensure()
        config = AioConfig(
            # MinIO and most S3-compatible servers serve buckets under the path, not a sub-domain.
            s3={"addressing_style": "path" if self._client_args["endpoint_url"] else "auto"},
            # Checksums only where S3 requires them: not every S3-compatible server knows the newer ones.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(
            get_session().create_client("s3", config=config, **self._client_args)
        )
        self._stack = stack

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = None
        self._client = None

    async def commit(self, upload: StoredUpload, job_id: str, kind: str) -> None:
        """Send the spooled upload to the bucket, one part in memory at a time, then delete the spool."""
        key = self.key_for(job_id, kind)
        with upload.path.open("rb") as fh:
            first = fh.read(self.part_bytes)
            if len(first) < self.part_bytes:
                await self.client.put_object(Bucket=self.bucket, Key=key, Body=first)
            else:
                await self._multipart(key, first, fh)
        upload.path.unlink(missing_ok=True)
        log.info("upload stored", extra={"job": job_id, "object": f"s3://{self.bucket}/{key}", "bytes": upload.size})

    async def _multipart(self, key: str, first: bytes, fh: Any) -> None:
        created = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = created["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            chunk = first
            while chunk:
                number = len(parts) + 1
                answer = await self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
                chunk = fh.read(self.part_bytes)
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    @contextlib.asynccontextmanager
    async def local_copy(self, job_id: str, kind: str) -> AsyncIterator[Path | None]:
        """Stream the object into a temporary file of this process's scratch directory (1 MiB at a
        time), deleted when the block ends. None when there is no such object."""
        from botocore.exceptions import ClientError

        self.ensure()
        path = self.root / f"{job_id}.{uuid.uuid4().hex[:8]}.download"
        try:
            try:
                answer = await self.client.get_object(Bucket=self.bucket, Key=self.key_for(job_id, kind))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    yield None
                    return
                raise
            async with answer["Body"] as body:
                with path.open("wb") as fh:
                    while chunk := await body.read(DOWNLOAD_CHUNK_BYTES):
                        fh.write(chunk)
            yield path
        finally:
            path.unlink(missing_ok=True)

    async def remove_job_files(self, job_id: str) -> None:
        """Delete the job's object (and any spool left here). A failure is logged, not raised: the job
        has ended either way; a bucket lifecycle rule can sweep what is left."""
        await super().remove_job_files(job_id)
        for kind in FILE_KINDS:  # deleting a key that is not there succeeds
            try:
                await self.client.delete_object(Bucket=self.bucket, Key=self.key_for(job_id, kind))
            except Exception as exc:
                log.warning("could not delete the upload from the bucket", extra={"job": job_id, "error": str(exc)})


def open_store(settings: Settings) -> UploadStore:
    """The store the settings name (call `open()` before use, `close()` at the end)."""
    if settings.s3 is not None:
        return S3UploadStore(
            settings.upload_dir,
            settings.s3,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        )
    return UploadStore(settings.upload_dir)
