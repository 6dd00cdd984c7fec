"""Serve-time feedback memory: votes count at once, before any tuning.

- `rules`: the vote rules, the matrix of voted queries of one encoder version, and the boosts it gives;
- `simhash`: finding the remembered queries near a question (a SimHash prefilter, then exact cosines);
- `vectors`: a query vector as logged with the query and its votes;
- `snapshot`: the .npz format a tune run ships beside a model (`dump_snapshot` / `load_snapshot`);
- `store`: where that snapshot lives in the artifact store, and reading it back through the port;
- `refresh`: the live memory of a serving process, kept current from the vote log.

numpy only: no SDK here (adapters/ holds the S3 and DynamoDB calls; the memory talks to the ports).
"""

from .refresh import LiveMemory, open_live_memory
from .rules import DAY_S, CountedVote, MemoryParams, MemoryVote, VoteMemory, build_memory, rerank
from .simhash import hamming_cutoff
from .snapshot import dump_snapshot, load_snapshot
from .store import MemorySnapshot, memory_key, oldest_vote, read_snapshot
from .vectors import pack_vector, unpack_vector

__all__ = [
    "DAY_S",
    "CountedVote",
    "LiveMemory",
    "MemoryParams",
    "MemorySnapshot",
    "MemoryVote",
    "VoteMemory",
    "build_memory",
    "dump_snapshot",
    "hamming_cutoff",
    "load_snapshot",
    "memory_key",
    "oldest_vote",
    "open_live_memory",
    "pack_vector",
    "read_snapshot",
    "rerank",
    "unpack_vector",
]
