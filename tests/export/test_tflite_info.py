import gzip
import json

import pytest

from kdkeras.export import format_inspection, inspect_tflite
from kdkeras.export.tflite_info import op_counts


def test_float_model_contents(converted):
    path = converted("none")
    info = inspect_tflite(path)
    data = open(path, "rb").read()
    assert info["size_bytes"] == len(data)
    assert info["gzip_bytes"] == len(gzip.compress(data, compresslevel=9, mtime=0))
    assert info["op_counts"] == {"CONV_2D": 1, "FULLY_CONNECTED": 1, "MAX_POOL_2D": 1,
                                 "RESHAPE": 1}
    assert info["num_ops"] == 4 and info["subgraph_count"] == 1
    (inp,), (out,) = info["inputs"], info["outputs"]
    assert inp["shape"] == [1, 8, 8, 1] and inp["shape_signature"] == [-1, 8, 8, 1]
    assert inp["dtype"] == "float32" and not inp["quantized"]
    assert out["shape_signature"] == [-1, 4]
    assert info["tensor_count"] == sum(info["tensor_dtypes"].values())
    json.dumps(info)  # JSON-serializable for `kdkeras inspect --json`


def test_int8_io_quantization_params_match_the_interpreter(converted):
    from ai_edge_litert.interpreter import Interpreter

    path = converted("int8_io")
    info = inspect_tflite(path)
    d = Interpreter(model_path=path).get_input_details()[0]
    assert info["inputs"][0]["dtype"] == "int8" and info["inputs"][0]["quantized"]
    assert info["inputs"][0]["scale"] == pytest.approx(d["quantization"][0])
    assert info["inputs"][0]["zero_point"] == d["quantization"][1]
    # inputs are in [0, 1): the calibrated input range maps 0 to -128
    assert info["inputs"][0]["zero_point"] == -128
    assert info["inputs"][0]["scale"] == pytest.approx(1 / 255, rel=0.05)


def test_op_counts_of_float16_file_include_dequantize(converted):
    ops = op_counts(open(converted("float16"), "rb").read())
    assert ops["DEQUANTIZE"] >= 2 and ops["CONV_2D"] == 1


def test_format_mentions_sizes_and_ops(converted):
    text = format_inspection(inspect_tflite(converted("int8_io")))
    assert "FULLY_CONNECTED" in text and "gzipped" in text and "zero_point=-128" in text


def test_not_a_tflite_file(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_text("cat\ndog\n")
    with pytest.raises(ValueError, match=r"b'dog\\n'.*labels\.txt"):
        inspect_tflite(str(p))
