"""Which built-in format is this template? Decided by behaviour, not by looking at its source.

:func:`detect` renders the probe conversations (:mod:`chatfmt.formats.probes`) with the candidate and
with every registered built-in, under a frozen clock, and compares the texts:

- ``identical``: every probe renders the same (a probe that raises in both counts as the same);
- ``equivalent``: the plain-chat (``core``) probes render the same, either all those with a system
  message or all those without one: the two serialize turns alike and differ at most in how a system
  prompt is handled (a default system prompt, a vendor's placement) and in tools, reasoning or edge
  cases. The differing probes are reported with their first differing characters; other built-ins that
  match exactly as well are listed in ``also``;
- ``closest``: neither of those, but one built-in writes the same turn markup as the template, or
  nearly: its *markup similarity* (below) is at least :data:`CLOSE_ENOUGH` (0.7). ``format`` names it
  and ``differences`` lists every probe it renders differently, with the first differing characters
  (GLM-4.1V-Thinking's template is closest to ``glm-4``: the same turns, its own reasoning and tool
  handling). It is a starting point for writing the template's format, not a replacement for it;
- ``unknown``: nothing is that close; the closest built-ins are still listed, with their scores.

Markup similarity: on the plain-chat (``core``) probes, every message's content is cut out of both
rendered texts, and the rest (role markers, separators, BOS/EOS, default system prompts) is compared
as sequences of words, runs of white space and punctuation marks, with
:class:`difflib.SequenceMatcher` (``ratio``: the share of pieces in common, 0 to 1); a probe
that one side renders and the other raises on scores 0, one that raises in both is left out. The
similarity is the higher of two means: over the probes with a system message and over those without
one (as for ``equivalent``, a vendor's own handling of the system prompt does not hide that the turns
are alike). A template that renders nothing like a built-in (``### USER >> ...``) scores below 0.5.

Best first means, for ``identical`` and ``equivalent``: most probes the same; then most rendered the
same (not merely raising in both); then most ``core`` probes the same. For ``closest`` and ``unknown``:
highest markup similarity; then the highest mean over all ``core`` probes; then as before.

A template with no special tokens of its own (a bare ``.jinja``) is rendered with each built-in's
BOS/EOS (the tokens a tokenizer would supply); a template from a tokenizer_config.json, model
directory or GGUF keeps its own and borrows only the ones it lacks. A template named ``tool_use``
(transformers renders it only when tools are given) is compared on the probes with tools only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Literal

from . import registry
from .base import ChatFormat
from .family import Family
from .jinja import JinjaFormat
from .probes import PROBES, Outcome, Probe, render_probe

Verdict = Literal["identical", "equivalent", "closest", "unknown"]

#: the markup similarity (see the module docstring) from which a built-in is ``closest``
CLOSE_ENOUGH = 0.7

#: how many characters of context a difference shows before and after its first differing character
CONTEXT_BEFORE = 16
CONTEXT_AFTER = 40

_VISIBLE = {"\n": "↵", "\t": "⇥", "\r": "␍", "\x0b": "␋", "\x0c": "␌", "\x1b": "␛", "\x00": "␀", "\x7f": "␡"}


def visible(text: str, *, spaces: bool = False) -> str:
    """``text`` with control characters shown as symbols (``\\n`` as ``↵``, ``\\t`` as ``⇥``, other C0
    controls as their U+24xx picture) and, with ``spaces=True``, spaces as ``·``."""
    out = []
    for ch in text:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif ord(ch) < 0x20:
            out.append(chr(0x2400 + ord(ch)))
        elif spaces and ch == " ":
            out.append("·")
        else:
            out.append(ch)
    return "".join(out)


def first_difference(a: str, b: str) -> int:
    """Index of the first character where ``a`` and ``b`` differ (``min(len)`` if one is a prefix)."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass(frozen=True)
