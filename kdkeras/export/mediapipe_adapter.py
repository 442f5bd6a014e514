"""What MediaPipe's ``ImageClassifier`` takes, and the RGB input adapter for grayscale files.

MediaPipe Tasks feed an image classifier a ``1 x H x W x 3`` (or ``x 4``) tensor: float32
(normalized with the mean and std in the file's metadata) or uint8 (raw pixels). A grayscale
student (``H x W x 1``) is refused ("depth = 3 or 4. Got 1 x 28 x 28 x 1"). :func:`rgb_adapter`
puts a channel mean in front of it *inside the file*: a new ``[batch, H, W, 3]`` input and one
``MEAN`` op over the channels (``keep_dims``) that writes the old input tensor, so every weight
and op of the verified file is kept as it was. A gray image given as three equal channels
gives the original input (bit for bit for integer inputs; to the last float bit or one unit in
the last place for float inputs), so predictions do not change; a colour camera image becomes
its channel mean, the grayscale the student was trained on.

The rewrite uses the object API of LiteRT's generated TFLite schema
(``ai_edge_litert.schema_py_generated``), the one place kdkeras edits a graph; the tests check
it against the original file.

Example:

>>> import numpy as np, kdkeras as kd
>>> m = kd.keras.Sequential([kd.keras.layers.Input((4, 4, 1)), kd.keras.layers.Flatten(),
...                          kd.keras.layers.Dense(2)])
>>> path = kd.export_tflite(m, "/tmp/kd_doc/gray.tflite")
>>> rgb = rgb_adapter(open(path, "rb").read())
>>> _ = open("/tmp/kd_doc/rgb.tflite", "wb").write(rgb)
>>> kd.inspect_tflite("/tmp/kd_doc/rgb.tflite")["inputs"][0]["shape_signature"]
[-1, 4, 4, 3]
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

__all__ = ["MEDIAPIPE_INPUT_DTYPES", "image_input", "mediapipe_refusal", "rgb_adapter"]

#: Input dtypes MediaPipe's image classifier feeds (float32 normalized, uint8 raw pixels).
MEDIAPIPE_INPUT_DTYPES = ("float32", "uint8")
#: The name of the adapter's new input tensor.
RGB_INPUT_NAME = "image_rgb"


def image_input(inputs: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The input spec (an ``inspect_tflite`` entry) if the file takes one image
    ``[batch, H, W, C]`` with ``C`` 1 or 3, else None."""
    if len(inputs) != 1:
        return None
    sig = inputs[0]["shape_signature"]
    return inputs[0] if len(sig) == 4 and sig[3] in (1, 3) and min(sig[1:3]) > 0 else None


def mediapipe_refusal(inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]],
                      quantization: str, num_labels: int) -> Optional[str]:
    """Why MediaPipe's ``ImageClassifier`` cannot take this file even with the RGB adapter and
    metadata (None: it can).

    Args:
        inputs, outputs: the ``inspect_tflite`` entries of the file.
        quantization: str. The export mode's name, named in the reason.
        num_labels: int. Class names of the bundle.

    Example:

    >>> spec = {"shape_signature": [-1, 28, 28, 1], "dtype": "int8"}
    >>> mediapipe_refusal([spec], [{"shape": [1, 10]}], "int8_io", 10)[:60]
    'MediaPipe ImageClassifier feeds float32 or uint8 images; the'
    """
    if len(inputs) == 3:
        return ("a text model (inputs ids, mask, segment_ids): MediaPipe's ImageClassifier takes "
                "images; kdkeras.export.mediapipe_text makes a text file ready for its "
                "TextClassifier")
    image = image_input(inputs)
    if image is None:
        shapes = [t["shape_signature"] for t in inputs]
        return (f"the model's input is not an image [batch, height, width, 1 or 3] (inputs "
                f"{shapes}); MediaPipe's ImageClassifier takes images only")
    if image["dtype"] not in MEDIAPIPE_INPUT_DTYPES:
        return (f"MediaPipe ImageClassifier feeds float32 or uint8 images; the "
                f"{quantization!r} file takes {image['dtype']}. Export with "
                "quantization='int8' (integer ops, float32 input) for a MediaPipe bundle")
    shapes = [list(t["shape"]) for t in outputs]
    if len(outputs) != 1 or len(shapes[0]) != 2 or shapes[0][1] != num_labels:
        return (f"MediaPipe ImageClassifier reads one [1, classes] score tensor with a score per "
                f"label; the file has outputs {shapes} for {num_labels} labels")
    return None


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _opcode_index(model: Any, code: int, version: int) -> int:
    schema = _schema()
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code and oc.version == version:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _new_buffer(model: Any, data: Optional[bytes] = None) -> int:
    buf = _schema().BufferT()
    if data is not None:
        buf.data = np.frombuffer(data, np.uint8).copy()
    model.buffers.append(buf)
    return len(model.buffers) - 1


