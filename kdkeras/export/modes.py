"""Quantization modes: each one says how to turn a model into a ``.tflite`` file.

A :class:`QuantizationMode` is the extension point. Conversion (:func:`kdkeras.export.convert`)
makes a ``tf.lite.TFLiteConverter`` for the model and then asks the mode twice:

1. ``mode.configure(converter, representative_dataset, qat)`` sets the converter's options
   (optimizations, supported types, ops, input/output types);
2. ``mode.quantize(tflite_bytes, representative_dataset)`` may rewrite the converted flatbuffer
   (the ai-edge-quantizer recipes quantize the float32 file here).

Nothing else looks at a mode's name, so a newly registered mode works everywhere a name is
taken (``export_tflite``, ``export_android``, ``kdkeras export -q``, ``kdkeras run``).

Built-in modes (the names of :data:`QUANTIZATIONS`):

* ``none``: float32; numerically the Keras model (to ~1e-6).
* ``float16``: float16 weights (half the size), float32 compute.
* ``dynamic``: int8 weights, activations quantized on the fly; no calibration.
* ``int8``: full integer ops, float32 input/output; needs representative data (not for QAT).
* ``int8_io``: full integer ops *and* int8 input/output, for microcontrollers; needs
  representative data (not for QAT models).
* ``dynamic_wi8_afp32``: ai-edge-quantizer recipe, int8 weights, float32 activations.
* ``static_wi8_ai8``: ai-edge-quantizer recipe, int8 weights and activations, int8
  input/output; needs representative data.
* ``static_wi8_ai16``: ai-edge-quantizer recipe, int8 weights, int16 activations (and int16
  input/output); needs representative data.

The first five are :class:`ConverterMode` s (options of the TFLite converter); the last three are
:class:`AIEdgeQuantizerMode` s, which convert to float32 first, then quantize the flatbuffer with
ai-edge-quantizer (``pip install ai-edge-quantizer``).

Example:

>>> from kdkeras.export import QUANTIZATIONS
>>> QUANTIZATIONS.get("int8_io").integer_io, QUANTIZATIONS.get("float16").supported_types
(True, ('float16',))
>>> half = ConverterMode("half", "float16 weights", optimize=True, supported_types=("float16",))
>>> half.requires_representative_data(qat=False)
False
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

from kdkeras.registry import Registry

RepresentativeDataset = Optional[Callable[[], Any]]


@dataclasses.dataclass(frozen=True)
class QuantizationMode:
    """One named way to produce a ``.tflite`` file; subclasses implement the two steps.

    The base class converts to float32 unchanged (``configure`` sets nothing, ``quantize``
    returns the bytes as they are).

    Attributes:
        name: str. The registry name (``"int8"``).
        description: str. One line for ``--help`` and docs.
        needs_representative_data: bool. Whether calibration data is required (see
            :meth:`requires_representative_data` for QAT models).
        integer_io: bool. Whether the file's input/output tensors are integers.
    """

    name: str
    description: str
    needs_representative_data: bool = False
    integer_io: bool = False

    backend = "tflite_converter"
    """Which tool quantizes: ``"tflite_converter"`` or ``"ai_edge_quantizer"`` (informative)."""

    def requires_representative_data(self, qat: bool) -> bool:
        """Whether :func:`~kdkeras.export.convert` must refuse to run without calibration data.

        Args:
            qat: bool. The model holds TF-MOT quantization-aware-training wrappers.
        """
        return self.needs_representative_data

    def configure(self, converter: Any, representative_dataset: RepresentativeDataset,
                  qat: bool) -> None:
        """Sets the options of ``converter`` (a ``tf.lite.TFLiteConverter``) for this mode.

        Args:
            converter: the converter, made for the model, not yet run.
            representative_dataset: None, or a callable yielding lists of batches of one (the
                ``tf.lite`` convention), already validated against the model.
            qat: bool. The model holds quantization-aware-training wrappers.
        """

    def quantize(self, tflite_bytes: bytes, representative_dataset: RepresentativeDataset) -> bytes:
        """Returns the final flatbuffer, given the converter's output ``tflite_bytes``."""
        return tflite_bytes


@dataclasses.dataclass(frozen=True)
class ConverterMode(QuantizationMode):
    """A mode that is a set of ``tf.lite.TFLiteConverter`` options.

    QAT models carry their own quantization ranges, so they need no representative data and are
    converted without forcing integer-only ops (the converter reads the ranges from the graph).

    Attributes:
        optimize: bool. ``converter.optimizations = [tf.lite.Optimize.DEFAULT]``.
        supported_types: tuple of dtype names for ``converter.target_spec.supported_types``.
        integer_only_ops: bool. Restrict to ``TFLITE_BUILTINS_INT8`` (not for QAT models).
        io_type: Optional[str]. ``inference_input_type`` / ``inference_output_type`` (e.g.
            ``"int8"``); None keeps float32.
    """

    optimize: bool = False
    supported_types: Tuple[str, ...] = ()
    integer_only_ops: bool = False
    io_type: Optional[str] = None

    def requires_representative_data(self, qat: bool) -> bool:
        return self.needs_representative_data and not qat

    def configure(self, converter: Any, representative_dataset: RepresentativeDataset,
                  qat: bool) -> None:
        import tensorflow as tf

        if self.optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if self.supported_types:
            converter.target_spec.supported_types = [tf.as_dtype(t) for t in self.supported_types]
        # Only calibrating modes get the data: given to `dynamic`, the converter would switch
        # to full-integer quantization.
        if self.needs_representative_data and representative_dataset is not None:
            converter.representative_dataset = representative_dataset
        if self.integer_only_ops and not qat:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if self.io_type is not None:
            converter.inference_input_type = tf.as_dtype(self.io_type)
            converter.inference_output_type = tf.as_dtype(self.io_type)


