"""The tune workflow's payloads, typed: what crosses a step boundary in Step Functions (infra/tune.asl.json).

The execution's state `$` is Init's {run_id, trigger} (`RunStart`, Prepare's input), then `$.run` (`RunState`:
what Prepare returns and each later step passes on with what it added) and, after a Catch, `$.error`
(`StepError`). Cleanup and Reject read `$` whole (`CleanupEvent`) and return `RunOutcome`. Each item of the
embed Map reads `ShardTask`: `$.run` and one element of the item list Plan wrote (`ShardItem`).

Each handler validates its event once, at the edge, into one of these models, and the step logic works on
the model. A payload that does not fit raises `InvalidRunState`: the Task's Catch (States.ALL) sends it to
Cleanup like any other failure, and no Retry repeats it (it would fail the same way).

Extra keys: RunState and RunStart forbid them, since every key is one a step or Init wrote, so an unknown
key is a bug or a hand-made input. CleanupEvent ignores the keys of `$` it has no use for (Init's trigger),
so Cleanup runs whatever else an earlier failure left there. A field added later gets a default, so a run
that an older deployment started still validates.

Serialised with `to_event()`: JSON, unset (None) fields left out, so each step adds its keys to the payload
as the Step Functions console shows it, and `$.run.status` is where the ASL's Choice states read it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..domain import VersionPair
from ..errors import RagError
from ..ingest_fanout import IngestJob

RunStatus = Literal["RUNNING", "SKIPPED", "PASSED", "REJECTED", "SWAPPED"]


class InvalidRunState(RagError):
    """A step's event does not fit its model (a bug, a hand-made input, or a payload from an incompatible
    deployment)."""

    code = "invalid_run_state"


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Self:
        """The event as this model, validated; InvalidRunState (one line per field at fault) if it does not fit."""
        try:
            return cls.model_validate(event)
        except ValidationError as exc:
            faults = "; ".join(f"{'.'.join(map(str, e['loc'])) or '$'}: {e['msg']}" for e in exc.errors())
            raise InvalidRunState(f"{cls.__name__}: {faults}") from exc

    def to_event(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

    def evolve(self, **changes: Any) -> Self:
        """A copy with `changes`, validated like an event (model_copy would not validate them)."""
        return self.from_event({**self.model_dump(by_alias=True), **changes})


class RunStart(Payload):
    """Prepare's input: Init's output (the execution name is the run id)."""

    run_id: str = Field(min_length=1)
    trigger: str = "cli"


class RunCounts(Payload):
    """Prepare's counts. The split's counts are None when Prepare skipped before it split anything."""

    votes: int
    new_votes: int
    queries: int | None = None
    train_queries: int | None = None
    heldout_queries: int | None = None
    triplets: int | None = None
    hard_negatives: int | None = None
    mined_negatives: int | None = None  # of the hard negatives, those mined rather than voted 👎


class DirectWrites(Payload):
    """The index is a ports.PartWriter: Plan began the candidate version, each item writes its points there and
    a done marker as its part, and Assemble seals. What Assemble then needs to write the version's stats
    without reading the shards again: the corpus's documents, and why BM25 cannot rank it ("" when it can)."""

    docs: int
    dense_only: str = ""


class Fanout(Payload):
    """Plan's result: the embed fan-out's item list in S3 (the Map's ItemReader reads it) and its size."""

    items: str  # S3 key of a JSON array of ShardItem
    shards: int
    chunks: int
    started_at: float  # when Plan started: Assemble records the fan-out's duration as the embed step's
    direct: DirectWrites | None = None  # None: the items write vector parts, and Assemble builds from them


class ShardItem(Payload):
    """One element of the item list: one map item, as S3 keys (never chunk text)."""

    index: int
    shard: str  # the shard's chunks, JSON lines
    part: str  # where the item writes the shard's vectors (.npy)
    chunks: int


class RunState(Payload):
    """`$.run`: Prepare's result, passed on by Train, Embed, Smoke and Swap, each adding what it found."""

    run_id: str = Field(min_length=1)
    status: RunStatus
    live: VersionPair
    live_etag: str  # the manifest's ETag when Prepare read it: Swap's conditional write expects it
    counts: RunCounts
    prefix: str  # runs/<id>/: the run's data (train, held-out and repeated sets, the report)
    reason: str | None = None  # SKIPPED: why
    candidate: VersionPair | None = None  # None only when SKIPPED
    # Train: the step's summary, for people reading the console (no step reads it)
    training: dict[str, Any] | None = None
    fanout: Fanout | None = None  # Plan: the shards the Map embeds
    embedded: int | None = None  # Assemble: chunks in the shadow index
    # Smoke: the gate's reasons, candidate − live nDCG@10 per query set, the candidate's p99
    reasons: tuple[str, ...] | None = None
    deltas: dict[str, float] | None = None
    candidate_p99_ms: float | None = None

    @model_validator(mode="after")
    def _past_prepare_names_a_candidate(self) -> Self:
        if self.status != "SKIPPED" and self.candidate is None:
            raise ValueError(f"status {self.status} needs a candidate")
        return self

    @property
    def planned(self) -> Fanout:
        """Plan's fan-out, which the map items and Assemble read."""
        if self.fanout is None:
            raise InvalidRunState(f"run {self.run_id} ({self.status}) has no embed plan")
        return self.fanout

    @property
    def shadow(self) -> VersionPair:
        """The candidate pair, which every step after Prepare works on."""
        if self.candidate is None:
            raise InvalidRunState(f"run {self.run_id} ({self.status}) has no candidate")
        return self.candidate


class ShardTask(Payload):
    """A map item's input, made by the Map's ItemSelector: `$.run` and the item (`$$.Map.Item.Value`). In the
    ingest state machine (infra/ingest.asl.json) `$.run` is the ingest's job: the same Map embeds both."""

    run: RunState | IngestJob
    item: ShardItem


class StepError(Payload):
    """`$.error`: what a Catch put there. A Lambda error's Cause is JSON (errorType, errorMessage)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    error: str = Field(alias="Error")
    cause: str | None = Field(None, alias="Cause")


class CleanupEvent(Payload):
    """Cleanup's and Reject's input: `$` whole. No `run` when Prepare failed; no `error` for a rejection."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str = Field(min_length=1)
    run: RunState | None = None
    error: StepError | None = None


class RunOutcome(Payload):
    """What Cleanup returns (into `$.run`, read by no later state): the run's end and what it removed."""

    run_id: str
    status: Literal["FAILED", "REJECTED"]
    reason: str
    removed: tuple[str, ...] = ()
