"""FeedbackStore on one DynamoDB table (the FeedbackTable in template.yaml).

Items (pk, sk are strings):
  vote           pk=Q#<query_id>  sk=V#<created_at:017.6f>#<rand8>   gsi1pk=VOTE, gsi1sk=created_at (N)
A vote may carry `embedding` (B): the query vector, float16, from the model_version the item names.
  dedupe marker  pk=D#<dedupe_key> sk=D  last_at (N)                 expires_at = last_at + window_s

TTL only collects garbage: it is lazy (days on AWS, never on moto), so the dedupe window is enforced by the
write condition on last_at, never by the marker being gone.

Throttling: botocore's standard retry mode (adapters/aws.py) retries throttled calls; what is still throttled
after that becomes Throttled (HTTP 503 with Retry-After), so a vote is never dropped silently. Inside a
transaction, throttling comes back as a cancellation reason, which botocore does not retry: we do, as for
conflicts.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from decimal import Decimal
from typing import Any, cast

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from ..domain import VersionPair, Vote, VoteKind
from ..errors import Throttled, UpstreamError

_SER = TypeSerializer()
_DES = TypeDeserializer()
_VOTE_GSI_PK = "VOTE"
_CONFLICT_RETRIES = 5  # TransactionConflict: another transaction held one of our items; botocore won't retry it
_TRANSIENT_CANCEL = frozenset({"TransactionConflict", "ThrottlingError"})
_THROTTLE_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "ThrottlingError"}
)
_RETRY_AFTER_S = 1.0


def _num(x: float) -> Decimal:
    """float → Decimal without binary noise: str() is the shortest repr, so float(_num(x)) == x."""
    return Decimal(str(x))


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _marshal(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _SER.serialize(_plain(v)) for k, v in item.items() if v is not None}


def _unmarshal(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _DES.deserialize(v) for k, v in raw.items()}


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _bytes(value: Any) -> bytes:
    """A Binary attribute (boto3 deserialises B to Binary) back to bytes; b"" when absent."""
    if value is None:
        return b""
    return bytes(value.value) if isinstance(value, Binary) else bytes(value)


def _failed(op: str, exc: ClientError | BotoCoreError, cancel_codes: list[str] | None = None) -> UpstreamError:
    """The domain error for a failed call: Throttled when DynamoDB was still throttling after the retries."""
    code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
    if code in _THROTTLE_CODES or _THROTTLE_CODES.intersection(cancel_codes or []):
        return Throttled(f"dynamodb {op}: throttled after retries, nothing written", retry_after_s=_RETRY_AFTER_S)
    return UpstreamError(f"dynamodb {op}: {exc}")


class DynamoFeedbackStore:
    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self.table = table

    # ---- votes -----------------------------------------------------------------------------------------

    def record_vote(self, vote: Vote, dedupe_key: str, window_s: int) -> bool:
        marker = {
            "pk": f"D#{dedupe_key}",
            "sk": "D",
            "type": "dedupe",
            "last_at": vote.created_at,
            "expires_at": math.ceil(vote.created_at) + window_s,
        }
        cutoff = vote.created_at - window_s
        for attempt in range(_CONFLICT_RETRIES):
            vote_item = self._vote_item(vote)  # fresh sk per attempt
            try:
                self._ddb.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self.table,
                                "Item": _marshal(marker),
                                "ConditionExpression": "attribute_not_exists(pk) OR last_at <= :cutoff",
                                "ExpressionAttributeValues": {":cutoff": {"N": str(_num(cutoff))}},
                            }
                        },
                        {
                            "Put": {
                                "TableName": self.table,
                                "Item": _marshal(vote_item),
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                    ],
                    # botocore's retries of this call are idempotent: a lost response is not a duplicate.
                    ClientRequestToken=uuid.uuid4().hex,
                )
                return True
            except ClientError as exc:
                codes = self._cancel_codes(exc)
                if codes and codes[0] == "ConditionalCheckFailed":
                    return False
                if _TRANSIENT_CANCEL.intersection(codes) and attempt + 1 < _CONFLICT_RETRIES:
                    time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
                    continue
                raise _failed(f"record_vote {vote.query_id}", exc, codes) from exc
            except BotoCoreError as exc:
                raise _failed(f"record_vote {vote.query_id}", exc) from exc
        raise UpstreamError(f"dynamodb record_vote {vote.query_id}: transaction conflicts persisted")

    @staticmethod
    def _cancel_codes(exc: ClientError) -> list[str]:
        if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
            return []
        reasons = cast(list[dict[str, Any]], exc.response.get("CancellationReasons") or [])
        return [str(r.get("Code", "None")) for r in reasons]

    @staticmethod
    def _vote_item(vote: Vote) -> dict[str, Any]:
        return {
            "pk": f"Q#{vote.query_id}",
            "sk": f"V#{vote.created_at:017.6f}#{uuid.uuid4().hex[:8]}",
            "type": "vote",
            "gsi1pk": _VOTE_GSI_PK,
            "gsi1sk": vote.created_at,
            "query_id": vote.query_id,
            "doc_id": vote.doc_id,
            "chunk_id": vote.chunk_id,
            "vote": vote.vote,
            "rank": int(vote.rank),
            "query": vote.query,
            "model_version": vote.pair.model_version,
            "index_version": vote.pair.index_version,
            "created_at": vote.created_at,
            "user_id": vote.user_id,
            "client_id": vote.client_id,
            "comment": vote.comment,
            # Omitted when empty (votes from /feedback): kept for votes that carry their query's vector.
            "embedding": vote.embedding or None,
        }

    @staticmethod
    def _vote_from(it: dict[str, Any]) -> Vote:
        return Vote(
            query_id=str(it["query_id"]),
            doc_id=str(it["doc_id"]),
            chunk_id=str(it["chunk_id"]),
            vote=cast(VoteKind, str(it["vote"])),
            rank=int(it["rank"]),
            query=str(it["query"]),
            pair=VersionPair(str(it["model_version"]), str(it["index_version"])),
            created_at=float(it["created_at"]),
            user_id=_opt_str(it.get("user_id")),
            client_id=str(it.get("client_id", "anonymous")),
            comment=_opt_str(it.get("comment")),
            embedding=_bytes(it.get("embedding")),
        )

    def votes(self, since: float | None = None, limit: int = 10_000) -> list[Vote]:
        if limit <= 0:
            return []
        values: dict[str, Any] = {":pk": {"S": _VOTE_GSI_PK}}
        condition = "gsi1pk = :pk"
        if since is not None:
            condition += " AND gsi1sk > :since"
            values[":since"] = {"N": str(_num(since))}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "gsi1",
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": True,
        }
        out: list[Vote] = []
        try:
            while len(out) < limit:
                resp = self._ddb.query(**kwargs, Limit=min(limit - len(out), 1000))
                out.extend(self._vote_from(_unmarshal(raw)) for raw in resp.get("Items", []))
                if "LastEvaluatedKey" not in resp:
                    break
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise UpstreamError(f"dynamodb votes since {since}: {exc}") from exc
        return out[:limit]