@dataclasses.dataclass(frozen=True)
class AIEdgeQuantizerMode(QuantizationMode):
    """A mode that quantizes the float32 flatbuffer with an ai-edge-quantizer recipe.

    Attributes:
        recipe: str. Name of a recipe function of ``ai_edge_quantizer.recipe``
            (``"static_wi8_ai8"``).
    """

    recipe: str = ""
    backend = "ai_edge_quantizer"

    def quantize(self, tflite_bytes: bytes, representative_dataset: RepresentativeDataset) -> bytes:
        try:
            from ai_edge_quantizer import quantizer, recipe
        except ImportError as e:
            raise ImportError(
                f"quantization={self.name!r} needs ai-edge-quantizer. Install it with "
                "`pip install ai-edge-quantizer` (0.10 works with TF 2.21 and ai-edge-litert "
                "2.3).") from e
        qt = quantizer.Quantizer(bytearray(tflite_bytes), getattr(recipe, self.recipe)())
        calibration = None
        if qt.need_calibration:
            calibration = qt.calibrate(_calibration_data(tflite_bytes, representative_dataset))
        result = qt.quantize(calibration, enable_progress_report=False)
        return bytes(result.quantized_model)


def _calibration_data(float_bytes: bytes, representative_dataset: Callable[[], Any]) -> dict:
    """ai-edge-quantizer's calibration input: ``{signature: [{input_name: array}]}``."""
    from ai_edge_litert.interpreter import Interpreter

    sigs = Interpreter(model_content=float_bytes).get_signature_list()
    if len(sigs) != 1:
        raise ValueError(
            f"ai-edge-quantizer calibration needs a model with one signature. Received: "
            f"signatures={sorted(sigs)}.")
    key = next(iter(sigs))
    names = sigs[key]["inputs"]
    batches = [b if isinstance(b, dict) else dict(zip(names, b))
                for b in representative_dataset()]  # dicts: keyed by signature input name
    # One calibration step over all examples: ai-edge-quantizer 0.10 merges the min/max of
    # successive steps with a moving average, which under-estimates the ranges when each step
    # holds a single example (measured on a Dense(5) model: max output error 0.64-0.79 with
    # one example per step, < 0.01 with one step over all 64).
    merged = {n: np.concatenate([np.asarray(b[n]) for b in batches], axis=0) for n in names}
    return {key: [merged]}


QUANTIZATIONS = Registry("quantization")
"""Registry of :class:`QuantizationMode` by name; ``QUANTIZATIONS.names()`` lists them."""

for _mode in (
    ConverterMode("none", "float32, no quantization"),
    ConverterMode("float16", "float16 weights (2x smaller), float32 compute",
                  optimize=True, supported_types=("float16",)),
    ConverterMode("dynamic", "int8 weights, activations quantized on the fly", optimize=True),
    ConverterMode("int8", "full integer ops, float32 input/output",
                  needs_representative_data=True, optimize=True, integer_only_ops=True),
    ConverterMode("int8_io", "full integer ops and int8 input/output (microcontrollers)",
                  needs_representative_data=True, integer_io=True, optimize=True,
                  integer_only_ops=True, io_type="int8"),
    AIEdgeQuantizerMode("dynamic_wi8_afp32",
                        "ai-edge-quantizer: int8 weights, float32 activations",
                        recipe="dynamic_wi8_afp32"),
    AIEdgeQuantizerMode("static_wi8_ai8",
                        "ai-edge-quantizer: int8 weights and activations, int8 input/output",
                        needs_representative_data=True, integer_io=True,
                        recipe="static_wi8_ai8"),
    AIEdgeQuantizerMode("static_wi8_ai16", "ai-edge-quantizer: int8 weights, int16 activations",
                        needs_representative_data=True, recipe="static_wi8_ai16"),
):
    QUANTIZATIONS.register(_mode.name, _mode)
del _mode


def get_mode(quantization: Union[str, QuantizationMode]) -> QuantizationMode:
    """The mode itself, or the one registered under the name ``quantization``.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if isinstance(quantization, QuantizationMode):
        return quantization
    return QUANTIZATIONS.get(quantization)


__all__ = ["QUANTIZATIONS", "QuantizationMode", "ConverterMode", "AIEdgeQuantizerMode",
           "get_mode"]
