"""RAG-Autotune: retrieval-augmented answers whose retriever tunes itself on user votes."""

__version__ = "0.1.0"
