"""The logit adjustments chatfmt applies itself, the same on every backend: OpenAI's presence and
frequency penalties (over the generated tokens only), ``logit_bias``, a
:class:`~chatfmt.inference.backends.base.TokenConstraint`'s mask, and the per-token log-probabilities
of the adjusted distribution. One :class:`LogitAdjuster` serves one generation; the backends call
:meth:`LogitAdjuster.numpy_row` (llama.cpp) or :meth:`LogitAdjuster.torch_row` (transformers) with the
next-token scores, then :meth:`LogitAdjuster.accept` with the sampled token."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from .base import GenerationParams, TokenLogprob


def _clean(x: float) -> float:
    return float(x) if math.isfinite(x) else -math.inf


class LogitAdjuster:
    def __init__(self, params: GenerationParams) -> None:
        self.params = params
        self.counts: Counter[int] = Counter()
        self.penalize = bool(params.presence_penalty or params.frequency_penalty)
        self.record = params.wants_logprobs
        self.k = params.top_logprobs
        #: the log-softmax row of the last step (waiting for the sampled token)
        self._pending: Any = None

    @property
    def active(self) -> bool:
        p = self.params
        return self.penalize or bool(p.logit_bias) or p.constraint is not None or self.record

    # -- the adjustments ----------------------------------------------------------------------
    def _penalties(self) -> tuple[list[int], list[float]]:
        p = self.params
        ids = list(self.counts)
        subs = [p.frequency_penalty * c + p.presence_penalty for c in self.counts.values()]
        return ids, subs

    def _bias(self, n: int) -> tuple[list[int], list[float]]:
        items = [(t, b) for t, b in self.params.logit_bias.items() if t < n]
        return [t for t, _ in items], [b for _, b in items]

    def numpy_row(self, row: Any) -> Any:
        """Adjust a 1-D numpy float32 row in place and return it."""
        import numpy as np

        n = row.shape[0]
        if self.penalize and self.counts:
            ids, subs = self._penalties()
            keep = [i for i, t in enumerate(ids) if t < n]
            row[np.asarray([ids[i] for i in keep], dtype=np.int64)] -= np.asarray(
                [subs[i] for i in keep], dtype=np.float32
            )
        if self.params.logit_bias:
            ids, vals = self._bias(n)
            row[np.asarray(ids, dtype=np.int64)] += np.asarray(vals, dtype=np.float32)
        if self.params.constraint is not None:
            self.params.constraint.mask_logits(row)
        if self.record:
            x = row.astype(np.float64)
            m = np.max(x)
            self._pending = x - (m + np.log(np.sum(np.exp(x - m))))
        return row

    def torch_row(self, row: Any) -> Any:
        """Adjust a 1-D torch row in place and return it."""
        import torch

        n = row.shape[0]
        if self.penalize and self.counts:
            ids, subs = self._penalties()
            keep = [i for i, t in enumerate(ids) if t < n]
            idx = torch.tensor([ids[i] for i in keep], dtype=torch.long, device=row.device)
            row[idx] -= torch.tensor([subs[i] for i in keep], dtype=row.dtype, device=row.device)
        if self.params.logit_bias:
            ids, vals = self._bias(n)
            idx = torch.tensor(ids, dtype=torch.long, device=row.device)
            row[idx] += torch.tensor(vals, dtype=row.dtype, device=row.device)
        if self.params.constraint is not None:
            self.params.constraint.mask_logits(row)
        if self.record:
            self._pending = torch.log_softmax(row.detach().double(), dim=-1).cpu().numpy()
        return row

    # -- after sampling -----------------------------------------------------------------------
    def accept(self, token: int) -> TokenLogprob | None:
        """Record a sampled (non-stop) token: its log-probability when asked for, the penalty counts."""
        self.counts[token] += 1
        lp = self.logprob_of(token)
        return lp

    def logprob_of(self, token: int) -> TokenLogprob | None:
        """The :class:`TokenLogprob` of ``token`` in the last adjusted row (``None`` when not recording)."""
        import numpy as np

        row = self._pending
        self._pending = None
        if not self.record or row is None:
            return None
        chosen = _clean(row[token]) if token < row.shape[0] else -math.inf
        top: tuple[tuple[int, float], ...] = ()
        if self.k:
            k = min(self.k, row.shape[0])
            idx = np.argpartition(-row, k - 1)[:k]
            idx = idx[np.argsort(-row[idx], kind="stable")]
            top = tuple((int(i), float(row[i])) for i in idx if math.isfinite(row[i]))
        return TokenLogprob(int(token), chosen, top)
