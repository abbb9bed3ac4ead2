"""QuantType: llama.cpp's model file types (``llama_ftype``).

The enum is defined by the native module from the llama.h it was built against, so it lists
exactly the types that the compiled-in quantizer knows (members and values are llama.cpp's;
``_core.pyi`` spells them out for type checkers). Each member's docstring is llama.cpp's own
description, e.g. ``QuantType.Q4_K_M`` is "Q4_K - Medium".

    QuantType.parse("q4_k_m")   # any case, "-" or "_", with or without MOSTLY_
    QuantType(15).name          # "Q4_K_M"
    QuantType.IQ2_XS.needs_imatrix

This module imports nothing of llamaproc but the native module, so that both gguf_info and
quantization can use it.
"""

from __future__ import annotations

from .._native import core

QuantType = core.QuantType

__all__ = ["QuantType"]
