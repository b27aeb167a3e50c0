"""The bundled sentence-transformers model exported to ONNX, once, cached on disk.

``onnx_model(cache_dir, model, variant)`` returns the path of an ONNX file holding the model's
transformer (input_ids, attention_mask, token_type_ids -> last_hidden_state); pooling and
normalisation are :class:`pipelines.embedding.OnnxEmbedder`'s. The file lives under
``cache_dir / <model>-<key>/<variant>.onnx`` (``cache_dir`` defaults to :func:`default_cache_dir`, one
per user, so every data dir and test run reuses one export) where the key hashes the weights file and the
torch/transformers/onnx/onnxruntime versions, so an upgrade exports again instead of reusing a
stale graph. The export writes to a temporary name and renames it into place (atomic): two
processes exporting at once both end with a complete file.

Variants: ``fp32`` (the exported graph as is) and ``int8`` (int8 weights per output channel,
activations quantized per token row so that vectors do not depend on the batch, integer products
computed u8 x u8 so that no CPU saturates them; see :func:`_quantize` and docs/embedding_backends.md).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import re
import tempfile
import warnings
from pathlib import Path

from pipelines.embedding import bundled_model_path
from pipelines.errors import ConfigError

log = logging.getLogger("faithwatch.onnx")

VARIANTS = ("fp32", "int8")
OPSET = 17
# Bump when the export or quantization recipe changes: the cache key changes with it.
# 3: int8 weights stored as uint8 with zero point 128 (u8 x u8 MatMulInteger, see per_token_activations).
RECIPE = 3
# How many exports this process ran (tests check a second build reuses the cache).
exports = 0


def default_cache_dir() -> Path:
    """Per user, shared by every data dir and test run: ``$XDG_CACHE_HOME/faithwatch/models``
    (``~/.cache/faithwatch/models`` when XDG_CACHE_HOME is unset or not absolute)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "faithwatch" / "models"


def model_dir(model: str) -> Path:
    if model in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return bundled_model_path()
    path = Path(model)
    if not path.is_dir():
        raise ConfigError(f"embedding.model {model!r}: not the bundled model and not a local directory")
    return path


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def cache_key(model: str) -> str:
    """Model name, weights (name, size, first and last MiB hashed) and exporter versions."""
    src = model_dir(model)
    h = hashlib.sha256()
    for w in sorted(src.glob("*.safetensors")) + sorted(src.glob("*.bin")) + [src / "tokenizer.json"]:
        if w.is_file():
            size = w.stat().st_size
            h.update(f"{w.name}:{size}".encode())
            with w.open("rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                h.update(fh.read(1 << 20))
    for pkg in ("torch", "transformers", "onnx", "onnxruntime"):
        h.update(f"{pkg}={_version(pkg)}".encode())
    h.update(f"opset={OPSET} recipe={RECIPE}".encode())
    return h.hexdigest()[:16]


def onnx_model(cache_dir: Path, model: str = "all-MiniLM-L6-v2", variant: str = "fp32") -> Path:
    """The cached ONNX file for ``model`` and ``variant``; exported (and quantized) on first use."""
    if variant not in VARIANTS:
        raise ConfigError(f"ONNX variant {variant!r}: use one of {', '.join(VARIANTS)}")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(model).name)
    folder = Path(cache_dir) / f"{safe}-{cache_key(model)}"
    target = folder / f"{variant}.onnx"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    if variant == "fp32":
        _atomic(target, lambda tmp: _export(model_dir(model), tmp))
    else:
        fp32 = onnx_model(cache_dir, model, "fp32")
        _atomic(target, lambda tmp: _quantize(fp32, tmp))
    return target


def tokenizer_file(model: str = "all-MiniLM-L6-v2") -> Path:
    return model_dir(model) / "tokenizer.json"


def _atomic(target: Path, write) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".onnx.tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _export(src: Path, out: Path) -> None:
    global exports
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    log.info("exporting %s to ONNX (once; cached at %s)", src, out.parent)
    st = SentenceTransformer(str(src), device="cpu")
    bert = st[0].auto_model.eval()

    class Wrap(torch.nn.Module):
        # transformers 5 BertModel cannot be called positionally by the exporter ("multiple values
        # for argument 'use_cache'"): name the three inputs.
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    enc = st.tokenizer(["hello world", "what is the exchange rate today?"], padding=True, return_tensors="pt")
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about advanced indexing: not our inputs
        torch.onnx.export(Wrap(bert).eval(), (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]),
                          str(out), input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                        "last_hidden_state": axes},
                          opset_version=OPSET, dynamo=False)
    exports += 1


