"""Evaluation primitives: full next-token distributions as numpy arrays, and the quality
statistics built on them (perplexity, KL divergence against a reference, top-1 agreement)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .._native import core


class Evaluator:
    """A model loaded for evaluation (no server, no sampling).

    ``logprobs(tokens)`` returns an ``(n, n_vocab)`` float32 array: row ``i`` is the
    log-softmax of the logits after ``tokens[: i + 1]``, i.e. log P(next token | prefix).
    Every call starts from an empty cache, so the same tokens give the same numbers. The GIL
    is released while llama.cpp computes; threads may share one Evaluator (their calls take
    turns on its single context).
    """

    def __init__(self, model_path: str | os.PathLike[str], *, context_size: int = 512,
                 threads: int | None = None, gpu_layers: int = 0) -> None:
        self._native = core.Evaluator(str(model_path), context_size, threads or 0, gpu_layers)

    @property
    def n_vocab(self) -> int:
        return self._native.n_vocab

    @property
    def context_size(self) -> int:
        return self._native.context_size

    def tokenize(self, text: str, *, add_special: bool = True) -> np.ndarray:
        """Token ids of ``text`` as int32 (with the model's BOS token when ``add_special``)."""
        return np.asarray(self._native.tokenize(text, add_special), dtype=np.int32)

    def logprobs(self, tokens: np.ndarray | list[int]) -> np.ndarray:
        """(len(tokens), n_vocab) next-token log-probabilities; see the class docstring."""
        return self._native.logprobs(np.ascontiguousarray(tokens, dtype=np.int32))

    def token_logprobs(self, tokens: np.ndarray | list[int]) -> np.ndarray:
        """log P(tokens[i + 1] | tokens[: i + 1]) for each i: (len(tokens) - 1,) float32."""
        toks = np.ascontiguousarray(tokens, dtype=np.int32)
        lp = self.logprobs(toks)
        return lp[np.arange(len(toks) - 1), toks[1:]]

    def close(self) -> None:
        """Free the model and context now (otherwise when garbage-collected)."""
        self._native = None  # type: ignore[assignment]

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class QualityStats:
    """Running quality statistics of a model against a reference over scored positions.

    Feed it chunks with :meth:`add`; read ``perplexity``, ``mean_kl`` (nats) and
    ``top1_agreement`` (share of positions where both models' most likely token agree).
    """

    n: int = 0
    nll_sum: float = 0.0
    ref_nll_sum: float = 0.0
    kl_values: list[np.ndarray] = field(default_factory=list, repr=False)
    top1_same: int = 0

    def add(self, ref_logprobs: np.ndarray, logprobs: np.ndarray, targets: np.ndarray) -> None:
        """Score positions whose next token is ``targets`` (rows of both arrays align)."""
        rows = np.arange(len(targets))
        ref = ref_logprobs.astype(np.float64)
        cur = logprobs.astype(np.float64)
        kl = np.sum(np.exp(ref) * (ref - cur), axis=1)
        self.kl_values.append(kl)
        self.nll_sum += float(-cur[rows, targets].sum())
        self.ref_nll_sum += float(-ref[rows, targets].sum())
        self.top1_same += int(np.sum(ref.argmax(axis=1) == cur.argmax(axis=1)))
        self.n += len(targets)

    @property
    def perplexity(self) -> float:
        return float(np.exp(self.nll_sum / self.n)) if self.n else float("nan")

    @property
    def reference_perplexity(self) -> float:
        return float(np.exp(self.ref_nll_sum / self.n)) if self.n else float("nan")

    @property
    def mean_kl(self) -> float:
        return float(np.concatenate(self.kl_values).mean()) if self.kl_values else float("nan")

    @property
    def kl_p99(self) -> float:
        return float(np.percentile(np.concatenate(self.kl_values), 99)) if self.kl_values else float("nan")

    @property
    def top1_agreement(self) -> float:
        return self.top1_same / self.n if self.n else float("nan")
