"""Lint a chat format: common faults of chat templates, found by rendering probe conversations.

Each finding has a stable rule id, a severity (``error`` or ``warning``) and one line of text. Rules:

=========================  ========  ================================================================
rule                       severity  what
=========================  ========  ================================================================
``raises``                 error     the template raises on an ordinary conversation (names the probes)
``no-system-role``         warning   it raises on every conversation with a system message
``generation-prompt``      error     ``add_generation_prompt`` changes nothing (ignored or always on)
``system-dropped``         error     a system message's text does not appear in the output
``double-bos``             warning   the template writes BOS and the tokenizer beside it adds BOS too
``prefix-unstable``        error     ``render(msgs[:k])`` is not a prefix of ``render(msgs)`` for a
                                     completed turn, or a round's prompt is not a prefix of the next
                                     round's (warning when only the generation prompt's text is lost)
``repr-leak``              error     Python reprs (``{'type': 'text'``, ``None``) in the output of an
                                     OpenAI payload
``payload-crash``          error     raises on what OpenAI-compatible servers send: ``content: null``,
                                     JSON-string tool arguments (text parts: warning)
``differs-from-reference`` warning   ``detect`` finds it equivalent to a built-in except some probes
``time-variance``          warning   the output depends on the current date
=========================  ========  ================================================================

Jinja templates are rendered strictly (the payload as given, no normalising retry), under a frozen
clock. Built-in and TOML formats can be linted too (the template-only rules then rarely apply).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .base import ChatFormat
from .detect import visible
from .jinja import JinjaFormat
from .probes import (
    A1,
    OTHER_NOW,
    PAYLOAD_PROBES,
    PROBES,
    SYSTEM_MARK,
    U1,
    Outcome,
    Probe,
    get_probe,
    render_messages,
    render_probe,
)

Severity = Literal["error", "warning"]

#: rule id -> (severity, one-line description); the ids are stable
RULES: dict[str, tuple[Severity, str]] = {
    "raises": ("error", "raises on an ordinary conversation"),
    "no-system-role": ("warning", "raises on every conversation with a system message"),
    "generation-prompt": ("error", "add_generation_prompt changes nothing"),
    "system-dropped": ("error", "the system message's text is not in the output"),
    "double-bos": ("warning", "BOS written by the template and added by the tokenizer"),
    "prefix-unstable": ("error", "an earlier render is not a prefix of a later one"),
    "repr-leak": ("error", "a Python repr in the output"),
    "payload-crash": ("error", "raises on an OpenAI-compatible payload"),
    "differs-from-reference": ("warning", "differs from the built-in it is closest to"),
    "time-variance": ("warning", "the output depends on the current date"),
}

_REPR_RE = re.compile(r"\{'type': '|\[\{'|'text': '|\bNone\b|\{'name': '|\{'city': ")


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    probes: tuple[str, ...] = ()

    def line(self) -> str:
        return f"{self.severity}[{self.rule}]: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON data (its fields in order, the probes as a list)."""
        return {**asdict(self), "probes": list(self.probes)}


@dataclass
class LintReport:
    source: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def rules(self) -> set[str]:
        return {f.rule for f in self.findings}

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "ok": self.ok, "findings": [f.to_dict() for f in self.findings]}


def _has_system(p: Probe) -> bool:
    return any(m.get("role") == "system" for m in p.messages)


