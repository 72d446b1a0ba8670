#!/usr/bin/env python3
"""Generate jetinfer's test models and their reference data.

Usage:
    python3 scripts/gen_models.py --out DIR
    python3 scripts/gen_models.py --out DIR --skip-ort --refs-json   # no pyarrow/onnxruntime
    go run ./scripts/refarrow DIR                                     # then: the Arrow files

Writes, under DIR:
    models/digits.onnx        MLP trained on scikit-learn's bundled 8x8 digits
    models/digits_fp16.onnx   the same network with float16 input and output
    models/seq_encoder.onnx   padding-invariant sequence encoder (random init)
    digits_test.arrow         the 360-row test split: id, pixels, label
    digits_ref.arrow          PyTorch fp32 logits of the test split: id, logits
    digits_fp16_ref.arrow     float16 pixels and PyTorch logits: id, pixels, logits
    seq_ref.arrow             24 ragged sequences and PyTorch outputs: id, x, y
    models/tagger.onnx        small transformer encoder for token tagging (random init):
                              input_ids int64 [batch, seq], attention_mask int64
                              [batch, seq] -> logits [batch, seq, 9], pooled [batch, 128]
    models/tagger_fp16.onnx   the same architecture over float16 frames:
                              x float16 [batch, seq, 32], mask float16 [batch, seq]
                              -> y float16 [batch, seq, 9]
    tagger_ref.arrow          ragged token rows (lengths 0..128) and each row's PyTorch
                              outputs computed alone, unpadded: id, input_ids, logits, pooled
    tagger_fp16_ref.arrow     the same for tagger_fp16: id, x, y

Every Arrow file is an IPC *stream*; tensor columns use the canonical
extension type arrow.fixed_shape_tensor. Everything is deterministic: fixed
seeds, single-threaded PyTorch on the CPU.

Needs PyTorch, onnx, scikit-learn and numpy; pyarrow for the Arrow files and
onnxruntime to verify that ONNX Runtime reproduces the PyTorch references
(--skip-arrow / --skip-ort leave those steps out on machines that lack them;
the committed files were made with neither flag). Needs no network: the
digits data set ships inside scikit-learn.
"""

import argparse
import inspect
import json
import os
import sys
import tempfile

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
OPSET = 17
# Agreement required between ONNX Runtime and PyTorch (numpy.allclose style:
# |got - want| <= ATOL + RTOL * |want|). The Go conformance suite uses the same.
RTOL, ATOL = 1e-4, 1e-5
RTOL16, ATOL16 = 2e-3, 1e-3  # float16 outputs: about two units in the last place
PAD_TOL = 1e-5  # padding invariance of the sequence encoder (absolute)
MIN_ACCURACY = 0.95

SEQ_FEATURES, SEQ_HIDDEN, SEQ_OUT = 16, 32, 8
SEQ_LENGTHS = [1, 2, 3, 5, 8, 13, 17, 24, 31, 40, 50, 64,
               77, 90, 100, 111, 128, 137, 150, 163, 177, 185, 199, 200]


# The transformer taggers: 4 post-LN encoder layers (BERT-style), hidden 128,
# 4 heads, feed-forward 256, sinusoidal positions, additive attention mask.
# Hidden 128 (not 256) keeps each file near 2.5 MB.
TF_VOCAB, TF_HIDDEN, TF_HEADS, TF_FF, TF_LAYERS, TF_LABELS = 1000, 128, 4, 256, 4, 9
TF_FEATURES = 32  # tagger_fp16's input frames
TF_MAX = 128  # longest reference row; the tests configure this as the profile max
TF_LENGTHS = [0, 1, 2, 3, 5, 7, 8, 12, 16, 17, 23, 31, 32, 40, 0, 47, 63, 64,
              77, 90, 100, 111, 127, 128, 128, 4]
TF_MASK_BIAS = -1e9  # added to the scores of padded keys; finite, so an all-padding row stays finite


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- models


class DigitsMLP(nn.Module):
    """pixels [batch, 8, 8] in [0, 1] -> logits [batch, 10]."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, pixels):
        h = torch.flatten(pixels, 1)
        h = F.relu(self.fc1(h))
        h = F.relu(self.fc2(h))
        return self.fc3(h)


class Fp16IO(nn.Module):
    """Wraps a float32 network with float16 input and output (casts at both ends)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, pixels):
        return self.net(pixels.float()).half()