class ProbeDifference:
    """How one probe renders differently with two formats (``a``: the candidate, ``b``: the other)."""

    probe: str
    a: Outcome
    b: Outcome

    @property
    def offset(self) -> int | None:
        """Where the texts first differ; ``None`` when one side raised."""
        if self.a.text is None or self.b.text is None:
            return None
        return first_difference(self.a.text, self.b.text)

    def excerpt(self, side: Literal["a", "b"]) -> str:
        """The differing region of one side with control characters visible (or the error it raised)."""
        out = self.a if side == "a" else self.b
        if out.text is None:
            return f"raises {out.error}"
        at = self.offset or 0
        start = max(0, at - CONTEXT_BEFORE)
        head = "…" if start > 0 else ""
        tail = "…" if at + CONTEXT_AFTER < len(out.text) else ""
        chunk = out.text[start : at + CONTEXT_AFTER]
        if at >= len(out.text):  # the other text goes on where this one ends
            return head + visible(chunk) + "⟨end⟩"
        return head + visible(chunk) + tail

    def summary(self) -> str:
        where = f" at char {self.offset}" if self.offset is not None else ""
        return f"{self.probe}{where}: {self.excerpt('a')!r} vs {self.excerpt('b')!r}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe": self.probe,
            "offset": self.offset,
            "a": self.excerpt("a"),
            "b": self.excerpt("b"),
            "a_error": self.a.error,
            "b_error": self.b.error,
        }


@dataclass(frozen=True)
class CandidateScore:
    """How a built-in compares with the candidate over the probes."""

    format: str
    matched: tuple[str, ...]
    differences: tuple[ProbeDifference, ...]
    core_total: int
    core_matched: int
    #: probes rendered by both and equal (``matched`` also counts probes that raise in both)
    rendered_matched: int = 0
    #: markup similarity (0 to 1; see the module docstring), computed when the verdict is ``closest``
    #: or ``unknown`` (else 0)
    similarity: float = 0.0
    #: the mean markup similarity over all ``core`` probes (the tie-breaker)
    similarity_all: float = 0.0

    @property
    def matches(self) -> int:
        return len(self.matched)

    @property
    def total(self) -> int:
        return len(self.matched) + len(self.differences)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "matches": self.matches,
            "rendered_matches": self.rendered_matched,
            "probes": self.total,
            "similarity": round(self.similarity, 3),
            "differing": [d.probe for d in self.differences],
        }


@dataclass(frozen=True)
class DetectResult:
    """What :func:`detect` decided. ``format`` is the best built-in (the closest one for ``closest``,
    ``None`` when unknown); ``also`` lists other built-ins that behave identically (aliases in
    behaviour, e.g. a format and its superset on these probes); ``differences`` the probes ``format``
    renders differently; ``candidates`` are the closest built-ins, best first."""

    source: str
    verdict: Verdict
    format: str | None
    also: tuple[str, ...] = ()
    differences: tuple[ProbeDifference, ...] = ()
    candidates: tuple[CandidateScore, ...] = field(default=())
    probes: int = 0

    @property
    def matched(self) -> bool:
        """True when the template is a built-in (identical or equivalent; ``closest`` is not)."""
        return self.verdict in ("identical", "equivalent")

    def summary(self) -> str:
        if self.verdict == "identical":
            also = f" (also identical: {', '.join(self.also)})" if self.also else ""
            return f"identical to {self.format}{also}"
        if self.verdict == "equivalent":
            also = f" (as close: {', '.join(self.also)})" if self.also else ""
            return f"equivalent to {self.format} except {', '.join(d.probe for d in self.differences)}{also}"
        if self.verdict == "closest":
            c = self.candidates[0]
            differing = ", ".join(d.probe for d in self.differences)
            return (
                f"closest to {self.format} ({c.similarity:.0%} markup similarity, {c.matches}/{c.total} probes "
                f"the same; differs in {differing})"
            )
        best = ", ".join(
            f"{c.format} {c.matches}/{c.total} ({c.similarity:.0%})" for c in self.candidates[:3]
        )
        return f"unknown (closest: {best})" if best else "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "verdict": self.verdict,
            "format": self.format,
            "also": list(self.also),
            "summary": self.summary(),
            "probes": self.probes,
            "differences": [d.to_dict() for d in self.differences],
            "candidates": [c.to_dict() for c in self.candidates],
        }


# -- rendering -----------------------------------------------------------------------------------------

_builtin_cache: dict[tuple[str, tuple[str, ...]], tuple[Outcome, ...]] = {}


def builtin_tokens(fmt: ChatFormat | Family) -> dict[str, str]:
    """The BOS/EOS a tokenizer of this built-in (a format, or its family) supplies to a template
    (``bos_token``/``eos_token``)."""
    info = fmt.info
    out = {}
    bos = info.bos_token or info.special_tokens.get("bos") or info.special_tokens.get("bos_token")
    eos = info.eos_token or info.special_tokens.get("eos") or info.special_tokens.get("eos_token")
    if bos:
        out["bos_token"] = bos
    if eos:
        out["eos_token"] = eos
    return out


