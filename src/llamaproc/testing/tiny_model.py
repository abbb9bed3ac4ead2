"""Tiny random-weight llama GGUF models for tests: milliseconds to write, no download."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..messages import message

# A ChatML-style template: enough for /v1/chat/completions to format messages.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIAL = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _vocabulary(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """SentencePiece-style vocabulary: specials, the 256 byte tokens (so any text encodes),
    then word pieces until ``n_vocab``."""
    tokens = list(_SPECIAL)
    types = [2, 3, 3, 3, 3]  # unknown, then control tokens
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256  # byte
    pieces: list[str] = []
    for a in _LETTERS:
        pieces += ["\u2581" + a, a]
    for a in _LETTERS:
        for b in _LETTERS:
            pieces += ["\u2581" + a + b, a + b]
    for piece in pieces:
        if len(tokens) >= n_vocab:
            break
        tokens.append(piece)
        types.append(1)  # normal
    scores = [0.0] * len(_SPECIAL) + [-1000.0] * 256
    scores += [-float(len(t)) * 0.1 - i * 1e-4 for i, t in enumerate(tokens[len(scores):])]
    return tokens, scores, types


def make_tiny_model(path: str | os.PathLike[str], *, n_layers: int = 2, n_embd: int = 64,
                    n_vocab: int = 512, n_head: int = 4, n_head_kv: int = 2, n_ff: int = 128,
                    context_length: int = 2048, seed: int = 0) -> Path:
    """Write a tiny random-weight llama-architecture GGUF that llama.cpp loads and generates from.

    The model has a working SentencePiece tokenizer with byte fallback (any text encodes), a
    chat template, and F32 weights drawn from a seeded generator, so the same arguments give
    the same file. Its output is gibberish: it exercises the machinery, not language.

    Args:
        path: Where to write the ``.gguf`` file (parent folders are created).
        n_layers: Transformer blocks.
        n_embd: Embedding width; a multiple of ``n_head``.
        n_vocab: Vocabulary size, at least 261 (5 special + 256 byte tokens).
        n_head: Attention heads.
        n_head_kv: Key/value heads (grouped-query attention when below ``n_head``).
        n_ff: Feed-forward width.
        context_length: Training context length recorded in the file.
        seed: Seed of the weights.

    Returns:
        The path written.
    """
    try:
        import gguf  # writes the file; a test-time dependency
    except ImportError as exc:
        raise ImportError(message("testing.needs_gguf")) from exc

    if n_vocab < len(_SPECIAL) + 256:
        raise ValueError(message("testing.n_vocab", minimum=len(_SPECIAL) + 256, value=n_vocab))
    if n_embd % n_head or n_head % n_head_kv:
        raise ValueError(message("testing.n_embd"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    head_dim = n_embd // n_head
    n_embd_kv = head_dim * n_head_kv

    def weight(*shape: int) -> np.ndarray:
        values: np.ndarray = (rng.standard_normal(shape) * (1.0 / np.sqrt(shape[-1]))).astype(np.float32)
        return values

    tokens, scores, types = _vocabulary(n_vocab)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("llamaproc-tiny")
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(4)  # <|im_end|> ends a chat turn
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHAT_TEMPLATE)

    vocab = len(tokens)
    writer.add_tensor("token_embd.weight", weight(vocab, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", weight(vocab, n_embd))
    for i in range(n_layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(n_embd_kv, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(n_embd_kv, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
