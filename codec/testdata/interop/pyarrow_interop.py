"""Interop check between jetinfer's codec and pyarrow.

Run where pyarrow and numpy are installed:

    OUT=/some/dir python3 codec/testdata/interop/pyarrow_interop.py

It (1) checks the Go-encoded bodies go_*.arrows in this directory against
go_expect.json with pyarrow, (2) rewrites each with pyarrow as
rewritten_<name>, and (3) writes bodies made by pyarrow. Everything lands
in $OUT (report.json records every check); copy it to
codec/testdata/interop/pyarrow/, where the Go tests decode it.
"""

import hashlib
import json
import os
import sys
import traceback

import numpy as np
import pyarrow as pa

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.environ.get("OUT") or sys.exit("set OUT to the output directory")
report = {"pyarrow": pa.__version__, "numpy": np.__version__, "checks": [], "errors": []}


def case(fn):
    try:
        fn()
        report["checks"].append(fn.__name__)
    except Exception:
        report["errors"].append(fn.__name__ + ": " + traceback.format_exc(limit=3))
    return fn


def write_stream(name, schema, batches):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as w:
        for b in batches:
            w.write_batch(b)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(sink.getvalue().to_pybytes())


def one_batch(name, fields, arrays):
    schema = pa.schema(fields)
    write_stream(name, schema, [pa.record_batch(arrays, schema=schema)])


def tensor(value_type, shape, flat, **kw):
    typ = pa.fixed_shape_tensor(value_type, shape, **kw)
    size = int(np.prod(shape))
    storage = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=value_type), size)
    return pa.ExtensionArray.from_storage(typ, storage)


def element_bytes(arr):
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    if pa.types.is_fixed_size_list(arr.type):
        arr = arr.flatten()
    v = arr.to_numpy(zero_copy_only=False)
    if v.dtype == np.bool_:
        v = v.astype(np.uint8)
    return v.tobytes()


def check_ragged(arr, col):
    """A ragged (List) column: every row read with to_numpy on its own."""
    assert pa.types.is_list(arr.type), (col["name"], arr.type)
    shape = col["shape"] or []
    item = arr.type.value_type
    if len(shape) >= 2:
        assert isinstance(item, pa.FixedShapeTensorType), (col["name"], item)
        assert list(item.shape) == shape and str(item.value_type) == col["value_type"], item
    elif len(shape) == 1:
        assert pa.types.is_fixed_size_list(item) and item.list_size == shape[0], item
        assert str(item.value_type) == col["value_type"], item
    else:
        assert str(item) == col["value_type"], item
    assert arr.null_count == 0
    rows = []
    for i, n in enumerate(col["lengths"]):
        v = arr[i].values
        assert len(v) == n, (col["name"], i, len(v), n)
        if len(shape) >= 2:
            nd = v.to_numpy_ndarray() if n else np.zeros([0] + shape, v.type.value_type.to_pandas_dtype())
        elif len(shape) == 1:
            nd = v.flatten().to_numpy().reshape([n] + shape)
        else:
            nd = v.to_numpy()
        assert list(nd.shape) == [n] + shape, (col["name"], i, nd.shape)
        rows.append(np.ascontiguousarray(nd).tobytes())
    digest = hashlib.sha256(b"".join(rows)).hexdigest()
    assert digest == col["sha256"], (col["name"], "element bytes differ")


# (1) + (2): Go-encoded bodies.
with open(os.path.join(HERE, "go_expect.json")) as f:
    expectations = json.load(f)

for exp in expectations:
    def check_go_body(exp=exp):
        with open(os.path.join(HERE, exp["file"]), "rb") as f:
            data = f.read()
        table = pa.ipc.open_stream(data).read_all()
        assert table.num_rows == exp["rows"], (table.num_rows, exp["rows"])
        if exp.get("ids") is not None:
            assert table.schema.names[0] == "id", table.schema.names
            assert table.column("id").to_pylist() == exp["ids"], table.column("id").to_pylist()
        for col in exp["columns"]:
            field = table.schema.field(col["name"])
            if col.get("ragged"):
                check_ragged(table.column(col["name"]).combine_chunks(), col)
                continue
            if col["shape"] is not None:
                assert isinstance(field.type, pa.FixedShapeTensorType), (col["name"], field.type)
                assert list(field.type.shape) == col["shape"], (field.type.shape, col["shape"])
                assert str(field.type.value_type) == col["value_type"], (field.type.value_type, col["value_type"])
                if col["value_type"] not in ("bool",):
                    nd = table.column(col["name"]).combine_chunks().to_numpy_ndarray()
                    assert list(nd.shape) == [exp["rows"]] + col["shape"], nd.shape
            else:
                assert str(field.type) == col["value_type"], (field.type, col["value_type"])
            if col.get("dtype_meta"):
                assert (field.metadata or {}).get(b"jetinfer.dtype") == b"bfloat16", field.metadata
            digest = hashlib.sha256(element_bytes(table.column(col["name"]))).hexdigest()
            assert digest == col["sha256"], (col["name"], "element bytes differ")
        write_stream("rewritten_" + exp["file"], table.schema, table.to_batches())

    check_go_body.__name__ = "go_body:" + exp["file"]
    case(check_go_body)