def _quantize(fp32: Path, out: Path) -> None:
    """int8 weights (per output channel) and int8 activations quantized per token row.

    ``quantize_dynamic`` alone computes one activation scale over the whole batch tensor, so a
    text's vector would depend on its batch neighbours (up to 0.03 per coordinate) and incidents on
    the batch size. Each ``DynamicQuantizeLinear`` is therefore replaced by a per-row (per-token)
    quantization: scale and zero point from that row's own min and max. ``MatMulInteger`` takes no
    per-row zero point for 3-D inputs, so it runs without one and ``zero_point * column sums of W``
    is subtracted after it (exact: integer sums). Measured on 640 BANKING77 queries: mean cosine to
    fp32 0.9990 (min 0.9974; per-tensor activations: 0.9937), bit-identical alone or in a batch.

    The weights are then stored as uint8 (``w + 128``, zero point 128), so every ``MatMulInteger`` is
    u8 x u8 and computes the same integers as u8 x s8 would. u8 x s8 is not exact on x86 CPUs without
    VNNI (AVX2, AVX-512 without VNNI): onnxruntime's kernel adds pairs of u8*s8 products in int16
    (``vpmaddubsw``), which saturates once activations use the whole 0..255 range, as per-token
    quantization makes them do on every row. On an AVX2-only EPYC that took the mean cosine to torch
    from 0.999 to 0.950 (min 0.874) with every onnxruntime from 1.30 to 1.32; u8 x u8 is exact there.
    """
    global exports
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.info("quantizing %s to int8", fp32)
    dyn = out.with_name(out.name + ".dyn")
    try:
        quantize_dynamic(str(fp32), str(dyn), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
        model = onnx.load(str(dyn))
    finally:
        dyn.unlink(missing_ok=True)
    per_token_activations(model)
    onnx.save(model, str(out))
    exports += 1


def per_token_activations(model) -> None:
    """Rewrite a ``quantize_dynamic`` graph in place: one activation scale per row, not per tensor."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    init = {i.name: i for i in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    g.initializer.extend([numpy_helper.from_array(np.array(v, np.float32), name) for name, v in
                          (("pt_zero", 0.0), ("pt_255", 255.0), ("pt_eps", 1e-8))])
    unsigned: set[str] = set()  # weights already moved to uint8
    nodes = []
    for n in list(g.node):
        if n.op_type != "DynamicQuantizeLinear":
            nodes.append(n)
            continue
        x, (xq, xs, _) = n.input[0], n.output
        p = n.name + "_pt"
        nodes += [
            helper.make_node("ReduceMax", [x], [p + "max"], axes=[-1], keepdims=1),
            helper.make_node("ReduceMin", [x], [p + "min"], axes=[-1], keepdims=1),
            helper.make_node("Max", [p + "max", "pt_zero"], [p + "max0"]),
            helper.make_node("Min", [p + "min", "pt_zero"], [p + "min0"]),
            helper.make_node("Sub", [p + "max0", p + "min0"], [p + "range"]),
            helper.make_node("Div", [p + "range", "pt_255"], [p + "s0"]),
            helper.make_node("Max", [p + "s0", "pt_eps"], [xs]),
            helper.make_node("Neg", [p + "min0"], [p + "nmin"]),
            helper.make_node("Div", [p + "nmin", xs], [p + "zpraw"]),
            helper.make_node("Round", [p + "zpraw"], [p + "zp"]),
            helper.make_node("Div", [x, xs], [p + "xd"]),
            helper.make_node("Round", [p + "xd"], [p + "xr"]),
            helper.make_node("Add", [p + "xr", p + "zp"], [p + "xa"]),
            helper.make_node("Clip", [p + "xa", "pt_zero", "pt_255"], [p + "xc"]),
            helper.make_node("Cast", [p + "xc"], [xq], to=TensorProto.UINT8),
        ]
        for mm in consumers[xq]:
            if mm.op_type != "MatMulInteger":
                raise ConfigError(f"unexpected consumer {mm.op_type} of a quantized activation")
            w8 = numpy_helper.to_array(init[mm.input[1]])
            if w8.dtype != np.int8:
                raise ConfigError(f"expected int8 weights, got {w8.dtype}")
            if len(mm.input) > 3 and mm.input[3] and np.any(numpy_helper.to_array(init[mm.input[3]]) != 0):
                raise ConfigError("int8 weights must be symmetric (zero point 0)")
            w = w8.astype(np.int64)
            colsum = numpy_helper.from_array(w.sum(axis=0).astype(np.float32), mm.name + "_colsum")
            g.initializer.append(colsum)
            mm.input[2] = ""  # no activation zero point here: subtracted after the integer product
            # u8 x u8: weight w stored as w + 128 with zero point 128 (one per output column), the same
            # integer product as u8 x s8 but computed without int16 saturation on CPUs without VNNI.
            wname, zname = mm.input[1] + "_u8", mm.input[1] + "_zp128"
            if wname not in unsigned:
                unsigned.add(wname)
                g.initializer.extend([numpy_helper.from_array((w + 128).astype(np.uint8), wname),
                                      numpy_helper.from_array(np.full(w.shape[-1], 128, np.uint8), zname)])
            mm.input[1] = wname
            if len(mm.input) > 3:
                mm.input[3] = zname
            else:
                mm.input.append(zname)
            cast = consumers[mm.output[0]][0]
            q = mm.name + "_pt"
            for c in consumers[cast.output[0]]:
                for k, name in enumerate(c.input):
                    if name == cast.output[0]:
                        c.input[k] = q + "fixed"
            nodes += [helper.make_node("Mul", [p + "zp", colsum.name], [q + "corr"]),
                      helper.make_node("Sub", [cast.output[0], q + "corr"], [q + "fixed"])]
    # topological order
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    ordered, pending = [], nodes
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ConfigError("int8 rewrite left a cycle in the graph")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)
    # drop the int8 weights and zero points that no node reads any more
    used = {i for n in g.node for i in n.input}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    onnx.checker.check_model(model)
