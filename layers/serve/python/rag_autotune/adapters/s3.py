"""ArtifactStore on S3. Conditional writes (If-Match / If-None-Match) make the manifest a compare-and-swap."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import ArtifactNotFound, ConflictError, UpstreamError

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_DELETE_BATCH = 1000  # DeleteObjects' limit


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ArtifactStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self.bucket = bucket

    def _fail(self, exc: Exception, key: str, op: str) -> Exception:
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _NOT_FOUND:
                return ArtifactNotFound(f"s3://{self.bucket}/{key}")
            if code in _CONFLICT:
                return ConflictError(f"s3://{self.bucket}/{key}: {code}")
        return UpstreamError(f"s3 {op} s3://{self.bucket}/{key}: {exc}")

    def get_bytes(self, key: str) -> bytes:
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        try:
            resp = self._s3.get_object(Bucket=self.bucket, Key=key)
            body: bytes = resp["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, key, "get") from exc
        return body, str(resp["ETag"])

    def head_etag(self, key: str) -> str | None:
        try:
            resp = self._s3.head_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            err = self._fail(exc, key, "head")
            if isinstance(err, ArtifactNotFound):
                return None
            raise err from exc
        return str(resp["ETag"])

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        try:
            resp = self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, key, "put") from exc
        return str(resp["ETag"])

    def put_if(self, key: str, data: bytes, expected_etag: str | None) -> str:
        cond = {"IfNoneMatch": "*"} if expected_etag is None else {"IfMatch": expected_etag}
        try:
            resp = self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, **cond)
        except (ClientError, BotoCoreError) as exc:
            err = self._fail(exc, key, "put_if")
            if isinstance(err, ArtifactNotFound):  # If-Match on a key that is gone: the condition failed
                err = ConflictError(f"s3://{self.bucket}/{key}: expected {expected_etag}, object missing")
            raise err from exc
        return str(resp["ETag"])

    def upload_file(self, key: str, path: Path) -> None:
        try:
            self._s3.upload_file(str(path), self.bucket, key)
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            raise UpstreamError(f"s3 upload {path} → s3://{self.bucket}/{key}: {exc}") from exc

    def download_file(self, key: str, path: Path) -> None:
        """Managed (ranged, parallel) download to a temporary name, then an atomic rename: a reader never
        sees a half-written file, and a failed download leaves the old one in place."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            self._s3.download_file(self.bucket, key, str(tmp))
            os.replace(tmp, path)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, key, "download") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, prefix, "list") from exc
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        """Deletes the current version of every key under prefix (a versioned bucket keeps the old versions
        until its lifecycle rule expires them)."""
        keys = self.list_keys(prefix)
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            try:
                resp = self._s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except (ClientError, BotoCoreError) as exc:
                raise self._fail(exc, prefix, "delete") from exc
            if errors := resp.get("Errors"):
                raise UpstreamError(f"s3 delete under s3://{self.bucket}/{prefix}: {errors[:3]}")
        return len(keys)
