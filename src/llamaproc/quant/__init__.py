"""Model files: quantize a GGUF (:func:`quantize`), the quantization types (:class:`QuantType`),
read a file's header (:func:`inspect_model`), and measure a quantization's quality against its
source (:class:`Evaluator`). Every name is also at the top level (``llamaproc.quantize``, ...)."""

from __future__ import annotations

from .evaluate import Evaluator, QualityStats
from .model_info import ModelInfo, inspect_model
from .quantize_file import QuantizeResult, quantize
from .types import QuantType

__all__ = ["quantize", "QuantizeResult", "QuantType", "inspect_model", "ModelInfo", "Evaluator", "QualityStats"]