# (3): bodies made by pyarrow.
@case
def tensor_f32_8x8():
    nd = np.arange(3 * 64, dtype=np.float32).reshape(3, 8, 8)
    t = pa.FixedShapeTensorArray.from_numpy_ndarray(nd)
    ids = pa.array([10, 11, 12], pa.int64())
    one_batch("tensor_f32_8x8.arrows", [pa.field("id", pa.int64()), pa.field("pixels", t.type)], [ids, t])


@case
def tensor_dim_names():
    t = tensor(pa.float32(), [2, 3], np.arange(12, dtype=np.float32), dim_names=["H", "W"])
    one_batch("tensor_dim_names.arrows", [pa.field("t", t.type)], [t])


@case
def tensor_permuted():
    t = tensor(pa.float32(), [2, 3], np.arange(12, dtype=np.float32), permutation=[1, 0])
    one_batch("tensor_permuted.arrows", [pa.field("t", t.type)], [t])


@case
def file_format():
    t = tensor(pa.float32(), [2], np.arange(4, dtype=np.float32))
    schema = pa.schema([pa.field("t", t.type)])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, schema) as w:
        w.write_batch(pa.record_batch([t], schema=schema))
    with open(os.path.join(OUT, "file_format.arrow"), "wb") as f:
        f.write(sink.getvalue().to_pybytes())


@case
def dtypes():
    cols = {
        "f16": tensor(pa.float16(), [2], np.arange(4, dtype=np.float16)),
        "bf16": tensor(pa.uint16(), [2], np.array([0x3F80, 0x4000, 0x4040, 0x4080], dtype=np.uint16)),
        "f64": tensor(pa.float64(), [2], np.arange(4, dtype=np.float64)),
        "i8": tensor(pa.int8(), [2], np.arange(4, dtype=np.int8)),
        "u8": tensor(pa.uint8(), [2], np.arange(4, dtype=np.uint8)),
        "i32": tensor(pa.int32(), [2], np.arange(4, dtype=np.int32)),
        "i64": tensor(pa.int64(), [2], np.arange(4, dtype=np.int64)),
        "fsl": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(8, dtype=np.float32)), 4),
        "prim": pa.array([1.5, 2.5], pa.float64()),
    }
    fields = []
    for name, arr in cols.items():
        md = {"jetinfer.dtype": "bfloat16"} if name == "bf16" else None
        fields.append(pa.field(name, arr.type, metadata=md))
    one_batch("dtypes.arrows", fields, list(cols.values()))


@case
def bool_tensor():
    flat = [True, False, False, True, False, False, True, False]
    try:
        t = tensor(pa.bool_(), [4], flat)
    except Exception as e:  # older pyarrow may refuse bool tensors
        report["checks"].append("bool_tensor: fixed_shape_tensor(bool) refused (%s); wrote fixed_size_list<bool>" % e)
        t = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.bool_()), 4)
    one_batch("bool_tensor.arrows", [pa.field("mask", t.type)], [t])


@case
def ragged():
    seq = pa.array([[1, 2, 3], [], [4]], pa.list_(pa.float32()))
    vecs = pa.array([[[1, 2, 3]], [[4, 5, 6], [7, 8, 9]], []], pa.list_(pa.list_(pa.int32(), 3)))
    one_batch("ragged.arrows", [pa.field("seq", seq.type), pa.field("vecs", vecs.type)], [seq, vecs])


@case
def ragged_sliced():
    seq = pa.array([[1, 2, 3], [], [4]], pa.list_(pa.float32())).slice(1)
    one_batch("ragged_sliced.arrows", [pa.field("seq", seq.type)], [seq])


@case
def multibatch():
    t = tensor(pa.float32(), [4], np.arange(20, dtype=np.float32))
    ids = pa.array(["r0", "r1", "r2", "r3", None], pa.string())
    schema = pa.schema([pa.field("id", pa.string()), pa.field("pixels", t.type)])
    b = pa.record_batch([ids, t], schema=schema)
    write_stream("multibatch.arrows", schema, [b.slice(0, 2), b.slice(2)])


with open(os.path.join(OUT, "report.json"), "w") as f:
    json.dump(report, f, indent=2)
print(json.dumps(report, indent=2))