def _builtin_outcomes(name: str, probes: tuple[Probe, ...]) -> tuple[Outcome, ...]:
    key = (name, tuple(p.id for p in probes))
    if key not in _builtin_cache:
        fmt = registry.family(name).create()
        _builtin_cache[key] = tuple(render_probe(fmt, p) for p in probes)
    return _builtin_cache[key]


class _Candidate:
    """Renders the probes with the candidate, once per set of borrowed special tokens."""

    def __init__(self, fmt: ChatFormat, probes: tuple[Probe, ...]) -> None:
        self.fmt = fmt
        self.probes = probes
        self._cache: dict[tuple[tuple[str, str], ...], tuple[Outcome, ...]] = {}

    def borrowed(self, other: ChatFormat | Family) -> dict[str, str]:
        if not isinstance(self.fmt, JinjaFormat):
            return {}
        own = self.fmt.special_tokens
        return {k: v for k, v in builtin_tokens(other).items() if not own.get(k)}

    def outcomes(self, tokens: dict[str, str]) -> tuple[Outcome, ...]:
        key = tuple(sorted(tokens.items()))
        if key not in self._cache:
            template_tokens: dict[str, Any] = dict(
                tokens
            )  # bos_token / eos_token, never render_probe's own `now`
            self._cache[key] = tuple(render_probe(self.fmt, p, **template_tokens) for p in self.probes)
        return self._cache[key]


def compare(
    a: tuple[Outcome, ...], b: tuple[Outcome, ...], probes: tuple[Probe, ...], name: str
) -> CandidateScore:
    """Score outcome lists ``a`` (candidate) and ``b`` (format ``name``) probe by probe."""
    matched: list[str] = []
    diffs: list[ProbeDifference] = []
    core_total = core_matched = rendered = 0
    for p, x, y in zip(probes, a, b):
        same = x.same_as(y)
        if "core" in p.tags:
            core_total += 1
            core_matched += same
        if same:
            matched.append(p.id)
            rendered += x.ok
        else:
            diffs.append(ProbeDifference(p.id, x, y))
    return CandidateScore(name, tuple(matched), tuple(diffs), core_total, core_matched, rendered)


def _rank(score: CandidateScore) -> tuple[int, int, int]:
    return (score.matches, score.rendered_matched, score.core_matched)


def _closeness(score: CandidateScore) -> tuple[float, float, int, int, int]:
    return (round(score.similarity, 6), round(score.similarity_all, 6), *_rank(score))


def _contents(probe: Probe) -> list[str]:
    """The probe's message contents (as given and stripped), longest first."""
    out: set[str] = set()
    for m in probe.messages:
        c = m.get("content")
        if isinstance(c, str) and c.strip():
            out.update((c, c.strip()))
    return sorted(out, key=len, reverse=True)


def markup(text: str, probe: Probe) -> str:
    """``text`` (a rendering of ``probe``) with every message content cut out (a NUL in its place):
    what the format itself wrote."""
    for c in _contents(probe):
        text = text.replace(c, "\x00")
    return text


_PIECE = re.compile(r"\w+|\s+|[^\w\s]")
_pieces_cache: dict[tuple[str, str], tuple[str, ...]] = {}
#: how many pieces of each end of a long markup are compared
_ENDS = 200


def _pieces(text: str, probe: Probe) -> tuple[str, ...]:
    """The markup of a rendering as words, runs of white space and single punctuation marks."""
    key = (probe.id, text)
    if key not in _pieces_cache:
        if len(_pieces_cache) > 4096:
            _pieces_cache.clear()
        pieces = _PIECE.findall(markup(text, probe))
        if len(pieces) > 2 * _ENDS:  # a long default prompt: its two ends (bounded cost, quadratic at worst)
            pieces = pieces[:_ENDS] + pieces[-_ENDS:]
        _pieces_cache[key] = tuple(pieces)
    return _pieces_cache[key]


def _means(groups: dict[bool, list[float]]) -> tuple[float, float]:
    means = [sum(v) / len(v) for v in groups.values() if v]
    every = groups[True] + groups[False]
    return (max(means) if means else 0.0, sum(every) / len(every) if every else 0.0)


