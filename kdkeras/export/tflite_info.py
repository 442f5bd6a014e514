"""What is inside a ``.tflite`` file: size, gzip size, input/output specs, op counts.

Read offline from the flatbuffer itself (``ai_edge_litert``'s generated schema) plus the
interpreter's tensor details; no network, no TensorFlow graph.

Example:

>>> import kdkeras as kd
>>> m = kd.keras.Sequential([kd.keras.layers.Input((4,)), kd.keras.layers.Dense(3)])
>>> info = kd.inspect_tflite(kd.export_tflite(m, "/tmp/kd_doc/i.tflite"))
>>> info["op_counts"], info["inputs"][0]["shape"], info["inputs"][0]["dtype"]
({'FULLY_CONNECTED': 1}, [1, 4], 'float32')
"""

from __future__ import annotations

import collections
import gzip
import os
from typing import Any, Dict, List

import numpy as np

from kdkeras.export.tflite_file import check_tflite_file


def _op_names() -> Dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def op_counts(data: bytes) -> Dict[str, int]:
    """Operator counts by name over all subgraphs of a TFLite flatbuffer.

    Builtin ops are named as in the TFLite schema (``CONV_2D``, ``FULLY_CONNECTED``); custom
    ops by their custom code.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(data, 0)
    names = _op_names()
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        # Builtin codes >= 127 live in BuiltinCode(); older files only in the deprecated field.
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == schema.BuiltinOperator.CUSTOM and oc.CustomCode():
            codes.append(oc.CustomCode().decode())
        else:
            codes.append(names.get(code, f"BUILTIN_{code}"))
    counts: Dict[str, int] = collections.Counter()
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for o in range(sg.OperatorsLength()):
            counts[codes[sg.Operators(o).OpcodeIndex()]] += 1
    return dict(sorted(counts.items()))


def _tensor_spec(d: Dict[str, Any]) -> Dict[str, Any]:
    scale, zero_point = d["quantization"]
    qp = d.get("quantization_parameters", {})
    scales = np.asarray(qp.get("scales", []))
    return {
        "name": d["name"],
        "shape": [int(v) for v in d["shape"]],
        "shape_signature": [int(v) for v in d.get("shape_signature", d["shape"])],
        "dtype": np.dtype(d["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zero_point),
        "quantized": bool(scale) or scales.size > 0,
    }


def gzip_size(data: bytes) -> int:
    """Bytes of ``data`` gzipped at level 9: a proxy for download size."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


_WEIGHT_DTYPES = {0: np.float32, 1: np.float16, 9: np.int8, 7: np.int16}  # TensorType codes


def _zero_points(tensor: Any, values: np.ndarray) -> Any:
    """The stored value of 0.0 for each of ``values``: the zero point(s) of a quantized tensor
    (per tensor, or broadcast along its quantized dimension), else 0."""
    q = tensor.Quantization()
    zp = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else None
    if zp is None or np.size(zp) == 0:
        return 0
    if np.size(zp) == 1:
        return int(np.ravel(zp)[0])
    shape = [int(tensor.Shape(i)) for i in range(tensor.ShapeLength())]
    axis = int(q.QuantizedDimension())
    bshape = [1] * len(shape)
    bshape[axis] = -1
    return np.broadcast_to(np.reshape(zp, bshape), shape).ravel()


