"""The embedded default: moto's server on 127.0.0.1 as the AWS endpoint, reached over HTTP by the same boto3
code that runs on AWS. Only the endpoint differs (AWS_ENDPOINT_URL).

moto keeps state in memory, so `save`/`restore` snapshot the bucket and the table to a folder on stop and
bring them back on the next start: models, index snapshots, the manifest, the query log and votes survive a
restart of `make run`. (Step Functions executions and the EventBridge rule are recreated, not restored.)"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
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


def _clients(settings: Settings) -> tuple[Any, Any]:
    session = aws.session(settings.region)  # fresh clients: a restart's moto listens on another port
    return session.client("s3"), session.client("dynamodb")


def save(settings: Settings, folder: Path) -> tuple[int, int]:
    """Bucket objects and table items → folder (written to a temp folder, then swapped in)."""
    s3, ddb = _clients(settings)
    tmp = folder.with_name(folder.name + ".tmp")
    _rmtree(tmp)  # what a failed save left
    objects = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket):
        for obj in page.get("Contents", []):
            target = tmp / "s3" / obj["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(settings.bucket, obj["Key"], str(target))
            objects += 1
    items = 0
    tmp.mkdir(parents=True, exist_ok=True)
    with (tmp / "table.jsonl").open("w") as fh:
        for page in ddb.get_paginator("scan").paginate(TableName=settings.table):
            for item in page["Items"]:
                fh.write(json.dumps(item, default=_encode_binary) + "\n")
                items += 1
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


def _encode_binary(value: object) -> dict[str, str]:
    """DynamoDB Binary values (the query log's vectors) in JSON: {"B": {"base64": ...}}."""
    if isinstance(value, bytes | bytearray):
        return {"base64": base64.b64encode(value).decode()}
    raise TypeError(f"cannot save a {type(value).__name__} in the table snapshot")


def _decode_binary(obj: dict[str, Any]) -> Any:
    return base64.b64decode(obj["base64"]) if set(obj) == {"base64"} else obj


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