def markup_similarity(
    a: tuple[Outcome, ...], b: tuple[Outcome, ...], probes: tuple[Probe, ...], *, bound: bool = False
) -> tuple[float, float]:
    """``(similarity, mean)``: the markup similarity of two outcome lists (see the module docstring)
    and the mean over all ``core`` probes. ``bound=True``: a cheap upper bound of both
    (``SequenceMatcher.quick_ratio``)."""
    groups: dict[bool, list[float]] = {True: [], False: []}
    for p, x, y in zip(probes, a, b):
        if "core" not in p.tags or (x.text is None and y.text is None):
            continue
        if x.text is None or y.text is None:
            r = 0.0
        else:
            m = SequenceMatcher(None, _pieces(x.text, p), _pieces(y.text, p), autojunk=False)
            r = m.quick_ratio() if bound else m.ratio()
        groups[_has_system(p)].append(r)
    return _means(groups)


def _is_equivalent(best: CandidateScore, probes: tuple[Probe, ...]) -> bool:
    core = [p for p in probes if "core" in p.tags]
    with_system = [p.id for p in core if _has_system(p)]
    without = [p.id for p in core if not _has_system(p)]
    matched = set(best.matched)
    if not core:  # e.g. a tool_use template compared on the tool probes alone
        return best.matches * 2 >= best.total
    return (bool(with_system) and matched.issuperset(with_system)) or (
        bool(without) and matched.issuperset(without)
    )


def _has_system(probe: Probe) -> bool:
    return any(m.get("role") == "system" for m in probe.messages)


def tool_use_only(fmt: ChatFormat) -> bool:
    """A template named ``tool_use`` (``dir:tool_use`` from a config, ``…-tool_use.jinja`` as a file)."""
    name = fmt.info.name.removesuffix(".jinja")
    return isinstance(fmt, JinjaFormat) and (
        name.endswith(":tool_use") or name.endswith("-tool_use") or name.endswith("_tool_use")
    )


def _as_format(fmt_or_path: Any, template: str | None) -> ChatFormat:
    if isinstance(fmt_or_path, ChatFormat):
        return fmt_or_path
    from .loader import load_format

    return load_format(fmt_or_path, template=template)


def detect(
    fmt_or_path: ChatFormat | str | Path,
    *,
    template: str | None = None,
    probes: tuple[Probe, ...] = PROBES,
    top: int = 5,
    closest: bool = True,
) -> DetectResult:
    """Decide which built-in format ``fmt_or_path`` is, by rendering the probe conversations with it
    and with every built-in (see the module docstring for the verdicts).

    ``fmt_or_path`` is a format or anything :func:`~chatfmt.load_format` accepts (a ``.jinja``, a
    tokenizer_config.json, a model directory, a GGUF); ``template`` picks a named template.
    ``closest=False`` skips the markup similarity (the cost of the ``closest`` verdict): what is neither
    identical nor equivalent is then ``unknown``, its candidates ranked by probes matched.
    """
    fmt = _as_format(fmt_or_path, template)
    source = fmt.info.source or (str(fmt_or_path) if not isinstance(fmt_or_path, ChatFormat) else fmt.name)
    if tool_use_only(fmt):
        probes = tuple(p for p in probes if p.tools) or probes
    cand = _Candidate(fmt, probes)
    if isinstance(fmt, JinjaFormat):
        # a pinned official template is its family's, among built-ins the probes cannot tell apart
        pinned = registry.pinned_family(fmt.template)
        self_name = pinned.name if pinned is not None else None
    else:
        self_name = registry.resolve(fmt.name)
    scores: list[CandidateScore] = []
    outcomes: dict[str, tuple[tuple[Outcome, ...], tuple[Outcome, ...]]] = {}
    for name, family in sorted(registry.FAMILIES.items()):
        ours = cand.outcomes(cand.borrowed(family))
        theirs = _builtin_outcomes(name, probes)
        outcomes[name] = (ours, theirs)
        scores.append(compare(ours, theirs, probes, name))
    # best first (see the module docstring), then the format itself, then by name
    scores.sort(key=lambda s: (*(-k for k in _rank(s)), s.format != self_name, s.format))
    best = scores[0] if scores else None
    total = len(probes)
    if best is None or best.rendered_matched == 0:
        return _closest(source, scores, outcomes, probes, top, closest)
    if best.matches == best.total:
        also = tuple(s.format for s in scores[1:] if s.matches == s.total)
        return DetectResult(source, "identical", best.format, also, (), tuple(scores[:top]), total)
    if _is_equivalent(best, probes):
        # built-ins that match exactly as well are reported with it: on these probes the template
        # cannot tell them apart (e.g. ChatML with a BOS variable: chatml, or hermes-2-pro's BOS + ChatML)
        also = tuple(s.format for s in scores[1:] if _rank(s) == _rank(best))
        return DetectResult(
            source, "equivalent", best.format, also, best.differences, tuple(scores[:top]), total
        )
    return _closest(source, scores, outcomes, probes, top, closest)