class SeqEncoder(nn.Module):
    """x [batch, seq, 16], mask [batch, seq] (1 real, 0 padding) -> y [batch, 8].

    A per-position MLP, a masked mean over real positions, and a linear head.
    Padding positions are multiplied by 0 before the sum, so appending padding
    does not change a row's output; a row that is all padding (mask all 0)
    yields the head's bias instead of NaN.
    """

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(SEQ_FEATURES, SEQ_HIDDEN)
        self.fc2 = nn.Linear(SEQ_HIDDEN, SEQ_HIDDEN)
        self.head = nn.Linear(SEQ_HIDDEN, SEQ_OUT)

    def forward(self, x, mask):
        h = torch.tanh(self.fc1(x))
        h = F.relu(self.fc2(h))
        m = mask.unsqueeze(-1)
        total = (h * m).sum(dim=1)
        count = m.sum(dim=1).clamp(min=1.0)
        return self.head(total / count)


class EncoderLayer(nn.Module):
    """Post-LN transformer encoder layer with an explicit additive mask."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(TF_HIDDEN, 3 * TF_HIDDEN)
        self.proj = nn.Linear(TF_HIDDEN, TF_HIDDEN)
        self.ln1 = nn.LayerNorm(TF_HIDDEN)
        self.ff1 = nn.Linear(TF_HIDDEN, TF_FF)
        self.ff2 = nn.Linear(TF_FF, TF_HIDDEN)
        self.ln2 = nn.LayerNorm(TF_HIDDEN)

    def forward(self, h, bias):
        dh = TF_HIDDEN // TF_HEADS
        q, k, v = self.qkv(h).chunk(3, dim=-1)

        def heads(t):  # [b, s, H] -> [b, heads, s, dh]
            return t.reshape(t.shape[0], -1, TF_HEADS, dh).transpose(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        att = torch.softmax(q @ k.transpose(-1, -2) * (dh ** -0.5) + bias, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(h.shape[0], -1, TF_HIDDEN)
        h = self.ln1(h + self.proj(o))
        return self.ln2(h + self.ff2(F.gelu(self.ff1(h))))


class Tagger(nn.Module):
    """Token tagger: a front end (token embedding or frame projection),
    sinusoidal positions, TF_LAYERS encoder layers, a per-token head and a
    masked mean-pooled embedding.

    mask is 1 at real positions and 0 at padding. Padded keys get
    TF_MASK_BIAS added to their attention scores, so a real position's
    output does not depend on how much padding follows it; a row that is
    all padding attends uniformly and stays finite. Pooling divides by
    max(count, 1): an all-padding row pools to zeros.
    """

    def __init__(self, frames):
        super().__init__()
        self.frames = frames
        if frames:
            self.front = nn.Linear(TF_FEATURES, TF_HIDDEN)
        else:
            self.front = nn.Embedding(TF_VOCAB, TF_HIDDEN)
        self.layers = nn.ModuleList([EncoderLayer() for _ in range(TF_LAYERS)])
        self.head = nn.Linear(TF_HIDDEN, TF_LABELS)
        inv = torch.exp(torch.arange(0, TF_HIDDEN, 2, dtype=torch.float32) * float(-np.log(10000.0) / TF_HIDDEN))
        self.register_buffer("inv_freq", inv)

    def encode(self, x, mask):
        h = self.front(x.float() if self.frames else x)
        pos = torch.arange(h.shape[1], dtype=torch.float32).unsqueeze(-1) * self.inv_freq
        h = h + torch.cat([torch.sin(pos), torch.cos(pos)], dim=-1)
        m = mask.float()
        bias = ((1.0 - m) * TF_MASK_BIAS)[:, None, None, :]
        for layer in self.layers:
            h = layer(h, bias)
        return h, m

    def forward(self, x, mask):
        h, m = self.encode(x, mask)
        logits = self.head(h)
        if self.frames:
            return logits.half()
        pooled = (h * m.unsqueeze(-1)).sum(dim=1) / m.sum(dim=1, keepdim=True).clamp(min=1.0)
        return logits, pooled


# ---------------------------------------------------------------- data


def digits_split():
    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0).reshape(-1, 8, 8)
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=0)


def train_digits(x_train, y_train):
    torch.manual_seed(SEED)
    net = DigitsMLP()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(SEED)
    x = torch.from_numpy(x_train)
    y = torch.from_numpy(y_train)
    net.train()
    for epoch in range(60):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), 32):
            idx = perm[i:i + 32]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if epoch % 20 == 19:
            log(f"digits: epoch {epoch + 1} mean loss {total / len(x):.4f}")
    net.eval()
    # Weight decay drives the weights of dead units into the subnormal
    # range, where CPU arithmetic is one to two orders of magnitude slower
    # (it made ONNX Runtime ~25x slower on this model). Flush them to zero;
    # the references below are computed from the flushed weights.
    tiny = torch.finfo(torch.float32).tiny
    with torch.no_grad():
        flushed = 0
        for p in net.parameters():
            sub = (p != 0) & (p.abs() < tiny)
            flushed += int(sub.sum())
            p[sub] = 0.0
    log(f"digits: flushed {flushed} subnormal weights to zero")
    return net


def seq_samples():
    rng = np.random.default_rng(SEED + 1)
    lengths = list(SEQ_LENGTHS)
    rng.shuffle(lengths)  # mixed lengths in every chunk of rows
    return [rng.standard_normal((n, SEQ_FEATURES)).astype(np.float32) for n in lengths]


def tagger_samples(frames):
    """Rows of TF_LENGTHS positions: token ids in [1, TF_VOCAB), or float16 frames."""
    rng = np.random.default_rng(SEED + 3 + int(frames))
    if frames:
        return [rng.standard_normal((n, TF_FEATURES)).astype(np.float16) for n in TF_LENGTHS]
    return [rng.integers(1, TF_VOCAB, size=n, dtype=np.int64) for n in TF_LENGTHS]


def tagger_references(net, rows, frames):
    """Each row run alone, unpadded (batch 1, mask all ones). A row of 0
    positions gets what the worker computes for it: one padded position
    with mask 0; its token-level output is empty."""
    outs = []
    mdt = torch.float16 if frames else torch.int64
    with torch.no_grad():
        for r in rows:
            n = len(r)
            if n == 0:
                x = torch.zeros((1, 1, TF_FEATURES) if frames else (1, 1), dtype=torch.float16 if frames else torch.int64)
                got = net(x, torch.zeros(1, 1, dtype=mdt))
            else:
                got = net(torch.from_numpy(r)[None], torch.ones(1, n, dtype=mdt))
            if frames:
                outs.append((got.numpy()[0, :n],))
            else:
                outs.append((got[0].numpy()[0, :n], got[1].numpy()[0]))
    return outs


def tagger_padded(rows, frames):
    """All rows in one batch padded to the longest, with the mask."""
    n = max(len(r) for r in rows)
    if frames:
        x = np.zeros((len(rows), n, TF_FEATURES), np.float16)
        m = np.zeros((len(rows), n), np.float16)
    else:
        x = np.zeros((len(rows), n), np.int64)
        m = np.zeros((len(rows), n), np.int64)
    for i, r in enumerate(rows):
        x[i, :len(r)] = r
        m[i, :len(r)] = 1
    return x, m


def check_tagger_padded(name, outs, refs, rows, rtol, atol):
    """Compares batched, padded outputs with the per-row references at the real positions."""
    worst = 0.0
    for k in range(len(refs[0])):
        got = np.concatenate([outs[k][i, :len(rows[i])] if refs[i][k].ndim == 2 else outs[k][i:i + 1]
                              for i in range(len(rows))])
        want = np.concatenate([refs[i][k] if refs[i][k].ndim == 2 else refs[i][k][None] for i in range(len(rows))])
        worst = max(worst, close_report(f"{name} output {k}", got, want, rtol, atol))
        if not np.isfinite(outs[k].astype(np.float64)).all():
            raise SystemExit(f"{name}: non-finite values in the padded batch")
    return worst


# ---------------------------------------------------------------- export


def export_torch(module, args, path, input_names, output_names, dynamic_axes):
    """Exports with the classic (TorchScript) exporter: dynamo=False."""
    kw = dict(input_names=input_names, output_names=output_names,
              dynamic_axes=dynamic_axes, opset_version=OPSET,
              do_constant_folding=True, dynamo=False)
    params = inspect.signature(torch.onnx.export).parameters
    if "dynamo" not in params:  # older PyTorch: the classic exporter is the only one
        del kw["dynamo"]
    torch.onnx.export(module, args, path, **kw)
    return onnx.load(path)


def linear_init(prefix, lin):
    w = numpy_helper.from_array(lin.weight.detach().numpy().astype(np.float32), prefix + ".weight")
    b = numpy_helper.from_array(lin.bias.detach().numpy().astype(np.float32), prefix + ".bias")
    return [w, b]


def make_model(graph):
    # IR version 8 is the oldest that allows opset 17; pinned so that the
    # file does not depend on which onnx release built it.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                             producer_name="jetinfer gen_models.py", ir_version=8)


def manual_digits(net, fp16_io):
    """Builds the digits graph by hand from the trained weights (fallback)."""
    elem = TensorProto.FLOAT16 if fp16_io else TensorProto.FLOAT
    inits = linear_init("fc1", net.fc1) + linear_init("fc2", net.fc2) + linear_init("fc3", net.fc3)
    nodes = []
    src = "pixels"
    if fp16_io:
        nodes.append(helper.make_node("Cast", ["pixels"], ["pixels_f32"], to=TensorProto.FLOAT))
        src = "pixels_f32"
    out3 = "logits_f32" if fp16_io else "logits"
    nodes += [
        helper.make_node("Flatten", [src], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["g1"], transB=1),
        helper.make_node("Relu", ["g1"], ["r1"]),
        helper.make_node("Gemm", ["r1", "fc2.weight", "fc2.bias"], ["g2"], transB=1),
        helper.make_node("Relu", ["g2"], ["r2"]),
        helper.make_node("Gemm", ["r2", "fc3.weight", "fc3.bias"], [out3], transB=1),
    ]
    if fp16_io:
        nodes.append(helper.make_node("Cast", ["logits_f32"], ["logits"], to=TensorProto.FLOAT16))
    graph = helper.make_graph(
        nodes, "digits",
        [helper.make_tensor_value_info("pixels", elem, ["batch", 8, 8])],
        [helper.make_tensor_value_info("logits", elem, ["batch", 10])],
        initializer=inits)
    return make_model(graph)


def manual_seq(net):
    """Builds the sequence encoder graph by hand from its weights (fallback)."""
    inits = []
    for name, lin in (("fc1", net.fc1), ("fc2", net.fc2)):
        inits.append(numpy_helper.from_array(lin.weight.detach().numpy().T.copy(), name + ".weight_t"))
        inits.append(numpy_helper.from_array(lin.bias.detach().numpy(), name + ".bias"))
    inits += linear_init("head", net.head)
    inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis_last"))
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_seq"))
    inits.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"))
    nodes = [
        helper.make_node("MatMul", ["x", "fc1.weight_t"], ["m1"]),
        helper.make_node("Add", ["m1", "fc1.bias"], ["a1"]),
        helper.make_node("Tanh", ["a1"], ["h1"]),
        helper.make_node("MatMul", ["h1", "fc2.weight_t"], ["m2"]),
        helper.make_node("Add", ["m2", "fc2.bias"], ["a2"]),
        helper.make_node("Relu", ["a2"], ["h2"]),
        helper.make_node("Unsqueeze", ["mask", "axis_last"], ["mask3"]),
        helper.make_node("Mul", ["h2", "mask3"], ["hm"]),
        helper.make_node("ReduceSum", ["hm", "axis_seq"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis_seq"], ["count0"], keepdims=0),
        helper.make_node("Max", ["count0", "one"], ["count"]),
        helper.make_node("Div", ["total", "count"], ["pooled"]),
        helper.make_node("Gemm", ["pooled", "head.weight", "head.bias"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "seq_encoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", SEQ_FEATURES]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", SEQ_OUT])],
        initializer=inits)
    return make_model(graph)


def io_signature(model):
    """[(name, elem_type, dims)] for graph inputs and outputs; dims use names for dim_params."""
    def sig(vis):
        out = []
        for v in vis:
            t = v.type.tensor_type
            dims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim]
            out.append((v.name, t.elem_type, dims))
        return out
    inits = {i.name for i in model.graph.initializer}
    return sig([v for v in model.graph.input if v.name not in inits]), sig(model.graph.output)


HAND_BUILT = False  # set from --hand-built


def finish_model(name, export, manual, want_inputs, want_outputs, doc):
    """Exports with PyTorch, falling back to the hand-built graph when the
    export fails or its IO signature is not the one asked for."""
    how = "torch.onnx.export(dynamo=False)"
    try:
        if HAND_BUILT:
            raise RuntimeError("--hand-built given")
        model = export()
        got = io_signature(model)
        if got != (want_inputs, want_outputs):
            raise ValueError(f"exported IO signature {got} != wanted {(want_inputs, want_outputs)}")
    except Exception as exc:  # noqa: BLE001 - any exporter failure selects the fallback
        log(f"{name}: PyTorch export unusable ({type(exc).__name__}: {exc}); building the graph by hand")
        model = manual()
        how = "onnx.helper (hand-built from the PyTorch weights)"
    model.doc_string = doc
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != OPSET:
        raise SystemExit(f"{name}: opset {opsets}, want {OPSET}")
    onnx.checker.check_model(model, full_check=True)
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype.kind == "f" and ((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)).any():
            raise SystemExit(f"{name}: initializer {init.name} has subnormal values")
    got = io_signature(model)
    if got != (want_inputs, want_outputs):
        raise SystemExit(f"{name}: IO signature {got}, want {(want_inputs, want_outputs)}")
    log(f"{name}: {how}, opset {OPSET}, IR {model.ir_version}, checker ok, IO {got}")
    return model, how


# ---------------------------------------------------------------- checks


def close_report(name, got, want, rtol, atol):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise SystemExit(f"{name}: shape {got.shape}, want {want.shape}")
    err = np.abs(got - want)
    bad = err > atol + rtol * np.abs(want)
    rel = float((err / np.maximum(np.abs(want), atol)).max())
    log(f"{name}: max abs err {err.max():.3g}, max rel err {rel:.3g}, "
        f"{int(bad.sum())} of {bad.size} outside rtol={rtol:g} atol={atol:g}")
    if bad.any():
        raise SystemExit(f"{name}: outside tolerance")
    return float(err.max())


def pad_batch(seqs):
    n = max(len(s) for s in seqs)
    x = np.zeros((len(seqs), n, SEQ_FEATURES), dtype=np.float32)
    m = np.zeros((len(seqs), n), dtype=np.float32)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
        m[i, :len(s)] = 1.0
    return x, m


# ---------------------------------------------------------------- arrow


# --refs-json: on a machine without pyarrow, each Arrow file is written as
# <file>.json instead (every column's values as base64 little-endian bytes,
# with its kind, dtype, shape or offsets), and `go run ./scripts/refarrow
# DIR` turns those into the Arrow streams with arrow-go.
REFS_JSON = False


def json_column(kind, values, **extra):
    import base64
    values = np.ascontiguousarray(values)
    return dict(kind=kind, dtype=str(values.dtype), data=base64.b64encode(values.tobytes()).decode(), **extra)


def int_column(values):
    """int64 values -> an int64 column."""
    values = np.asarray(values, dtype=np.int64)
    if REFS_JSON:
        return json_column("int64", values)
    import pyarrow as pa
    return pa.array(values, type=pa.int64())


def write_arrow(path, columns):
    """Writes columns (name -> pyarrow array) as one Arrow IPC stream."""
    if REFS_JSON:
        with open(path + ".json", "w") as f:
            json.dump({"columns": [dict(name=name, **col) for name, col in columns.items()]}, f)
        log(f"wrote {path}.json ({os.path.getsize(path + '.json')} bytes): {', '.join(columns)}")
        return
    import pyarrow as pa
    table = pa.table(columns)
    with pa.OSFile(path, "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    back = pa.ipc.open_stream(pa.memory_map(path, "r")).read_all()
    if not back.equals(table):
        raise SystemExit(f"{path}: read-back differs")
    log(f"wrote {path} ({os.path.getsize(path)} bytes): {table.schema.to_string(show_schema_metadata=False)}".replace("\n", "; "))


def tensor_column(values, shape):
    """values [rows, *shape] -> arrow.fixed_shape_tensor column."""
    if REFS_JSON:
        return json_column("tensor", values, shape=[int(d) for d in shape])
    import pyarrow as pa
    value_type = {np.dtype(np.float32): pa.float32(), np.dtype(np.float16): pa.float16()}[values.dtype]
    size = int(np.prod(shape))
    flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=value_type)
    storage = pa.FixedSizeListArray.from_arrays(flat, size)
    return pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(value_type, list(shape)), storage)


def ragged_column(seqs, width=SEQ_FEATURES):
    """list of [n_i, width] arrays -> List<FixedSizeList<T>[width]> column;
    list of [n_i] arrays (width None) -> List<T>."""
    offsets = np.zeros(len(seqs) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    if REFS_JSON:
        return json_column("ragged", np.concatenate(seqs).reshape(-1), width=width, offsets=offsets.tolist())
    import pyarrow as pa
    value_type = pa.from_numpy_dtype(seqs[0].dtype)
    flat = pa.array(np.concatenate(seqs).reshape(-1), type=value_type)
    inner = flat if width is None else pa.FixedSizeListArray.from_arrays(flat, width)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), inner)


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--skip-arrow", action="store_true", help="do not write Arrow files (no pyarrow)")
    ap.add_argument("--skip-ort", action="store_true", help="do not verify with onnxruntime")
    ap.add_argument("--refs-json", action="store_true",
                    help="no pyarrow: write each Arrow file as <file>.json for `go run ./scripts/refarrow DIR`")
    ap.add_argument("--hand-built", action="store_true",
                    help="skip torch.onnx.export and build the graphs by hand (the fallback path)")
    args = ap.parse_args()
    global HAND_BUILT, REFS_JSON
    HAND_BUILT = args.hand_built
    REFS_JSON = args.refs_json

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(os.path.join(args.out, "models"), exist_ok=True)
    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "onnx": onnx.__version__, "numpy": np.__version__}
    summary = {"versions": versions}

    # --- digits
    x_train, x_test, y_train, y_test = digits_split()
    log(f"digits: {len(x_train)} train rows, {len(x_test)} test rows")
    assert len(x_test) == 360
    net = train_digits(x_train, y_train)
    with torch.no_grad():
        ref_logits = net(torch.from_numpy(x_test)).numpy()
    accuracy = float((ref_logits.argmax(1) == y_test).mean())
    log(f"digits: PyTorch test accuracy {accuracy:.4f}")
    if accuracy < MIN_ACCURACY:
        raise SystemExit(f"digits accuracy {accuracy} < {MIN_ACCURACY}")
    summary["digits_accuracy"] = accuracy

    fp16net = Fp16IO(net).eval()
    x_test16 = x_test.astype(np.float16)  # k/16 values: exact in float16
    assert np.array_equal(x_test16.astype(np.float32), x_test)
    with torch.no_grad():
        ref_logits16 = fp16net(torch.from_numpy(x_test16)).numpy()

    seq_net = None
    tmp = tempfile.mkdtemp()
    digits_io = ([("pixels", TensorProto.FLOAT, ["batch", 8, 8])], [("logits", TensorProto.FLOAT, ["batch", 10])])
    digits16_io = ([("pixels", TensorProto.FLOAT16, ["batch", 8, 8])], [("logits", TensorProto.FLOAT16, ["batch", 10])])
    axes = {"pixels": {0: "batch"}, "logits": {0: "batch"}}
    digits_model, how_digits = finish_model(
        "digits.onnx",
        lambda: export_torch(net, (torch.from_numpy(x_test[:2]),), os.path.join(tmp, "d.onnx"),
                             ["pixels"], ["logits"], axes),
        lambda: manual_digits(net, False), *digits_io,
        "jetinfer test model: MLP 64-128-64-10 on scikit-learn 8x8 digits; pixels = value/16. "
        "Generated by scripts/gen_models.py.")
    digits16_model, how_digits16 = finish_model(
        "digits_fp16.onnx",
        lambda: export_torch(fp16net, (torch.from_numpy(x_test16[:2]),), os.path.join(tmp, "d16.onnx"),
                             ["pixels"], ["logits"], axes),
        lambda: manual_digits(net, True), *digits16_io,
        "jetinfer test model: digits.onnx with float16 input and output (casts at both ends). "
        "Generated by scripts/gen_models.py.")

    # --- sequence encoder
    torch.manual_seed(SEED + 2)
    seq_net = SeqEncoder().eval()
    seqs = seq_samples()
    with torch.no_grad():
        ref_y = np.stack([
            seq_net(torch.from_numpy(s)[None], torch.ones(1, len(s))).numpy()[0] for s in seqs])
        px, pm = pad_batch(seqs)
        padded_y = seq_net(torch.from_numpy(px), torch.from_numpy(pm)).numpy()
        allpad = seq_net(torch.zeros(1, 3, SEQ_FEATURES), torch.zeros(1, 3)).numpy()
    pad_err = float(np.abs(padded_y - ref_y).max())
    log(f"seq_encoder: PyTorch padded-vs-unpadded max abs diff {pad_err:.3g} (limit {PAD_TOL:g})")
    if pad_err > PAD_TOL or not np.isfinite(allpad).all():
        raise SystemExit("seq_encoder is not padding invariant")
    seq_io = ([("x", TensorProto.FLOAT, ["batch", "seq", SEQ_FEATURES]), ("mask", TensorProto.FLOAT, ["batch", "seq"])],
              [("y", TensorProto.FLOAT, ["batch", SEQ_OUT])])
    seq_model, how_seq = finish_model(
        "seq_encoder.onnx",
        lambda: export_torch(seq_net, (torch.from_numpy(px[:2, :5]), torch.from_numpy(pm[:2, :5])),
                             os.path.join(tmp, "s.onnx"), ["x", "mask"], ["y"],
                             {"x": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}, "y": {0: "batch"}}),
        lambda: manual_seq(seq_net), *seq_io,
        "jetinfer test model: padding-invariant sequence encoder (per-position MLP 16-32-32, "
        "masked mean over positions where mask=1, linear head to 8). Random init, seed 2. "
        "Generated by scripts/gen_models.py.")
    summary["exporter"] = {"digits": how_digits, "digits_fp16": how_digits16, "seq_encoder": how_seq}

    # --- transformer taggers
    taggers = {}
    for frames in (False, True):
        fname = "tagger_fp16.onnx" if frames else "tagger.onnx"
        torch.manual_seed(SEED + 4 + int(frames))
        net = Tagger(frames).eval()
        rows = tagger_samples(frames)
        refs = tagger_references(net, rows, frames)
        px, pm = tagger_padded(rows, frames)
        with torch.no_grad():
            pouts = net(torch.from_numpy(px), torch.from_numpy(pm))
        pouts = [pouts.numpy()] if frames else [o.numpy() for o in pouts]
        rtol, atol = (RTOL16, ATOL16) if frames else (RTOL, ATOL)
        check_tagger_padded(f"{fname} PyTorch padded batch", pouts, refs, rows, rtol, atol)
        if frames:
            ins = [("x", TensorProto.FLOAT16, ["batch", "seq", TF_FEATURES]), ("mask", TensorProto.FLOAT16, ["batch", "seq"])]
            outs = [("y", TensorProto.FLOAT16, ["batch", "seq", TF_LABELS])]
            axes = {"x": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}}
        else:
            ins = [("input_ids", TensorProto.INT64, ["batch", "seq"]), ("attention_mask", TensorProto.INT64, ["batch", "seq"])]
            outs = [("logits", TensorProto.FLOAT, ["batch", "seq", TF_LABELS]), ("pooled", TensorProto.FLOAT, ["batch", TF_HIDDEN])]
            axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                    "logits": {0: "batch", 1: "seq"}, "pooled": {0: "batch"}}
        in_names, out_names = [n for n, _, _ in ins], [n for n, _, _ in outs]

        def no_fallback(fname=fname):
            raise SystemExit(f"{fname}: no hand-built fallback; the PyTorch export must succeed")

        model, how = finish_model(
            fname,
            lambda net=net, px=px, pm=pm, fname=fname, in_names=in_names, out_names=out_names, axes=axes: export_torch(
                net, (torch.from_numpy(px[:2, :5]), torch.from_numpy(pm[:2, :5])), os.path.join(tmp, fname),
                in_names, out_names, axes),
            no_fallback, ins, outs,
            f"jetinfer test model: transformer token tagger ({TF_LAYERS} post-LN encoder layers, hidden {TF_HIDDEN}, "
            f"{TF_HEADS} heads, feed-forward {TF_FF}, sinusoidal positions, additive attention mask), "
            + ("float16 frames of 32 in, float16 logits of 9 per position out. " if frames else
               f"token ids below {TF_VOCAB} in, logits of 9 per token and a masked-mean pooled embedding out. ")
            + f"Random init, seed {SEED + 4 + int(frames)}. Generated by scripts/gen_models.py.")
        summary["exporter"][fname] = how
        taggers[fname] = (model, net, rows, refs, px, pm, in_names, out_names, frames)

    paths = {}
    for fname, model in (("digits.onnx", digits_model), ("digits_fp16.onnx", digits16_model),
                         ("seq_encoder.onnx", seq_model), ("tagger.onnx", taggers["tagger.onnx"][0]),
                         ("tagger_fp16.onnx", taggers["tagger_fp16.onnx"][0])):
        p = os.path.join(args.out, "models", fname)
        onnx.save(model, p)
        paths[fname] = p
        log(f"wrote {p} ({os.path.getsize(p)} bytes)")

    # --- verification with ONNX Runtime (CPU)
    if not args.skip_ort:
        import onnxruntime as ort
        versions["onnxruntime"] = ort.__version__
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1

        def session(fname):
            return ort.InferenceSession(paths[fname], so, providers=["CPUExecutionProvider"])

        sd = session("digits.onnx")
        got = sd.run(["logits"], {"pixels": x_test})[0]
        summary["ort_digits_max_abs_err"] = close_report("ORT digits batch 360", got, ref_logits, RTOL, ATOL)
        ort_acc = float((got.argmax(1) == y_test).mean())
        log(f"digits: ONNX Runtime test accuracy {ort_acc:.4f}")
        if ort_acc != accuracy:
            raise SystemExit("ONNX Runtime accuracy differs from PyTorch")
        one = np.concatenate([sd.run(["logits"], {"pixels": x_test[i:i + 1]})[0] for i in range(len(x_test))])
        close_report("ORT digits batch 1", one, ref_logits, RTOL, ATOL)

        s16 = session("digits_fp16.onnx")
        got16 = s16.run(["logits"], {"pixels": x_test16})[0]
        if got16.dtype != np.float16:
            raise SystemExit(f"digits_fp16 output dtype {got16.dtype}")
        summary["ort_digits_fp16_max_abs_err"] = close_report(
            "ORT digits_fp16 batch 360", got16, ref_logits16, RTOL16, ATOL16)

        ss = session("seq_encoder.onnx")
        one = np.stack([ss.run(["y"], {"x": s[None], "mask": np.ones((1, len(s)), np.float32)})[0][0] for s in seqs])
        summary["ort_seq_max_abs_err"] = close_report("ORT seq_encoder unpadded", one, ref_y, RTOL, ATOL)
        got = ss.run(["y"], {"x": px, "mask": pm})[0]
        close_report("ORT seq_encoder padded to 200", got, ref_y, RTOL, ATOL)
        pad_err = float(np.abs(got - one).max())
        log(f"seq_encoder: ONNX Runtime padded-vs-unpadded max abs diff {pad_err:.3g}")
        if pad_err > PAD_TOL:
            raise SystemExit("seq_encoder on ONNX Runtime is not padding invariant")
        summary["ort_seq_padding_max_abs_diff"] = pad_err

        for fname, (_, _, rows, refs, px, pm, in_names, out_names, frames) in taggers.items():
            st = session(fname)
            rtol, atol = (RTOL16, ATOL16) if frames else (RTOL, ATOL)
            got = st.run(out_names, {in_names[0]: px, in_names[1]: pm})
            summary[f"ort_{fname}_padded_max_abs_err"] = check_tagger_padded(
                f"ORT {fname} padded batch", got, refs, rows, rtol, atol)
            alone = [st.run(out_names, {in_names[0]: r[None], in_names[1]: np.ones((1, len(r)), pm.dtype)})
                     for r in rows if len(r) > 0]
            for k, name in enumerate(out_names):
                g = np.concatenate([a[k][0] if a[k].ndim == 3 else a[k] for a in alone])
                w = np.concatenate([ref[k] if ref[k].ndim == 2 else ref[k][None]
                                    for r, ref in zip(rows, refs) if len(r) > 0])
                close_report(f"ORT {fname} {name} row by row", g, w, rtol, atol)

    # --- Arrow files
    if not args.skip_arrow:
        if not REFS_JSON:
            import pyarrow as pa
            versions["pyarrow"] = pa.__version__
        ids = int_column(np.arange(len(x_test)))
        write_arrow(os.path.join(args.out, "digits_test.arrow"), {
            "id": ids, "pixels": tensor_column(x_test, [8, 8]), "label": int_column(y_test)})
        write_arrow(os.path.join(args.out, "digits_ref.arrow"), {
            "id": ids, "logits": tensor_column(ref_logits.astype(np.float32), [10])})
        write_arrow(os.path.join(args.out, "digits_fp16_ref.arrow"), {
            "id": ids, "pixels": tensor_column(x_test16, [8, 8]),
            "logits": tensor_column(ref_logits16.astype(np.float16), [10])})
        write_arrow(os.path.join(args.out, "seq_ref.arrow"), {
            "id": int_column(np.arange(len(seqs))), "x": ragged_column(seqs),
            "y": tensor_column(ref_y.astype(np.float32), [SEQ_OUT])})
        summary["seq_lengths"] = [len(s) for s in seqs]
        for fname, (_, _, rows, refs, _, _, in_names, out_names, frames) in taggers.items():
            cols = {"id": int_column(np.arange(len(rows)))}
            cols[in_names[0]] = ragged_column(rows, TF_FEATURES if frames else None)
            cols[out_names[0]] = ragged_column([ref[0] for ref in refs], TF_LABELS)
            if not frames:
                cols["pooled"] = tensor_column(np.stack([ref[1] for ref in refs]).astype(np.float32), [TF_HIDDEN])
            write_arrow(os.path.join(args.out, fname.replace(".onnx", "_ref.arrow")), cols)
        summary["tagger_lengths"] = list(TF_LENGTHS)

    log("SUMMARY " + json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
