"""In-memory implementations of the ports, for unit tests. The contract tests hold them to the same
assertions as the real adapters, so a green unit test means something."""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_autotune.chunking import embed_hash, embed_text
from rag_autotune.domain import Chunk, Found, Hit, RetrievalMode, Vote
from rag_autotune.errors import ArtifactNotFound, ConflictError, IncompleteVersion, InvalidInput
from rag_autotune.generate import STOP_WORDS
from rag_autotune.ports import Vectors
from rag_autotune.query_token import QueryTokens
from rag_autotune.retrieval import dense_fallback
from rag_autotune.steering import Steer, steered_matrix_scores

if TYPE_CHECKING:
    from rag_autotune.runtime import Runtime


# Signs and reads query ids as the API does; no expiry, so fixed test times never age out.
TOKENS = QueryTokens(b"query-token-key-of-the-unit-tests", max_age_s=math.inf)


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


class MemoryArtifactStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get_bytes(self, key: str) -> bytes:
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        try:
            data = self.objects[key]
        except KeyError:
            raise ArtifactNotFound(key) from None
        return data, _etag(data)

    def head_etag(self, key: str) -> str | None:
        data = self.objects.get(key)
        return None if data is None else _etag(data)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        self.objects[key] = bytes(data)
        return _etag(data)

    def put_if(self, key: str, data: bytes, expected_etag: str | None) -> str:
        with self._lock:
            current = self.head_etag(key)
            if current != expected_etag:
                raise ConflictError(f"{key}: expected {expected_etag}, found {current}")
            return self.put_bytes(key, data)

    def upload_file(self, key: str, path: Path) -> None:
        self.put_bytes(key, Path(path).read_bytes())

    def download_file(self, key: str, path: Path) -> None:
        data = self.get_bytes(key)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        for k in keys:
            del self.objects[k]
        return len(keys)


class GatedStore(MemoryArtifactStore):
    """The first `parties` manifest writes wait for each other: every ingest read the same manifest."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=30)
        self.gated = parties

    def put_if(self, key: str, data: bytes, expected_etag: str | None) -> str:
        if key == "manifest.json":
            with self._lock:
                wait, self.gated = self.gated > 0, self.gated - 1
            if wait:
                self.barrier.wait()
        return super().put_if(key, data, expected_etag)


class MemoryFeedbackStore:
    def __init__(self) -> None:
        self.vote_log: list[Vote] = []
        self.dedupe: dict[str, float] = {}
        self._lock = threading.Lock()

    def record_vote(self, vote: Vote, dedupe_key: str, window_s: int) -> bool:
        with self._lock:
            last = self.dedupe.get(dedupe_key)
            if last is not None and last > vote.created_at - window_s:
                return False
            self.dedupe[dedupe_key] = vote.created_at
            self.vote_log.append(vote)
            return True

    def votes(self, since: float | None = None, limit: int = 10_000) -> list[Vote]:
        picked = [v for v in self.vote_log if since is None or v.created_at > since]
        return sorted(picked, key=lambda v: v.created_at)[:limit]


def _terms(text: str) -> list[str]:
    return [w for w in re.findall(r"\w+", text.lower()) if w not in STOP_WORDS]


def _rrf(rankings: list[list[int]], k: int = 60) -> dict[int, float]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, i in enumerate(ranking, 1):
            fused[i] = fused.get(i, 0.0) + 1.0 / (k + rank)
    return fused


def _dbsf(scored: list[dict[int, float]]) -> dict[int, float]:
    """Each list's scores mapped from mean ± 3 std onto 0..1, then summed."""
    fused: dict[int, float] = {}
    for scores in scored:
        values = np.asarray(list(scores.values()), dtype=np.float64)
        lo, hi = values.mean() - 3 * values.std(), values.mean() + 3 * values.std()
        for i, v in scores.items():
            fused[i] = fused.get(i, 0.0) + (float(np.clip((v - lo) / (hi - lo), 0, 1)) if hi > lo else 0.5)
    return fused