class _Linter:
    def __init__(self, fmt: ChatFormat, tokens: dict[str, str]) -> None:
        self.fmt = fmt.with_options(strict=True) if isinstance(fmt, JinjaFormat) else fmt
        self.kw: dict[str, Any] = dict(tokens)  # template variables (bos_token, ...) for every render
        self.findings: list[Finding] = []
        self.outcomes: dict[str, Outcome] = {p.id: self.render(p) for p in PROBES + PAYLOAD_PROBES}

    def render(self, probe: Probe, **kw: Any) -> Outcome:
        return render_probe(self.fmt, probe, **self.kw, **kw)

    def render_msgs(self, messages: list[dict[str, Any]], **kw: Any) -> Outcome:
        return render_messages(self.fmt, messages, **self.kw, **kw)

    def add(
        self, rule: str, message: str, probes: tuple[str, ...] = (), severity: Severity | None = None
    ) -> None:
        self.findings.append(Finding(rule, severity or RULES[rule][0], message, probes))

    # -- rules ------------------------------------------------------------------------------------------

    def raises(self) -> None:
        core = [p for p in PROBES if "core" in p.tags]
        failed = [p for p in core if not self.outcomes[p.id].ok]
        with_sys = [p for p in core if _has_system(p)]
        plain = [p for p in failed if not _has_system(p)]
        if with_sys and all(p in failed for p in with_sys) and not plain:
            first = self.outcomes[with_sys[0].id].error
            self.add(
                "no-system-role",
                f"raises on every conversation with a system message ({first})",
                tuple(p.id for p in with_sys),
            )
        elif failed:
            self.add(
                "raises",
                f"raises on {', '.join(p.id for p in failed)} ({self.outcomes[failed[0].id].error})",
                tuple(p.id for p in failed),
            )

    def generation_prompt(self) -> None:
        """Flag a generation prompt that is always on: ``add_generation_prompt`` changes nothing and a
        completed assistant turn is followed by the same text as a user turn (an open assistant header).
        A format whose user turn already ends the prompt (Mistral's ``[/INST]``) has nothing to add."""
        on, off = self.outcomes["user+gen"], self.outcomes["user"]
        if not (on.ok and off.ok and on.text == off.text):
            return
        done = self.render_msgs([U1, A1])
        if not done.ok:
            return
        tail_user = _after(off.text or "", U1["content"])
        tail_done = _after(done.text or "", A1["content"])
        if tail_user and tail_user == tail_done:
            self.add(
                "generation-prompt",
                f"add_generation_prompt is ignored: every render ends with {visible(tail_user)!r}, even after a completed assistant turn",
                ("user+gen", "user"),
            )

    def system_dropped(self) -> None:
        out = self.render_msgs([{"role": "system", "content": SYSTEM_MARK}, U1], add_generation_prompt=True)
        if out.ok and "S7Q" not in (out.text or ""):
            self.add("system-dropped", "the system message's text is not in the output")

    def double_bos(self, tokenizer_adds_bos: bool | None, bos: str | None) -> None:
        if not tokenizer_adds_bos or not bos:
            return
        out = self.outcomes["user+gen"]
        if out.ok and (out.text or "").startswith(bos):
            self.add(
                "double-bos",
                f"the template starts with {bos} and the tokenizer adds BOS too (add_bos_token): two BOS when the text is encoded with special tokens",
            )

    def prefix_stability(self) -> None:
        """Two checks per conversation: a completed turn's render is a prefix of the full render, and
        (as a chat client re-renders each round) the prompt for round k, with its generation prompt, is
        a prefix of the prompt for round k+1. Losing only the generation prompt's own text (a prefill
        marker such as ``<think>``) is a warning; rewriting earlier turns is an error."""
        conversations = [
            ("multi-turn-system", list(get_probe("multi-turn-system").messages)),
            ("reasoning", [*get_probe("reasoning").messages, {"role": "assistant", "content": "6"}]),
        ]
        rewrites: list[str] = []
        markers: list[str] = []
        for name, msgs in conversations:
            full = self.render_msgs(msgs)
            if not full.ok:
                continue
            text = full.text or ""
            for k in range(1, len(msgs) + 1):
                if msgs[k - 1].get("role") == "assistant" and k < len(msgs):
                    part = self.render_msgs(msgs[:k])
                    if part.ok and not text.startswith(part.text or ""):
                        rewrites.append(f"{name}: render(messages[:{k}]) is not a prefix of render(messages)")
                        break
            user_ends = [k for k in range(1, len(msgs) + 1) if msgs[k - 1].get("role") == "user"]
            for k, nxt in zip(user_ends, user_ends[1:]):
                prev = self.render_msgs(msgs[:k], add_generation_prompt=True)
                later = self.render_msgs(msgs[:nxt], add_generation_prompt=True)
                if not (prev.ok and later.ok) or (later.text or "").startswith(prev.text or ""):
                    continue
                bare = self.render_msgs(msgs[:k])
                where = f"{name}: the prompt for messages[:{k}] is not a prefix of the prompt for messages[:{nxt}]"
                if bare.ok and (later.text or "").startswith(bare.text or ""):
                    markers.append(where + " (only the generation prompt's text is not carried into history)")
                else:
                    rewrites.append(where)
                break
        probes = tuple(dict.fromkeys(w.split(":")[0] for w in rewrites + markers))
        if rewrites:
            self.add(
                "prefix-unstable",
                "; ".join(rewrites) + " (history rewritten: breaks incremental encoding and loss masks)",
                probes,
            )
        elif markers:
            self.add("prefix-unstable", "; ".join(markers), probes, "warning")

    def payload(self) -> None:
        crashed, leaks = [], []
        # repr-looking text the template writes anyway (e.g. "None" in a tool-call convention) is not a leak
        baseline = max((len(_REPR_RE.findall(self.outcomes[p.id].text or "")) for p in PROBES), default=0)
        for p in PAYLOAD_PROBES:
            out = self.outcomes[p.id]
            if not out.ok:
                crashed.append(p)
            elif len(_REPR_RE.findall(out.text or "")) > baseline:
                m = _REPR_RE.search(out.text or "")
                assert m is not None  # (findall found more than the baseline)
                leaks.append((p, (out.text or "")[max(0, m.start() - 10) : m.end() + 20]))
        hard = [p for p in crashed if p.id != "content-parts"]
        if hard:
            self.add(
                "payload-crash",
                f"raises on {', '.join(p.id for p in hard)} ({self.outcomes[hard[0].id].error})",
                tuple(p.id for p in hard),
            )
        if any(p.id == "content-parts" for p in crashed):
            self.add(
                "payload-crash",
                f"raises on content-parts ({self.outcomes['content-parts'].error})",
                ("content-parts",),
                "warning",
            )
        for p, excerpt in leaks:
            self.add("repr-leak", f"{p.id}: Python repr in the output: {excerpt!r}", (p.id,))

    def time_variance(self) -> None:
        varying = [
            p.id
            for p in PROBES
            if self.outcomes[p.id].ok and self.render(p, now=OTHER_NOW).text != self.outcomes[p.id].text
        ]
        if varying:
            self.add(
                "time-variance",
                f"the output depends on the current date ({', '.join(varying)})",
                tuple(varying),
            )

    def reference(self, result: Any) -> None:
        if result is not None and result.verdict == "equivalent":
            cases = "; ".join(d.summary() for d in result.differences)
            self.add(
                "differs-from-reference",
                f"equivalent to {result.format} except {cases}",
                tuple(d.probe for d in result.differences),
            )


