"""An on-disk embedding cache for the benchmarks: each text is embedded once per model, ever.

The clustering and faithfulness benchmarks embed tens of thousands of texts with the real model;
re-running them (or their ``--quick`` smoke tests) should not pay for that again. Vectors live in
``.faithwatch/bench-cache/<model>-<benchmark>.npz`` (git-ignored) as a text list plus a float32 matrix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.embedding import SentenceTransformerEmbedder

CACHE_DIR = Path(__file__).resolve().parents[1] / ".faithwatch" / "bench-cache"


class DiskCachedEmbedder:
    """Wraps an embedder; texts seen before (in this run or an earlier one) are not re-encoded."""

    def __init__(self, tag: str, inner=None, path: Path | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.inner = inner or SentenceTransformerEmbedder()
        self.name = self.inner.name
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)
        # One file per benchmark (``tag``), so two benchmarks running at once never share one.
        self.path = path or CACHE_DIR / f"{safe}-{tag}.npz"
        self._index: dict[str, int] = {}
        self._rows: list[np.ndarray] = []
        self._dirty = False
        self.encoded = 0  # texts this process had to run through the model
        if self.path.is_file():
            with np.load(self.path, allow_pickle=False) as z:
                texts, vectors = z["texts"].tolist(), z["vectors"]
            self._index = {t: i for i, t in enumerate(texts)}
            self._rows = list(vectors)

    @property
    def dim(self) -> int:
        return len(self._rows[0]) if self._rows else self.inner.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._index]
        if missing:
            vectors = self.inner.encode(missing)
            for t, v in zip(missing, vectors, strict=True):
                self._index[t] = len(self._rows)
                self._rows.append(np.asarray(v, dtype=np.float32))
            self.encoded += len(missing)
            self._dirty = True
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._rows[self._index[t]] for t in texts])

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        texts = np.array(list(self._index), dtype=str)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, texts=texts, vectors=np.stack(self._rows))
        tmp.replace(self.path)
        self._dirty = False