class MemoryVectorIndex:
    """Brute-force cosine over numpy arrays; plain BM25 (whitespace words, a few stop words) and RRF/DBSF in
    Python for the hybrid mode."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[list[Chunk], Vectors]] = {}
        self.terms: dict[str, list[Counter[str]]] = {}  # version → each chunk's BM25 terms (sparse versions)
        self.published: str | None = None

    def build(
        self, version: str, dim: int, batches: Iterable[tuple[Sequence[Chunk], Vectors]], *, sparse: bool = True
    ) -> int:
        if version in self.data:
            raise ConflictError(f"{version} exists: versions are immutable")
        chunks: list[Chunk] = []
        vecs: list[Vectors] = []
        for batch_chunks, batch_vecs in batches:
            chunks.extend(batch_chunks)
            vecs.append(np.asarray(batch_vecs, dtype=np.float32).reshape(-1, dim))
        matrix = np.concatenate(vecs) if vecs else np.zeros((0, dim), dtype=np.float32)
        self.data[version] = (chunks, matrix)
        if sparse:
            self.terms[version] = [Counter(_terms(embed_text(c))) for c in chunks]
        return len(chunks)

    def has_sparse(self, version: str) -> bool:
        if version not in self.data:
            raise ArtifactNotFound(version)
        return version in self.terms

    def _bm25(self, version: str, words: list[str], limit: int) -> dict[int, float]:
        docs = self.terms[version]
        avg = sum(sum(d.values()) for d in docs) / max(len(docs), 1) or 1.0
        scores: dict[int, float] = {}
        for w in set(words):
            df = sum(1 for d in docs if w in d)
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            for i, d in enumerate(docs):
                if w in d:
                    tf = d[w]
                    scores[i] = scores.get(i, 0.0) + idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * sum(d.values()) / avg))
        return dict(sorted(scores.items(), key=lambda kv: -kv[1])[:limit])

    def query(
        self, version: str, vector: Vectors, text: str, limit: int, mode: RetrievalMode, steer: Steer | None = None
    ) -> Found:
        if version not in self.data:
            raise ArtifactNotFound(version)
        chunks, matrix = self.data[version]
        unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        dense_scores = (
            steered_matrix_scores(unit, vector, steer)
            if steer is not None
            else unit @ np.asarray(vector, dtype=np.float32).reshape(-1)
        )
        dense_hits = [Hit(chunks[i], float(dense_scores[i])) for i in np.argsort(-dense_scores)[:limit]]
        words = _terms(text)
        reason = dense_fallback(mode, version in self.terms, len(words))
        if mode == "dense" or reason:
            return Found(dense_hits, "dense", reason, steered=steer is not None)
        order = [int(i) for i in np.argsort(-dense_scores)[:limit]]
        sparse = self._bm25(version, words, limit)
        if mode == "hybrid-rrf":
            fused = _rrf([order, list(sparse)])
        else:
            fused = _dbsf(
                [{i: float(dense_scores[i]) for i in order}, sparse]
                if sparse
                else [{i: float(dense_scores[i]) for i in order}]
            )
        best = sorted(fused.items(), key=lambda kv: -kv[1])[:limit]
        return Found([Hit(chunks[i], s) for i, s in best], mode, steered=steer is not None)

    def chunk_vectors(self, version: str, chunk_ids: Collection[str]) -> dict[str, Vectors]:
        if version not in self.data:
            raise ArtifactNotFound(version)
        chunks, matrix = self.data[version]
        wanted = set(chunk_ids)
        return {c.chunk_id: matrix[i].copy() for i, c in enumerate(chunks) if c.chunk_id in wanted}

    def search(self, version: str, vector: Vectors, limit: int) -> list[Hit]:
        if version not in self.data:
            raise ArtifactNotFound(version)
        chunks, matrix = self.data[version]
        if not chunks:
            return []
        scores = matrix @ np.asarray(vector, dtype=np.float32).reshape(-1)
        order = np.argsort(-scores)[:limit]
        return [Hit(chunks[i], float(scores[i])) for i in order]

    def warm(self, version: str) -> None:
        if version not in self.data:
            raise ArtifactNotFound(version)

    def count(self, version: str) -> int:
        if version not in self.data:
            raise ArtifactNotFound(version)
        return len(self.data[version][0])

    def chunks(self, version: str) -> Iterator[Chunk]:
        if version not in self.data:
            raise ArtifactNotFound(version)
        return iter(list(self.data[version][0]))

    def vectors(self, version: str, hashes: Collection[str]) -> dict[str, Vectors]:
        if version not in self.data:
            raise ArtifactNotFound(version)
        chunks, matrix = self.data[version]
        wanted = set(hashes)
        return {h: matrix[i].copy() for i, c in enumerate(chunks) if (h := embed_hash(c)) in wanted}

    def versions(self) -> list[str]:
        return sorted(self.data)

    def delete(self, version: str) -> None:
        if version == self.published:
            raise ConflictError(f"{version} is published")
        self.data.pop(version, None)
        self.terms.pop(version, None)

    def publish(self, version: str) -> None:
        if version not in self.data:
            raise ArtifactNotFound(version)
        self.published = version


class MemoryPartIndex(MemoryVectorIndex):
    """The fake as a PartWriter, like a Qdrant server: unsealed versions are points by id until seal."""

    def __init__(self) -> None:
        super().__init__()
        self.unsealed: dict[str, tuple[int, bool, dict[int, tuple[Chunk, Vectors]]]] = {}

    def begin(self, version: str, dim: int, *, sparse: bool = True) -> None:
        if version in self.data:
            raise ConflictError(f"{version} exists: versions are immutable")
        if dim <= 0:
            raise InvalidInput(f"dim must be positive, got {dim}")
        self.unsealed[version] = (dim, sparse, {})

    def _open(self, version: str) -> tuple[int, bool, dict[int, tuple[Chunk, Vectors]]]:
        if version in self.data:
            raise ConflictError(f"{version} is sealed")
        if version not in self.unsealed:
            raise ArtifactNotFound(f"{version} was not begun")
        return self.unsealed[version]

    def write_part(self, version: str, offset: int, chunks: Sequence[Chunk], vectors: Vectors) -> int:
        dim, _, points = self._open(version)
        rows = np.asarray(vectors, dtype=np.float32).reshape(len(chunks), -1)
        if rows.shape != (len(chunks), dim):
            raise InvalidInput(f"{len(chunks)} chunks with vectors of shape {rows.shape}, want dim {dim}")
        points.update({offset + i: (c, rows[i]) for i, c in enumerate(chunks)})
        return len(chunks)

    def seal(self, version: str, points: int) -> int:
        dim, sparse, written = self._open(version)
        if len(written) != points:
            raise IncompleteVersion(f"{version} holds {len(written)} points, expected {points}")
        ordered = [written[i] for i in sorted(written)]
        del self.unsealed[version]
        return self.build(version, dim, [([c for c, _ in ordered], np.array([v for _, v in ordered]))], sparse=sparse)

    def delete(self, version: str) -> None:
        super().delete(version)
        self.unsealed.pop(version, None)


class HashEncoder:
    """Deterministic bag-of-words hashing encoder: shared words → higher cosine. Fast stand-in for ONNX."""

    def __init__(self, version: str = "v0", dim: int = 64) -> None:
        self._version = version
        self._dim = dim

    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                h = int(hashlib.blake2b(word.strip(".,;:()[]").encode(), digest_size=4).hexdigest(), 16)
                out[row, h % self._dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


def fake_runtime(folder: Path, doc: dict[str, str], **settings: Any) -> Runtime:
    """A Runtime whose four ports are the fakes above (HashEncoder for every version), with `doc` ingested."""
    import json

    from rag_autotune.ingest import ingest
    from rag_autotune.runtime import Runtime
    from rag_autotune.settings import Settings

    rt = Runtime(Settings(cache_dir=folder, **settings))
    rt.store = MemoryArtifactStore()  # type: ignore[misc]
    rt.index = MemoryVectorIndex()  # type: ignore[misc]
    rt.feedback = MemoryFeedbackStore()  # type: ignore[misc]
    rt.load_encoder = lambda v: HashEncoder(v)  # type: ignore[method-assign]
    rt.store.put_bytes("models/v0/meta.json", b"{}")
    corpus = folder / "c.jsonl"
    corpus.write_text(json.dumps(doc) + "\n")
    ingest(corpus, store=rt.store, index=rt.index, load_encoder=rt.load_encoder)
    return rt


class FakeLauncher:
    """tune/launch.Launcher without Step Functions: `start` hands the run id to `on_start` (a test writes the
    records a workflow would), `status` answers `self.state` ("RUNNING" until the test sets another)."""

    def __init__(self, on_start: Any = None) -> None:
        self.on_start = on_start
        self.state = "RUNNING"
        self.started: list[tuple[str, str]] = []

    def start(self, run_id: str, trigger: str = "cli") -> str:
        self.started.append((run_id, trigger))
        if self.on_start is not None:
            self.on_start(run_id)
        return f"arn:aws:states:us-east-1:123456789012:execution:tune:{run_id}"

    def status(self, execution_arn: str) -> str:
        return self.state


class InlineWorkflows:
    """Workflows (the ingest state machine) run in this process at `describe`: every map item through the
    same embed entry point the Map calls (tune.fanout.embed_shard), then AssembleIngest; any error → Cleanup
    and FAILED with the error's class name, as the ASL's Catch and Fail report it. `fail_item` raises in that
    item (after it wrote half a part); `hold` keeps every execution RUNNING."""

    def __init__(self, store: Any, index: Any, load_encoder: Any, fail_item: int | None = None) -> None:
        self.store, self.index, self.load_encoder, self.fail_item = store, index, load_encoder, fail_item
        self.started: list[str] = []
        self.hold = False
        self._payloads: dict[str, dict[str, Any]] = {}
        self._done: dict[str, Any] = {}

    def start(self, name: str, payload: Any) -> str:
        if name in self._payloads:
            raise ConflictError(f"execution {name} already exists")
        self._payloads[name] = dict(payload)
        self.started.append(name)
        return f"arn:fake:execution:{name}"

    def describe(self, execution: str) -> Any:
        from rag_autotune.domain import Execution

        name = execution.rsplit(":", 1)[-1]
        if name not in self._payloads:
            raise ArtifactNotFound(execution)
        if self.hold:
            return Execution("RUNNING")
        if name not in self._done:
            self._done[name] = self._run(self._payloads[name])
        return self._done[name]

    def _run(self, payload: dict[str, Any]) -> Any:
        import json

        from rag_autotune.domain import Execution
        from rag_autotune.ingest_fanout import IngestJob, assemble_job, cleanup_job
        from rag_autotune.tune import fanout
        from rag_autotune.tune.state import ShardTask

        job = IngestJob.from_event(payload["run"])
        try:
            for item in json.loads(self.store.get_bytes(job.fanout.items)):
                if item["index"] == self.fail_item:
                    self.store.put_bytes(item["part"], b"half a part")
                    raise ConflictError(f"shard {item['index']} failed")
                task = ShardTask.from_event({"run": payload["run"], "item": item})
                fanout.embed_shard(task, store=self.store, load_encoder=self.load_encoder, now=lambda: 0.0)
            return Execution("SUCCEEDED", output=assemble_job(job, store=self.store, index=self.index))
        except Exception as exc:
            cause = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)})
            error = {"Error": type(exc).__name__, "Cause": cause}
            failed = cleanup_job(job, error, store=self.store, index=self.index)
            return Execution("FAILED", error=failed["error"], cause=failed["cause"])
