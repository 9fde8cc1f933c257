"""What a :func:`~chatfmt.train.prepare` run did: counts, rejections by rule, tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that was not written: where it was and which rule it broke."""

    source: str
    record: int
    rule: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "record": self.record, "rule": self.rule, "message": self.message}


@dataclass(slots=True)
class Report:
    """Counts of a run; ``read == written + rejected`` always holds at the end."""

    read: int = 0
    written: int = 0
    rejected_by_rule: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    tokens_total: int = 0
    tokens_trained: int = 0
    #: rows written when packing (``written`` counts the examples in them); None when not packing
    packed_sequences: int | None = None
    output: str | None = None
    rejects: str | None = None
    seconds: float = 0.0
    #: examples written by length: ``"<=64"``, ``"<=128"``, ... (powers of two), in token counts
    length_histogram: dict[str, int] = field(default_factory=dict)
    #: worker processes (local engine) or Ray (``"ray"``) that encoded the records
    engine: str = "local"
    workers: int = 1
    #: records written whose prompt lacks something they carry, by what: ``{"tools": n}`` (the
    #: format does not render tools)
    not_rendered: dict[str, int] = field(default_factory=dict)
    #: the template keyword arguments given (``template_kwargs``) and the ones of them the format
    #: never reads (they have no effect on any record; a NotRenderedWarning said so at the start)
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    template_kwargs_not_read: tuple[str, ...] = ()

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_rule.values())

    def reject(self, rule: str) -> None:
        self.rejected_by_rule[rule] = self.rejected_by_rule.get(rule, 0) + 1

    def count_length(self, n: int) -> None:
        """Count one written example of ``n`` tokens in :attr:`length_histogram`."""
        bucket = 64
        while bucket < n:
            bucket *= 2
        key = f"<={bucket}"
        self.length_histogram[key] = self.length_histogram.get(key, 0) + 1

    @property
    def records_per_second(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_total / self.seconds if self.seconds else 0.0

    def check(self) -> None:
        """Assert the accounting invariant: every record read was written or rejected."""
        assert self.read == self.written + self.rejected, (
            f"read {self.read} != written {self.written} + rejected {self.rejected}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "written": self.written,
            "rejected": self.rejected,
            "rejected_by_rule": dict(sorted(self.rejected_by_rule.items())),
            "truncated": self.truncated,
            "tokens_total": self.tokens_total,
            "tokens_trained": self.tokens_trained,
            "packed_sequences": self.packed_sequences,
            "output": self.output,
            "rejects": self.rejects,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_per_second, 1),
            "tokens_per_second": round(self.tokens_per_second, 1),
            "length_histogram": dict(sorted(self.length_histogram.items(), key=lambda kv: int(kv[0][2:]))),
            "engine": self.engine,
            "workers": self.workers,
            "not_rendered": dict(sorted(self.not_rendered.items())),
            "template_kwargs": dict(self.template_kwargs),
            "template_kwargs_not_read": list(self.template_kwargs_not_read),
        }

    def summary(self) -> str:
        """One line: ``read 10, written 8, rejected 2 (role: 1, max_length: 1), ...``."""
        rules = ", ".join(f"{r}: {n}" for r, n in sorted(self.rejected_by_rule.items()))
        rejected = f"rejected {self.rejected}" + (f" ({rules})" if rules else "")
        packed = "" if self.packed_sequences is None else f" packed into {self.packed_sequences} sequences"
        return (
            f"read {self.read}, written {self.written}{packed}, {rejected}, truncated {self.truncated}, "
            f"{self.tokens_total} tokens ({self.tokens_trained} trained)"
        )
