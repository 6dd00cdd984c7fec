"""Wiring: settings → adapters → the objects logic receives. Built once per process (module scope in the
handlers); tests build their own with fakes. This is the one place that picks an adapter per setting."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CorruptArtifact
from .generate import ExtractiveGenerator, Generator
from .live import LiveState
from .memory import LiveMemory, MemoryParams, MemorySnapshot, open_live_memory, read_snapshot
from .ports import ArtifactStore, Encoder, FeedbackStore, VectorIndex, Workflows
from .query_token import QueryTokens, load_key
from .reranking import IdentityReranker, RerankStep
from .settings import Settings
from .versions import model_prefix

if TYPE_CHECKING:
    from .adapters.stepfunctions import TuneLauncher
    from .ingest_fanout import FanoutRunner

MODEL_FILES = ("model.onnx", "tokenizer.json", "meta.json")


def fetch_model(store: ArtifactStore, version: str, cache_dir: Path) -> Path:
    """Download models/<version>/ into cache_dir once; a half download is never mistaken for a model."""
    target = cache_dir / "models" / version
    if all((target / f).exists() for f in MODEL_FILES):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{version}-"))
    try:
        for name in MODEL_FILES:
            store.download_file(model_prefix(version) + name, tmp / name)
        verify_model(tmp, version)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model(folder: Path, version: str) -> None:
    """meta.json (written last) names the sha256 of model.onnx: a model damaged in storage is refused here,
    before any session is built from it."""
    try:
        expected = json.loads((folder / "meta.json").read_text()).get("sha256")
    except ValueError as exc:
        raise CorruptArtifact(f"model {version}: meta.json is not JSON") from exc
    if expected and file_sha256(folder / "model.onnx") != expected:
        raise CorruptArtifact(f"model {version}: model.onnx does not match the sha256 in meta.json")


@dataclass
class Runtime:
    settings: Settings
    # memory snapshots read by prefetch_memory (beside the encoder's load), taken by load_memory
    _snapshots: dict[str, MemorySnapshot] = field(default_factory=dict, init=False, repr=False)

    @cached_property
    def store(self) -> ArtifactStore:
        from .adapters.aws import make_client
        from .adapters.s3 import S3ArtifactStore

        return S3ArtifactStore(make_client("s3", self.settings.region), self.settings.bucket)

    @cached_property
    def feedback(self) -> FeedbackStore:
        from .adapters.aws import make_client
        from .adapters.dynamodb import DynamoFeedbackStore

        return DynamoFeedbackStore(make_client("dynamodb", self.settings.region), self.settings.table)

    @cached_property
    def query_tokens(self) -> QueryTokens:
        """Signs /ask's query ids and checks /feedback's; the key is read (or created) once per process."""
        return QueryTokens(load_key(self.store), max_age_s=self.settings.vote_window_days * 86400)

    @cached_property
    def index(self) -> VectorIndex:
        s = self.settings
        if s.qdrant_url:
            from .adapters.qdrant_server import ServerVectorIndex

            return ServerVectorIndex.connect(
                s.qdrant_url, s.qdrant_api_key, shards=s.qdrant_shards, replication=s.qdrant_replication
            )
        from .adapters.qdrant_edge import EdgeVectorIndex

        return EdgeVectorIndex(self.store, self.settings.cache_dir / "shards")

    def load_encoder(self, version: str) -> Encoder:
        """The serving encoder: one query at a time on onnx_threads threads."""
        return self._encoder(version, threads=self.settings.onnx_threads, workers=1)

    def load_bulk_encoder(self, version: str) -> Encoder:
        """For ingest and the tune's re-embed: one sequence per core at a time."""
        return self._encoder(version, threads=1, workers=self.settings.embed_threads or os.cpu_count() or 1)

    def _encoder(self, version: str, threads: int, workers: int) -> Encoder:
        from .adapters.onnx_encoder import OnnxEncoder

        path = fetch_model(self.store, version, self.settings.cache_dir)
        return OnnxEncoder(path, version, threads=threads, max_seq_len=self.settings.max_seq_len, workers=workers)

    @cached_property
    def generator(self) -> Generator:
        if self.settings.bedrock_model_id:
            from .adapters.aws import make_client
            from .adapters.bedrock import BedrockGenerator

            return BedrockGenerator(
                make_client("bedrock-runtime", self.settings.region), self.settings.bedrock_model_id
            )
        return ExtractiveGenerator()

    @cached_property
    def reranking(self) -> RerankStep:
        """Bedrock's Rerank API when RAG_RERANK_MODEL_ARN is set, else the identity (nothing leaves the machine)."""
        s = self.settings
        if not s.rerank_model_arn:
            return RerankStep(IdentityReranker(), s.rerank_top_n, pause_s=s.rerank_pause_s)
        from .adapters.aws import new_client
        from .adapters.bedrock_rerank import BedrockReranker, region_of, rerank_config

        client = new_client("bedrock-agent-runtime", region_of(s.rerank_model_arn), rerank_config(s.rerank_timeout_s))
        return RerankStep(BedrockReranker(client, s.rerank_model_arn), s.rerank_top_n, pause_s=s.rerank_pause_s)

    @cached_property
    def launcher(self) -> TuneLauncher:
        from .adapters.aws import make_client
        from .adapters.stepfunctions import TuneLauncher

        return TuneLauncher(make_client("stepfunctions", self.settings.region), self.settings.state_machine_arn)

    @cached_property
    def workflows(self) -> Workflows:
        """The ingest fan-out's state machine."""
        from .adapters.aws import make_client
        from .adapters.stepfunctions import StepFunctionsWorkflows

        client = make_client("stepfunctions", self.settings.region)
        return StepFunctionsWorkflows(client, self.settings.ingest_state_machine_arn)

    def ingest_fan_out(
        self, progress: Callable[[int, int], None] | None = None, wait_s: float | None = None
    ) -> FanoutRunner:
        """A large ingest's embedding through the ingest state machine, in shards the size of the tune's."""
        from .embed_parts import shard_chunks
        from .ingest_fanout import FanoutRunner

        s, size = self.settings, shard_chunks(self.settings)
        above = size if s.ingest_fanout_chunks is None else s.ingest_fanout_chunks
        return FanoutRunner(self.workflows, self.store, size=size, above=above, wait_s=wait_s, progress=progress)

    @cached_property
    def live(self) -> LiveState:
        return LiveState(
            self.store,
            self.index,
            self.load_encoder,
            ttl_s=self.settings.manifest_ttl_s,
            load_memory=self.load_memory,
            prefetch_memory=self.prefetch_memory,
        )

    def prefetch_memory(self, version: str) -> None:
        """Read the version's memory snapshot and build the DynamoDB client while the encoder loads."""
        s = self.settings
        if s.memory_enabled:
            params = MemoryParams.from_settings(s)
            self._snapshots[version] = read_snapshot(self.store, version, params, max_age_days=s.memory_max_age_days)
            _ = self.feedback

    def load_memory(self, encoder: Encoder) -> LiveMemory | None:
        """The feedback memory of the encoder's version (None when RAG_MEMORY_ENABLED is false). LiveState keeps
        it beside its encoder, for the live model and the one before it, so a rollback is instant."""
        s = self.settings
        if not s.memory_enabled:
            return None
        return open_live_memory(
            self.store,
            self.feedback,
            encoder,
            MemoryParams.from_settings(s),
            snapshot=self._snapshots.pop(encoder.version, None),
            refresh_s=s.memory_refresh_s,
            depth=s.memory_depth,
            max_votes=s.memory_max_votes,
            max_age_days=s.memory_max_age_days,
            background=s.memory_refresh_s > 0,  # 0 asks for every request to read the new votes first
            chunk_vectors=self.index.chunk_vectors,
            steering=s.steering_enabled,
        )
