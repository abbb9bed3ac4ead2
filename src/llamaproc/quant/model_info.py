"""inspect_model(): what a GGUF model file is, read from its header without loading weights."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .._native import core
from .types import QuantType


@dataclass(frozen=True)
class ModelInfo:
    """A GGUF model's header facts.

    Attributes:
        path: The file.
        architecture: ``general.architecture``, e.g. ``"llama"``.
        name: ``general.name`` when present.
        parameters: Total number of weights (elements of all tensors).
        file_type: Nominal type (``general.file_type``) as a QuantType name, e.g. ``"Q4_K_M"``.
        file_bytes: Size of the file.
        context_length: Training context length.
        layers: Transformer blocks.
        embedding_size: Embedding width.
        vocab_size: Tokens in the vocabulary.
        has_chat_template: Whether ``tokenizer.chat_template`` is set.
        tensor_types: Tensor count per ggml type, e.g. ``{"q4_K": 120, "f32": 61}`` — the real
            mix, which can differ from the nominal file type (fallbacks for odd shapes).
        tensor_type_bytes: Bytes per ggml type.
        gguf_version: Format version.
        metadata: Every scalar metadata value.
    """

    path: Path
    architecture: str
    name: str | None
    parameters: int
    file_type: str | None
    file_bytes: int
    context_length: int | None
    layers: int | None
    embedding_size: int | None
    vocab_size: int | None
    has_chat_template: bool
    tensor_types: dict[str, int]
    tensor_type_bytes: dict[str, int]
    gguf_version: int
    metadata: dict[str, object] = field(repr=False)

    @property
    def bits_per_weight(self) -> float:
        tensor_bytes = sum(self.tensor_type_bytes.values())
        return tensor_bytes * 8 / self.parameters if self.parameters else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path), "architecture": self.architecture, "name": self.name,
            "parameters": self.parameters, "file_type": self.file_type, "file_bytes": self.file_bytes,
            "bits_per_weight": round(self.bits_per_weight, 3), "context_length": self.context_length,
            "layers": self.layers, "embedding_size": self.embedding_size, "vocab_size": self.vocab_size,
            "has_chat_template": self.has_chat_template, "tensor_types": self.tensor_types,
            "tensor_type_bytes": self.tensor_type_bytes, "gguf_version": self.gguf_version,
        }


def inspect_model(path: str | os.PathLike[str]) -> ModelInfo:
    """Read a GGUF file's header (metadata and tensor table; no weights).

    Raises:
        ModelLoadError: missing, not GGUF, truncated or corrupt header.
    """
    header = core.read_gguf_header(str(path))
    meta: dict[str, object] = header["metadata"]
    arch = str(meta.get("general.architecture", ""))

    def arch_int(key: str) -> int | None:
        value = meta.get(f"{arch}.{key}")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    parameters = 0
    for _name, ttype, n_elements, n_bytes in header["tensors"]:
        counts[ttype] += 1
        sizes[ttype] += n_bytes
        parameters += n_elements
    file_type = meta.get("general.file_type")
    try:
        file_type_name = QuantType(file_type).name if isinstance(file_type, int) else None
    except ValueError:
        file_type_name = f"unknown ({file_type})"
    vocab = header["array_lengths"].get("tokenizer.ggml.tokens")
    return ModelInfo(
        path=Path(path), architecture=arch, name=meta.get("general.name"), parameters=parameters,  # type: ignore[arg-type]
        file_type=file_type_name, file_bytes=header["file_size"], context_length=arch_int("context_length"),
        layers=arch_int("block_count"), embedding_size=arch_int("embedding_length"),
        vocab_size=arch_int("vocab_size") or vocab, has_chat_template="tokenizer.chat_template" in meta,
        tensor_types=dict(sorted(counts.items())), tensor_type_bytes=dict(sorted(sizes.items())),
        gguf_version=header["version"], metadata=meta,
    )