def _closest(
    source: str,
    scores: list[CandidateScore],
    outcomes: dict[str, tuple[tuple[Outcome, ...], tuple[Outcome, ...]]],
    probes: tuple[Probe, ...],
    top: int,
    closest: bool = True,
) -> DetectResult:
    """The ``closest`` or ``unknown`` verdict: the candidates ranked by markup similarity. The exact
    similarity is computed best bound first, until no other candidate can enter the ``top`` ones."""
    if not closest:
        return DetectResult(source, "unknown", None, (), (), tuple(scores[:top]), len(probes))
    bounds = sorted(
        ((markup_similarity(*outcomes[s.format], probes, bound=True), s) for s in scores),
        key=lambda bs: (-bs[0][0], -bs[0][1], bs[1].format),
    )
    ranked: list[CandidateScore] = []
    for bound, s in bounds:
        if len(ranked) >= max(top, 1):
            kth = sorted((c.similarity for c in ranked), reverse=True)[max(top, 1) - 1]
            if bound[0] < kth:
                break
        sim, mean = markup_similarity(*outcomes[s.format], probes)
        ranked.append(replace(s, similarity=sim, similarity_all=mean))
    ranked.sort(key=lambda s: (*(-k for k in _closeness(s)), s.format))
    total = len(probes)
    best = ranked[0] if ranked else None
    if best is not None and best.similarity >= CLOSE_ENOUGH:
        return DetectResult(source, "closest", best.format, (), best.differences, tuple(ranked[:top]), total)
    return DetectResult(source, "unknown", None, (), (), tuple(ranked[:top]), total)


# -- comparing two formats (``chatfmt diff``) ------------------------------------------------------------


@dataclass(frozen=True)
class ProbeComparison:
    """One probe rendered by two formats."""

    probe: Probe
    a: Outcome
    b: Outcome

    @property
    def same(self) -> bool:
        return self.a.same_as(self.b)

    def region(self) -> tuple[int, int, int]:
        """``(start, end_a, end_b)``: the differing region of both texts (common prefix and suffix
        removed); only meaningful when both rendered."""
        a, b = self.a.text or "", self.b.text or ""
        start = first_difference(a, b)
        suffix = 0
        while suffix < min(len(a), len(b)) - start and a[len(a) - 1 - suffix] == b[len(b) - 1 - suffix]:
            suffix += 1
        return start, len(a) - suffix, len(b) - suffix

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "probe": self.probe.id,
            "description": self.probe.description,
            "same": self.same,
        }
        if not self.same:
            if self.a.ok and self.b.ok:
                start, end_a, end_b = self.region()
                a_text, b_text = self.a.text or "", self.b.text or ""  # (ok: both rendered)
                out.update(offset=start, a_region=a_text[start:end_a], b_region=b_text[start:end_b])
            out.update(a=self.a.text, b=self.b.text, a_error=self.a.error, b_error=self.b.error)
        return out


def compare_formats(
    a: ChatFormat, b: ChatFormat, probes: tuple[Probe, ...] = PROBES
) -> list[ProbeComparison]:
    """Render every probe with ``a`` and ``b``; a template without its own BOS/EOS borrows the other's."""
    ca, cb = _Candidate(a, probes), _Candidate(b, probes)
    oa, ob = ca.outcomes(ca.borrowed(b)), cb.outcomes(cb.borrowed(a))
    return [ProbeComparison(p, x, y) for p, x, y in zip(probes, oa, ob)]


__all__ = [
    "ProbeComparison",
    "compare_formats",
    "CLOSE_ENOUGH",
    "CandidateScore",
    "DetectResult",
    "ProbeDifference",
    "compare",
    "detect",
    "first_difference",
    "markup",
    "markup_similarity",
    "visible",
]
