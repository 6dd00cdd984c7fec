"""One set of assertions, every Reranker: the identity (reranking off) and Bedrock's Rerank API, the latter
through a real boto3 client answered by tests/rerank_service.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from rag_autotune.adapters.bedrock_rerank import BedrockReranker, rerank_config
from rag_autotune.ports import Reranker
from rag_autotune.reranking import IdentityReranker
from tests.rerank_service import MODEL_ARN, RerankService, rerank_client


def _identity() -> Iterator[Reranker]:
    yield IdentityReranker()


def _bedrock() -> Iterator[Reranker]:
    client = rerank_client(rerank_config(2.0))
    with RerankService(client):
        yield BedrockReranker(client, MODEL_ARN)


FACTORIES: dict[str, Callable[[], Iterator[Reranker]]] = {"identity": _identity, "bedrock": _bedrock}

DOCS = [
    "pipe(2)\npipe creates a pipe, a unidirectional data channel",
    "open(2)\nopen and possibly create a file",
    "malloc(3)\nallocate and free dynamic memory",
    "fork(2)\ncreate a child process",
    "pipe(7)\noverview of pipes and FIFOs",
]


@pytest.fixture(params=sorted(FACTORIES))
def reranker(request: pytest.FixtureRequest) -> Iterator[Reranker]:
    yield from FACTORIES[request.param]()


def _check(order: list[tuple[int, float]], n: int) -> None:
    assert sorted(i for i, _ in order) == list(range(n))  # every document once: nothing dropped, nothing added
    scores = [s for _, s in order]
    assert all(isinstance(s, float) for s in scores)
    assert scores == sorted(scores, reverse=True)  # most relevant first


def test_every_document_comes_back_once_most_relevant_first(reranker: Reranker) -> None:
    _check(reranker.rerank("how do I make a pipe", DOCS), len(DOCS))


def test_no_documents_no_order(reranker: Reranker) -> None:
    assert reranker.rerank("anything", []) == []


def test_one_document(reranker: Reranker) -> None:
    _check(reranker.rerank("pipe", DOCS[:1]), 1)


def test_deterministic(reranker: Reranker) -> None:
    assert reranker.rerank("create a file", DOCS) == reranker.rerank("create a file", list(DOCS))


def test_duplicates_blank_and_overlong_documents(reranker: Reranker) -> None:
    """What a corpus can hold: two equal chunks, an empty text, one longer than the API takes."""
    docs = [DOCS[0], DOCS[0], "", "pipe " * 10_000]
    _check(reranker.rerank("pipe", docs), len(docs))


def test_model_names_the_ranker(reranker: Reranker) -> None:
    model = reranker.model
    assert model is None or (isinstance(model, str) and model)
