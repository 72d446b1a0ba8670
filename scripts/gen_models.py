#!/usr/bin/env python3
"""Generate jetinfer's test models and their reference data.

Usage:
    python3 scripts/gen_models.py --out DIR

Writes, under DIR:
    models/digits.onnx        MLP trained on scikit-learn's bundled 8x8 digits
    models/digits_fp16.onnx   the same network with float16 input and output
    models/seq_encoder.onnx   padding-invariant sequence encoder (random init)
    digits_test.arrow         the 360-row test split: id, pixels, label
    digits_ref.arrow          PyTorch fp32 logits of the test split: id, logits
    digits_fp16_ref.arrow     float16 pixels and PyTorch logits: id, pixels, logits
    seq_ref.arrow             24 ragged sequences and PyTorch outputs: id, x, y

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


def write_arrow(path, columns):
    """Writes columns (name -> pyarrow array) as one Arrow IPC stream."""
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
    import pyarrow as pa
    value_type = {np.dtype(np.float32): pa.float32(), np.dtype(np.float16): pa.float16()}[values.dtype]
    size = int(np.prod(shape))
    flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=value_type)
    storage = pa.FixedSizeListArray.from_arrays(flat, size)
    return pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(value_type, list(shape)), storage)


def ragged_column(seqs):
    """list of [n_i, 16] arrays -> List<FixedSizeList<float32>[16]> column."""
    import pyarrow as pa
    offsets = np.zeros(len(seqs) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    flat = pa.array(np.concatenate(seqs).reshape(-1), type=pa.float32())
    inner = pa.FixedSizeListArray.from_arrays(flat, SEQ_FEATURES)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), inner)


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--skip-arrow", action="store_true", help="do not write Arrow files (no pyarrow)")
    ap.add_argument("--skip-ort", action="store_true", help="do not verify with onnxruntime")
    ap.add_argument("--hand-built", action="store_true",
                    help="skip torch.onnx.export and build the graphs by hand (the fallback path)")
    args = ap.parse_args()
    global HAND_BUILT
    HAND_BUILT = args.hand_built

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

    paths = {}
    for fname, model in (("digits.onnx", digits_model), ("digits_fp16.onnx", digits16_model),
                         ("seq_encoder.onnx", seq_model)):
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

    # --- Arrow files
    if not args.skip_arrow:
        import pyarrow as pa
        versions["pyarrow"] = pa.__version__
        ids = pa.array(np.arange(len(x_test), dtype=np.int64))
        write_arrow(os.path.join(args.out, "digits_test.arrow"), {
            "id": ids, "pixels": tensor_column(x_test, [8, 8]), "label": pa.array(y_test, type=pa.int64())})
        write_arrow(os.path.join(args.out, "digits_ref.arrow"), {
            "id": ids, "logits": tensor_column(ref_logits.astype(np.float32), [10])})
        write_arrow(os.path.join(args.out, "digits_fp16_ref.arrow"), {
            "id": ids, "pixels": tensor_column(x_test16, [8, 8]),
            "logits": tensor_column(ref_logits16.astype(np.float16), [10])})
        write_arrow(os.path.join(args.out, "seq_ref.arrow"), {
            "id": pa.array(np.arange(len(seqs), dtype=np.int64)), "x": ragged_column(seqs),
            "y": tensor_column(ref_y.astype(np.float32), [SEQ_OUT])})
        summary["seq_lengths"] = [len(s) for s in seqs]

    log("SUMMARY " + json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
