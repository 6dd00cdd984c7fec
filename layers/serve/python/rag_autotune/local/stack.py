"""The embedded default: moto's server on 127.0.0.1 as the AWS endpoint, reached over HTTP by the same boto3
code that runs on AWS. Only the endpoint differs (AWS_ENDPOINT_URL).

moto keeps state in memory, so `save`/`restore` snapshot the bucket and the table to a folder on stop and
bring them back on the next start: models, index snapshots, the manifest and the votes survive a
restart of `make run`. (Step Functions executions and the EventBridge rule are recreated, not restored.)

`up` saves every minute too, so the save must cost little when little changed: an object whose ETag is the one
saved last time is hard-linked from the last save rather than downloaded again, a table moto has not written
since (moto_fixes.tables_version) is linked rather than read, and one it has is read from moto's backend in
this process (moto_fixes.stored_items) rather than scanned through its slow response serializer. The save runs
in moto's process, where a long one holds the GIL that the API's vote writes wait for."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from moto.server import ThreadedMotoServer

from ..adapters import aws
from ..settings import Settings
from . import moto_fixes
from .resources import ensure_resources


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoStack:
    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, region: str | None = None) -> MotoStack:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
        moto_fixes.apply()
        self._server.start()
        # Everything in this process (and its children) now talks to moto, with local credentials, never the
        # user's (adapters/aws.py decides them from the endpoint).
        aws.use_endpoint(self.url, region)
        os.environ["MOTO_PORT"] = str(self.port)  # moto's Step Functions calls Lambda at localhost:$MOTO_PORT
        return self

    def stop(self) -> None:
        self._server.stop()


_ETAGS = "s3-etags.json"  # key → ETag of each object in a save
_TABLE_VERSION = "table.version"  # moto_fixes.tables_version() when table.jsonl was written


def _clients(settings: Settings) -> tuple[Any, Any]:
    # The shared clients (aws.use_endpoint drops them when a restart's moto listens on another port): a fresh
    # session per save re-read botocore's endpoint data each minute, holding moto's GIL.
    return aws.make_client("s3", settings.region), aws.make_client("dynamodb", settings.region)


def save(settings: Settings, folder: Path) -> tuple[int, int]:
    """Bucket objects and table items → folder (written to a temp folder, then swapped in). Returns how many
    objects were downloaded and items scanned: what the last save already held is linked from it."""
    s3, ddb = _clients(settings)
    tmp = folder.with_name(folder.name + ".tmp")
    _rmtree(tmp)  # what a failed save left
    tmp.mkdir(parents=True)
    before = _read_json(folder / _ETAGS)
    etags: dict[str, str] = {}
    objects = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket):
        for obj in page.get("Contents", []):
            key, etag = obj["Key"], obj.get("ETag", "")
            target = tmp / "s3" / key
            target.parent.mkdir(parents=True, exist_ok=True)
            etags[key] = etag
            if not (etag and before.get(key) == etag and _link(folder / "s3" / key, target)):
                s3.download_file(settings.bucket, key, str(target))
                objects += 1
    (tmp / _ETAGS).write_text(json.dumps(etags))
    items = 0
    version = moto_fixes.tables_version()
    table_file = tmp / "table.jsonl"
    saved_version = _read_text(folder / _TABLE_VERSION)
    if version is None or saved_version != version or not _link(folder / "table.jsonl", table_file):
        stored = moto_fixes.stored_items(settings.table, settings.region)  # moto in this process: no Scan
        with table_file.open("w") as fh:
            for item in stored if stored is not None else _scan(ddb, settings.table):
                fh.write(json.dumps(item, default=_encode_binary) + "\n")
                items += 1
    if version is not None:
        (tmp / _TABLE_VERSION).write_text(version)
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        folder.rename(old)
        tmp.rename(folder)
        _rmtree(old)
    else:
        tmp.rename(folder)
    return objects, items


def restore(settings: Settings, folder: Path) -> tuple[int, int]:
    ensure_resources(settings)
    if not folder.exists():
        return 0, 0
    s3, ddb = _clients(settings)
    objects = 0
    root = folder / "s3"
    for path in sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []:
        s3.upload_file(str(path), settings.bucket, path.relative_to(root).as_posix())
        objects += 1
    items = 0
    table_file = folder / "table.jsonl"
    if table_file.exists():
        with table_file.open() as fh:
            for line in fh:
                ddb.put_item(TableName=settings.table, Item=json.loads(line, object_hook=_decode_binary))
                items += 1
    return objects, items


def _scan(ddb: Any, table: str) -> Iterator[dict[str, Any]]:
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        yield from page["Items"]


def _link(source: Path, target: Path) -> bool:
    """target as a hard link to source (a copy where links are refused); False when source is missing."""
    try:
        os.link(source, target)
    except FileNotFoundError:
        return False
    except OSError:
        import shutil

        shutil.copy2(source, target)
    return True


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _read_json(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _encode_binary(value: object) -> dict[str, str]:
    """DynamoDB Binary values (older votes' query vectors) in JSON: {"B": {"base64": ...}}."""
    if isinstance(value, bytes | bytearray):
        return {"base64": base64.b64encode(value).decode()}
    raise TypeError(f"cannot save a {type(value).__name__} in the table snapshot")


def _decode_binary(obj: dict[str, Any]) -> Any:
    return base64.b64decode(obj["base64"]) if set(obj) == {"base64"} else obj


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
