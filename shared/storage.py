"""Uploads on shared storage, stored under the job id (never under the client's filename)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path


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
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

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

    def commit(self, upload: StoredUpload, job_id: str, kind: str) -> Path:
        final = self.path_for(job_id, kind)
        os.replace(upload.path, final)
        return final

    def discard(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def remove_job_files(self, job_id: str) -> None:
        for kind in ("xlsx", "csv", "part"):
            (self.root / f"{job_id}.{kind}").unlink(missing_ok=True)
