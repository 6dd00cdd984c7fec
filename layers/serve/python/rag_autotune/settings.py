"""The one settings model. Read once per process (`get_settings`); logic receives values, never os.environ."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore", frozen=True)

    # Where state lives. The endpoint is boto3's own AWS_ENDPOINT_URL: AWS, LocalStack and moto differ only there.
    bucket: str = "rag-autotune-artifacts"
    table: str = "rag-autotune-feedback"
    region: str = Field("us-east-1", validation_alias=AliasChoices("RAG_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"))
    qdrant_url: str | None = Field(None, validation_alias=AliasChoices("RAG_QDRANT_URL", "QDRANT_URL"))
    qdrant_api_key: str | None = Field(None, validation_alias=AliasChoices("RAG_QDRANT_API_KEY", "QDRANT_API_KEY"))
    qdrant_shards: int = Field(
        1, ge=1, le=1024, description="shard_number of each index version's collection on a Qdrant server/cluster"
    )
    qdrant_replication: int = Field(
        1, ge=1, le=16, description="replication_factor of each collection: copies of every shard across the nodes"
    )
    bedrock_model_id: str | None = Field(
        None, validation_alias=AliasChoices("RAG_BEDROCK_MODEL_ID", "BEDROCK_MODEL_ID")
    )
    cache_dir: Path = Path("/tmp/rag-autotune")
    state_dir: Path | None = Field(
        None,
        description="the embedded stack's saved state (None: .local/state in the repository); a running `up` "
        "announces its endpoint next to it, which is how CLI commands in other shells find it",
    )

    # Serving.
    warm_on_init: bool = Field(True, description="load the live pair while the Lambda initialises")
    manifest_ttl_s: float = Field(5.0, ge=0.0, description="how often a serving process re-checks the live pointer")
    onnx_threads: int = Field(1, ge=1, le=16, description="per query: one Lambda vCPU")
    embed_threads: int = Field(0, ge=0, le=64, description="bulk embedding (ingest, tune); 0 = all cores")
    max_seq_len: int = Field(256, ge=16, le=512)
    vote_window_days: int = Field(180, ge=1, description="how long after /ask its answer can be voted on")
    dedupe_window_s: int = Field(3600, ge=1)

    # Feedback memory (memory/): votes re-rank near-identical queries at once, before any tuning.
    memory_enabled: bool = Field(True, description="the off switch: False serves the plain retriever")
    memory_refresh_s: float = Field(
        10.0, ge=0.0, description="new votes are read at most this often, off the request path; 0: before every answer"
    )
    memory_threshold: float = Field(
        0.95, ge=-1.0, le=1.0, description="cosine to a voted query; a tune run ships its own tuned value"
    )
    memory_weight: float = Field(
        1.0,
        ge=0.0,
        description="spreads of the candidates' scores added per net vote × similarity; tuned per model too",
    )
    memory_half_life_days: float = Field(7.0, gt=0.0)
    memory_client_daily_cap: int = Field(3, ge=1, description="queries per voter per document per day that count")
    memory_max_penalty: float = Field(
        0.9, ge=0.0, description="a document is demoted by at most this many spreads of the candidates' scores"
    )
    memory_depth: int = Field(40, ge=1, le=200, description="chunks re-ranked when votes move documents for a query")
    memory_max_votes: int = Field(20000, ge=1, description="votes read per refresh")
    memory_max_age_days: float = Field(90.0, gt=0.0, description="votes older than this are not loaded")
    steering_enabled: bool = Field(
        False,
        description="votes on related questions steer the search (steering.py) when the model's fit shipped it "
        "enabled; off by default: see the README's figures",
    )

    # Optional reranking on AWS (Bedrock's Rerank API): off unless a model ARN is set, so nothing leaves the machine.
    rerank_model_arn: str | None = Field(
        None,
        pattern=r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]+::foundation-model/[A-Za-z0-9.:-]+$",
        description="e.g. arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0 or cohere.rerank-v3-5:0; "
        "the call goes to the ARN's region",
    )
    rerank_top_n: int = Field(
        20, ge=1, le=100, description="documents sent per question; up to 100 is billed as one rerank query"
    )
    rerank_timeout_s: float = Field(
        2.0, gt=0.0, le=20.0, description="read timeout of the one attempt; past it the unreranked order answers"
    )
    rerank_pause_s: float = Field(
        30.0, ge=0.0, description="after a throttle or timeout, questions skip reranking this long (reason: paused)"
    )

    # Hardening. On AWS, API Gateway enforces the key and throttles (usage plan); the app checks run there too.
    api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("RAG_AUTOTUNE_API_KEY", "RAG_API_KEY"),
        description="when set, /ask and /feedback require it in the x-api-key header",
    )
    max_body_bytes: int = Field(65536, ge=1024, description="larger request bodies get 413")
    feedback_rate_per_s: float = Field(
        5.0, ge=0.0, description="votes per second per client (API key, else source IP); 0 turns the limit off"
    )
    feedback_burst: int = Field(50, ge=1, description="votes a client may send at once before the rate applies")

    # Ingest.
    chunk_chars: int = Field(1200, ge=200)
    chunk_overlap: int = Field(150, ge=0)
    ingest_max_file_mb: float = Field(50.0, gt=0.0, description="a larger file (or fetched page) is refused")
    ingest_max_pdf_pages: int = Field(2000, ge=1, description="a PDF with more pages is skipped")
    ingest_max_text_mb: float = Field(
        20.0, gt=0.0, description="decompressed bytes one file may expand to (PDF streams, extracted text)"
    )
    ingest_max_seconds: float = Field(60.0, gt=0.0, description="a reader still busy after this skips the file")
    crawl_max_pages: int = Field(500, ge=1, description="pages one `ingest URL` fetches at most (--max-pages)")
    crawl_concurrency: int = Field(4, ge=1, le=32, description="requests in flight to the one host crawled")
    crawl_timeout_s: float = Field(20.0, gt=0.0)
    crawl_user_agent: str = "rag-autotune-crawler/0.1"
    docs_prefix: str = Field(
        "docs/", pattern=r"^[^/].*/$", description="auto-ingest: objects under this prefix of the bucket are the corpus"
    )
    ingest_retries: int = Field(
        3, ge=0, description="auto-ingest: how often a batch whose pointer write lost re-reads and applies again"
    )

    ingest_state_machine_arn: str | None = Field(
        None, description="the ingest fan-out's state machine; None: the one named rag-autotune-ingest"
    )
    ingest_fanout_chunks: int | None = Field(
        None,
        ge=0,
        description="an ingest that must embed more chunks than this fans them out through the ingest state "
        "machine (the tune's embed Map); None: one embed shard's worth (tune_embed_chunks_per_s × tune_embed_item_s)",
    )

    # Nightly tune (issue 3 reads these).
    state_machine_arn: str | None = None
    tune_min_feedback: int = Field(20, ge=1)
    tune_max_feedback: int = Field(20000, ge=1)
    tune_heldout_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    tune_margin: float = Field(0.0, description="held-out nDCG@10 must improve by at least this")
    tune_golden_tolerance: float = Field(0.01, ge=0.0)
    tune_tie_max_drop: float = Field(
        0.01,
        ge=0.0,
        description="a held-out nDCG@10 shortfall below the margin is a tie when within twice its standard error "
        "and at most this; a tie passes when the voted questions rose beyond their noise (tune/gate.py)",
    )
    tune_p99_ratio: float = Field(
        1.3, ge=1.0, description="the candidate's encode+search p99 over live's, both timed in turns in the smoke step"
    )
    tune_p99_budget_ms: float = Field(
        50.0, gt=0.0, description="absolute backstop for the candidate's p99; generous: the ratio is the real check"
    )
    tune_retention: int = Field(3, ge=2)
    tune_mined_negatives: int = Field(
        0,
        ge=0,
        description="mined hard negatives per training query: chunks the live model ranks above its 👍 chunk "
        "that nobody voted up (0: only the 👎 chunks)",
    )
    tune_train_budget_s: float | None = Field(
        None,
        gt=0.0,
        description="seconds the train step may spend up to the end of training; None: the invocation's "
        "remaining time (the train function's timeout in template.yaml, or the SageMaker job's stopping condition) "
        "minus tune.budget.TRAIN_RESERVE_S for merge, export, parity and upload",
    )
    tune_embed_chunks_per_s: float = Field(
        25.0,
        gt=0.0,
        description="chunks one embed function encodes per second (the bulk int8 encoder, as measured in the "
        "README); with tune_embed_item_s it sizes the tune's embed shards",
    )
    tune_embed_item_s: float = Field(
        180.0,
        gt=0.0,
        description="seconds of encoding each embed map item should take: minutes, well inside the function's timeout",
    )
    tune_train_grid: list[tuple[float, int]] = Field(
        default_factory=list,
        description="JSON list of [learning rate, epochs]: each is tried with the default on a fold of the train "
        "split, inside the training budget, and the best trains the candidate (tune/grid.py); [] trains the default",
    )
    tune_train_overrides: dict[str, Any] = Field(
        default_factory=dict, description="JSON object replacing fields of training.lora.TrainConfig"
    )

    @field_validator("tune_train_grid")
    @classmethod
    def _grid_points(cls, v: list[tuple[float, int]]) -> list[tuple[float, int]]:
        if any(lr <= 0 or epochs < 1 for lr, epochs in v):
            raise ValueError("each grid point is [learning rate > 0, epochs >= 1]")
        return v

    @field_validator("rerank_model_arn", mode="before")
    @classmethod
    def _empty_is_off(cls, v: object) -> object:
        return v or None  # the template passes its empty parameter through: reranking off


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