def rgb_adapter(data: bytes) -> bytes:
    """``data`` (a TFLite file taking ``[batch, H, W, 1]``) with a ``[batch, H, W, 3]`` input
    averaged to one channel inside the graph.

    The new input has the old one's dtype and quantization (the mean of equal quantized values
    is that value), the old input becomes the output of the ``MEAN`` op, and the signature's
    input points at the new tensor. Every other tensor, buffer and op is unchanged.

    Args:
        data: bytes. A TFLite flatbuffer whose only input is a one-channel image.

    Returns:
        bytes. The adapted flatbuffer.

    Raises:
        ValueError: the file does not take exactly one ``[batch, H, W, 1]`` input.
    """
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = model.subgraphs[0]
    if len(model.subgraphs) != 1 or len(graph.inputs) != 1:
        raise ValueError(f"rgb_adapter takes a file with one subgraph and one input. Received: "
                         f"{len(model.subgraphs)} subgraph(s), {len(graph.inputs)} input(s).")
    old_index = int(graph.inputs[0])
    old = graph.tensors[old_index]
    shape = [int(v) for v in old.shape]
    signature = [int(v) for v in (old.shapeSignature if old.shapeSignature is not None
                                  else old.shape)]
    if len(shape) != 4 or shape[3] != 1:
        raise ValueError(f"rgb_adapter adapts a one-channel image input [batch, H, W, 1]. "
                         f"Received: input shape {signature}.")
    rgb = schema.TensorT()
    rgb.shape = np.asarray(shape[:3] + [3], np.int32)
    rgb.shapeSignature = (np.asarray(signature[:3] + [3], np.int32)
                          if old.shapeSignature is not None else None)
    rgb.type, rgb.quantization = old.type, old.quantization
    rgb.name, rgb.buffer = RGB_INPUT_NAME.encode(), _new_buffer(model)
    axis = schema.TensorT()
    axis.shape, axis.type = np.asarray([1], np.int32), schema.TensorType.INT32
    axis.name = b"image_rgb_channel_axis"
    axis.buffer = _new_buffer(model, np.asarray([3], "<i4").tobytes())
    graph.tensors += [rgb, axis]
    rgb_index, axis_index = len(graph.tensors) - 2, len(graph.tensors) - 1
    op = schema.OperatorT()
    integer = old.type not in (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16)
    op.opcodeIndex = _opcode_index(model, schema.BuiltinOperator.MEAN, 2 if integer else 1)
    op.inputs = np.asarray([rgb_index, axis_index], np.int32)
    op.outputs = np.asarray([old_index], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.ReducerOptions
    op.builtinOptions = schema.ReducerOptionsT()
    op.builtinOptions.keepDims = True
    graph.operators.insert(0, op)
    graph.inputs = np.asarray([rgb_index], np.int32)
    for sig in model.signatureDefs or []:
        for entry in sig.inputs or []:
            if entry.tensorIndex == old_index:
                entry.tensorIndex = rgb_index
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
