"""Builds the pure stages from settings: the one place that knows which class serves which role."""

from __future__ import annotations

import os

from alerts.categories import load_policy
from pipelines.clustering import OnlineClusterer
from pipelines.embedding import CachedEmbedder, Embedder, HashingEmbedder, SentenceTransformerEmbedder
from pipelines.engine import Pipeline
from pipelines.errors import ConfigError
from pipelines.faithfulness import FaithfulnessScorer
from pipelines.labels import CategoryIndex
from services.datasets import load_seed_queries
from services.settings import Settings


def build_embedder(settings: Settings) -> Embedder:
    cfg = settings.embedding
    if cfg.backend == "sentence-transformers":
        # Weights come from the bundled package or a local path; never from a hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        inner: Embedder = SentenceTransformerEmbedder(cfg.model, cfg.batch_size, cfg.threads)
    elif cfg.backend in ("onnx", "onnx-int8"):
        # onnx (the default): the fp32 export, the same vectors as sentence-transformers, about 2.8x
        # faster. onnx-int8: cosine 0.999 to them. Both give bit-identical vectors whatever the batch
        # or thread count. The export is cached per user (not per data dir) unless onnx_cache_dir says.
        # `threads` single-threaded runs go at once (one batch each); unset: one per available core.
        from pipelines.embedding import OnnxEmbedder
        from services.onnx_model import default_cache_dir, onnx_model, tokenizer_file

        variant = "int8" if cfg.backend == "onnx-int8" else "fp32"
        cache = cfg.onnx_cache_dir or default_cache_dir()
        threads = cfg.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
        inner = OnnxEmbedder(onnx_model(cache, cfg.model, variant), tokenizer_file(cfg.model),
                             name=f"{cfg.model}-onnx-{variant}", batch_size=cfg.batch_size, threads=threads)
    elif cfg.backend == "hashing":
        inner = HashingEmbedder()
    else:
        raise ConfigError(f"embedding.backend {cfg.backend!r}: use sentence-transformers, onnx, onnx-int8 or hashing")
    return CachedEmbedder(inner, cfg.cache_size) if cfg.cache_size else inner


def build_pipeline(settings: Settings, embedder: Embedder | None = None, state: dict | None = None) -> Pipeline:
    """The pipeline the settings describe; restored from ``state`` (``Pipeline.to_state``) if given.

    A restored pipeline ignores ``seed_file`` (its clusters, or a pending seed, are in the state).
    Raises ``StateError`` when the state was written with another model or configuration.
    """
    embedder = embedder or build_embedder(settings)
    policy = load_policy(settings.categories_file)
    categories = CategoryIndex.build(policy, embedder, settings.cluster.category_threshold)
    if state is not None:
        return Pipeline.from_state(
            state, embedder=embedder, scorer=FaithfulnessScorer(embedder, settings.faithfulness), policy=policy,
            categories=categories, cluster_config=settings.cluster, baseline_config=settings.baseline,
            detect_config=settings.detect, seen_capacity=settings.replay.seen_capacity, input_config=settings.input)
    pipeline = Pipeline(
        embedder=embedder,
        scorer=FaithfulnessScorer(embedder, settings.faithfulness),
        policy=policy,
        clusterer=OnlineClusterer(settings.cluster, embedder.dim, categories),
        cluster_config=settings.cluster,
        baseline_config=settings.baseline,
        detect_config=settings.detect,
        seen_capacity=settings.replay.seen_capacity,
        input_config=settings.input,
    )
    if settings.seed_file is not None:
        pipeline.seed(load_seed_queries(settings.seed_file))
    return pipeline