_GENERIC_TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}


def _missing_tokens(fmt: ChatFormat) -> set[str]:
    """The BOS/EOS variables a Jinja template uses but was not given."""
    if not isinstance(fmt, JinjaFormat):
        return set()
    return {k for k in _GENERIC_TOKENS if k in fmt.template and not fmt.special_tokens.get(k)}


def _after(text: str, content: str) -> str | None:
    at = text.rfind(content)
    return None if at < 0 else text[at + len(content) :]


def tokenizer_adds_bos(source: str | None) -> bool | None:
    """Whether the tokenizer beside a template adds BOS itself: ``add_bos_token`` in a
    tokenizer_config.json (in the directory, or the file itself), else a ``tokenizer.json`` whose
    post-processor inserts a special token before the text. ``None`` if nothing tells."""
    if not source:
        return None
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    cfg = path if path.name == "tokenizer_config.json" else folder / "tokenizer_config.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        add_bos = data.get("add_bos_token")
        if isinstance(add_bos, bool):
            return add_bos
    tj = folder / "tokenizer.json"
    if tj.is_file():
        try:
            post = json.loads(tj.read_text(encoding="utf-8")).get("post_processor") or {}
        except (OSError, ValueError):
            return None
        procs = post.get("processors", [post]) if isinstance(post, dict) else []
        for proc in procs:
            single = proc.get("single") if isinstance(proc, dict) else None
            if isinstance(single, list) and single and "SpecialToken" in single[0]:
                return True
        return False
    return None


def lint(
    fmt_or_path: ChatFormat | str | Path, *, template: str | None = None, reference: bool = True
) -> LintReport:
    """Lint a format (or anything :func:`~chatfmt.load_format` accepts). ``reference=False`` skips the
    comparison with the built-ins (the slowest rule)."""
    if isinstance(fmt_or_path, ChatFormat):
        fmt = fmt_or_path
    else:
        from .loader import load_format

        fmt = load_format(fmt_or_path, template=template)
    from .detect import builtin_tokens, detect

    # (lint reports the built-in a template is, not the closest one: the markup similarity is skipped)
    result = detect(fmt, closest=False) if reference or _missing_tokens(fmt) else None
    tokens: dict[str, str] = {}
    if _missing_tokens(fmt):
        # a bare template: render with the tokens of the built-in it is (else generic ones), as a
        # tokenizer would supply them, so that an undefined eos_token is not reported as a crash
        from . import registry

        # (the built-in it is: identical or equivalent, not merely the closest)
        is_builtin = result is not None and result.matched and result.format is not None
        known = (
            builtin_tokens(registry.family(result.format)) if is_builtin and result and result.format else {}
        )
        tokens = {k: known.get(k, v) for k, v in _GENERIC_TOKENS.items() if k in _missing_tokens(fmt)}
    linter = _Linter(fmt, tokens)
    linter.raises()
    linter.generation_prompt()
    linter.system_dropped()
    linter.double_bos(tokenizer_adds_bos(fmt.info.source), fmt.info.bos_token)
    linter.prefix_stability()
    linter.payload()
    linter.time_variance()
    if reference:
        linter.reference(result)
    return LintReport(fmt.info.source or fmt.name, linter.findings)


__all__ = ["RULES", "Finding", "LintReport", "lint", "tokenizer_adds_bos"]
