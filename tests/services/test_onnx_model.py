"""The ONNX backend: exported once, cached, and the same vectors as sentence-transformers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import EmbeddingConfig
from pipelines.embedding import OnnxEmbedder, SentenceTransformerEmbedder
from services import onnx_model
from services.datasets import load_banking77
from services.settings import Settings
from services.wiring import build_embedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    by_intent = load_banking77("test")
    out = [q for qs in by_intent.values() for q in qs[:3]][:200]
    return out + ["", "a " * 400, "What's the exchange rate for a €1,250.50 transfer to my 2nd account?"]


def test_export_is_cached_and_a_second_build_does_not_export_again(cache: Path):
    before = onnx_model.exports
    first = onnx_model.onnx_model(cache, "all-MiniLM-L6-v2", "fp32")
    assert first.is_file() and first.suffix == ".onnx"
    assert onnx_model.exports == before + 1
    mtime = first.stat().st_mtime_ns
    settings = Settings(data_dir=cache.parent, embedding={"backend": "onnx", "onnx_cache_dir": cache})
    e = build_embedder(settings)
    assert onnx_model.exports == before + 1  # reused, not exported again
    assert first.stat().st_mtime_ns == mtime
    assert e.encode(["card arrived?"]).shape == (1, 384)
    assert not list(first.parent.glob("*.tmp"))  # no temporary file left behind


def test_onnx_fp32_agrees_with_sentence_transformers(cache: Path, texts: list[str]):
    e = OnnxEmbedder(onnx_model.onnx_model(cache), onnx_model.tokenizer_file(), threads=2)
    ref = SentenceTransformerEmbedder(threads=2).encode(texts)
    got = e.encode(texts)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * ref).sum(axis=1)
    assert cos.min() >= 0.99, cos.min()


def test_onnx_fp32_vectors_do_not_depend_on_batch_or_threads(cache: Path, texts: list[str]):
    path = onnx_model.onnx_model(cache)
    batched = OnnxEmbedder(path, onnx_model.tokenizer_file(), threads=2, batch_size=64).encode(texts)
    alone = OnnxEmbedder(path, onnx_model.tokenizer_file(), threads=1, batch_size=1)
    singles = np.concatenate([alone.encode([t]) for t in texts[:80]] + [alone.encode(texts[80:])])
    assert np.array_equal(batched, singles)


def test_int8_agrees_and_does_not_depend_on_batch_or_threads(cache: Path, texts: list[str]):
    before = onnx_model.exports
    path = onnx_model.onnx_model(cache, variant="int8")
    assert onnx_model.onnx_model(cache, variant="int8") == path
    assert onnx_model.exports <= before + 2  # fp32 (if not there yet) and int8, each once
    ref = SentenceTransformerEmbedder(threads=2).encode(texts)
    batched = OnnxEmbedder(path, onnx_model.tokenizer_file(), threads=2, batch_size=64).encode(texts)
    cos = (batched * ref).sum(axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.98, (cos.mean(), cos.min())
    alone = OnnxEmbedder(path, onnx_model.tokenizer_file(), threads=1, batch_size=1)
    assert np.array_equal(batched[:40], np.concatenate([alone.encode([t]) for t in texts[:40]]))
    assert np.array_equal(batched, alone.encode(texts))


def test_int8_products_are_u8_by_u8_so_no_cpu_saturates_them(cache: Path):
    """u8 x s8 MatMulInteger saturates in int16 on x86 CPUs without VNNI (the accuracy test above only
    fails there): every integer product must be u8 x u8, weights shifted by 128 with zero point 128."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(onnx_model.onnx_model(cache, variant="int8")))
    init = {i.name: i for i in model.graph.initializer}
    mms = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
    assert len(mms) == 36
    for n in mms:
        assert init[n.input[1]].data_type == TensorProto.UINT8, n.name
        assert n.input[2] == ""  # per-token activation zero point: subtracted after the product
        assert np.all(numpy_helper.to_array(init[n.input[3]]) == 128), n.name


def test_unknown_backend_and_variant_are_config_errors(cache: Path):
    from pipelines.errors import ConfigError

    with pytest.raises(ConfigError, match="onnx-int8"):
        build_embedder(Settings(embedding={"backend": "onnx-int4"}))
    with pytest.raises(ConfigError, match="variant"):
        onnx_model.onnx_model(cache, variant="int4")


def test_default_cache_is_per_user_and_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_model.default_cache_dir() == tmp_path / "xdg" / "faithwatch" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/not/allowed")
    assert onnx_model.default_cache_dir() == Path.home() / ".cache" / "faithwatch" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert onnx_model.default_cache_dir() == Path.home() / ".cache" / "faithwatch" / "models"


def test_default_backend_is_onnx_fp32_cached_outside_the_data_dir(tmp_path: Path):
    assert EmbeddingConfig().backend == "onnx"
    e = build_embedder(Settings(data_dir=tmp_path / "data"))
    assert e.name == "all-MiniLM-L6-v2-onnx-fp32"
    assert e.inner.model_file.is_relative_to(onnx_model.default_cache_dir())
    assert not (tmp_path / "data").exists()  # nothing written under the data dir
    # an explicit onnx_cache_dir still wins
    other = build_embedder(Settings(data_dir=tmp_path / "data",
                                    embedding={"onnx_cache_dir": e.inner.model_file.parents[1]}))
    assert other.inner.model_file == e.inner.model_file


def test_onnx_fp32_gives_the_same_fixed_cluster_decisions_as_torch(cache: Path):
    """One cluster model (KMeans, true k) fitted on torch vectors: every query lands the same way."""
    from sklearn.cluster import KMeans

    by_intent = load_banking77("test")
    texts = [q for qs in list(by_intent.values())[:20] for q in qs[:15]]
    ref = SentenceTransformerEmbedder(threads=2).encode(texts)
    got = OnnxEmbedder(onnx_model.onnx_model(cache), onnx_model.tokenizer_file(), threads=2).encode(texts)
    centres = KMeans(n_clusters=20, n_init=1, random_state=0).fit(ref).cluster_centers_
    assert np.array_equal((ref @ centres.T).argmax(axis=1), (got @ centres.T).argmax(axis=1))
    assert np.abs(got - ref).max() < 1e-5


def test_parallel_runs_give_the_vectors_of_one_run_at_a_time(cache: Path, texts: list[str]):
    from concurrent.futures import ThreadPoolExecutor

    path, tok = onnx_model.onnx_model(cache), onnx_model.tokenizer_file()
    runs = OnnxEmbedder(path, tok, threads=3, batch_size=16)  # 3 single-threaded runs at once
    assert runs.workers == 3
    intra = OnnxEmbedder(path, tok, threads=2, batch_size=16, parallel_runs=False)  # one 2-thread run at a time
    assert intra.workers == 1
    expected = intra.encode(texts)
    assert np.array_equal(runs.encode(texts), expected)
    assert np.array_equal(runs.encode(texts[:2]), expected[:2])  # fewer texts than workers
    # two callers at once share the session and the run pool
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(runs.encode, [texts, texts[::-1]])
    assert np.array_equal(a, expected) and np.array_equal(b, expected[::-1])


def test_default_threads_are_the_available_cores(cache: Path):
    e = build_embedder(Settings(data_dir=cache.parent, embedding={"onnx_cache_dir": cache, "cache_size": 0}))
    assert e.workers == len(os.sched_getaffinity(0))