def weight_sparsity(data: bytes, min_size: int = 256) -> Dict[str, Dict[str, Any]]:
    """Zeros in the constant weight tensors of a TFLite flatbuffer, by tensor name.

    A quantized value is a zero when it equals its zero point (int8 kernels are quantized
    symmetrically, zero point 0; tables read by a full-integer ``GATHER`` share its
    activation's asymmetric zero point). Pruned zeros survive every mode, so this measures on
    the file what :func:`kdkeras.compress.sparsity_report` measures on the model. Float32,
    float16, int8 and int16 constants of at least ``min_size`` values count (smaller ones are
    biases and shapes).

    Returns:
        dict ``{tensor name: {"size": int, "zeros": int, "sparsity": float, "dtype": str}}``.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(data, 0)
    found: Dict[str, Dict[str, Any]] = {}
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            dtype = _WEIGHT_DTYPES.get(tensor.Type())
            buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() else None
            if dtype is None or buffer is None:
                continue
            if buffer.Offset() > 1:  # large models keep buffers after the flatbuffer
                raw = np.frombuffer(data, np.uint8, int(buffer.Size()), int(buffer.Offset()))
            elif buffer.DataLength():
                raw = buffer.DataAsNumpy()
            else:
                continue
            values = np.frombuffer(raw.tobytes(), dtype)
            if values.size >= min_size:
                zeros = int(np.sum(values == _zero_points(tensor, values)))
                found[tensor.Name().decode()] = {
                    "size": int(values.size), "zeros": zeros,
                    "sparsity": zeros / values.size, "dtype": np.dtype(dtype).name}
    return found


def inspect_tflite(path: str) -> Dict[str, Any]:
    """Describes a ``.tflite`` file.

    Args:
        path: str. A ``.tflite`` file.

    Returns:
        dict with ``path``, ``size_bytes``, ``gzip_bytes`` (gzip level 9, a proxy for download
        size and for how much pruning zeros compress), ``inputs`` / ``outputs`` (lists of
        ``name``, ``shape``, ``shape_signature``, ``dtype``, ``scale``, ``zero_point``,
        ``quantized``), ``op_counts`` (by op name), ``num_ops``, ``tensor_count``,
        ``subgraph_count``, ``tensor_dtypes`` (count of tensors per dtype).

    Raises:
        ValueError: if ``path`` is not a TFLite file.
    """
    from ai_edge_litert import schema_py_generated as schema

    from kdkeras.export.evaluate import make_interpreter

    path = check_tflite_file(path)
    interp = make_interpreter(path)  # first: it refuses a truncated file with a clear message
    with open(path, "rb") as f:
        data = f.read()
    model = schema.Model.GetRootAsModel(data, 0)
    tensor_count = sum(model.Subgraphs(s).TensorsLength() for s in range(model.SubgraphsLength()))
    dtypes = collections.Counter(
        np.dtype(d["dtype"]).name for d in interp.get_tensor_details()
    )
    ops = op_counts(data)
    return {
        "path": os.path.abspath(path),
        "size_bytes": len(data),
        "gzip_bytes": gzip_size(data),
        "inputs": [_tensor_spec(d) for d in interp.get_input_details()],
        "outputs": [_tensor_spec(d) for d in interp.get_output_details()],
        "op_counts": ops,
        "num_ops": int(sum(ops.values())),
        "tensor_count": int(tensor_count),
        "subgraph_count": int(model.SubgraphsLength()),
        "tensor_dtypes": dict(sorted(dtypes.items())),
    }


def format_inspection(info: Dict[str, Any]) -> str:
    """A human-readable summary of :func:`inspect_tflite`'s result."""
    lines: List[str] = [
        f"file:     {info['path']}",
        f"size:     {info['size_bytes']:,} bytes ({info['gzip_bytes']:,} gzipped)",
        f"tensors:  {info['tensor_count']} in {info['subgraph_count']} subgraph(s); "
        + ", ".join(f"{k}: {v}" for k, v in info["tensor_dtypes"].items()),
    ]
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            q = f" scale={t['scale']:.6g} zero_point={t['zero_point']}" if t["scale"] else ""
            lines.append(f"{kind[:-1]:<8}  {t['name']}: {t['dtype']} {t['shape_signature']}{q}")
    lines.append(f"ops:      {info['num_ops']} total")
    for name, n in info["op_counts"].items():
        lines.append(f"  {name:<28}{n:>5}")
    return "\n".join(lines)
