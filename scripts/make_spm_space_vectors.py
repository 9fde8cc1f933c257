"""Regenerate ``tests/data/spm_space_rule.json``: reference ids for the encoder's space rule (the space a
format writes after a control token is the dummy prefix of what follows), on a tokenizer every
development install has: the Mistral v3 sentencepiece model shipped inside the ``mistral-common``
wheel (byte-identical to Mistral-7B-Instruct-v0.3's ``tokenizer.model``).

The ids come from mistral-common itself (``MistralTokenizer.encode_chat_completion``, v3 protocol;
``finetuning`` mode for conversations that end with an answer). The template is chatfmt's own minimal
one in the shape of Mistral v0.3's (``"[INST] " + content + "[/INST]"``, ``" " + answer + eos``); on
these conversations its text is what mistral-common's ids spell.

    .venv/bin/python scripts/make_spm_space_vectors.py > tests/data/spm_space_rule.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import date
from importlib import metadata
from pathlib import Path

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + '[/INST]' }}"
    "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)
TOKENIZER_FILE = "mistral_instruct_tokenizer_240323.model.v3"


def u(text: str) -> dict:
    return {"role": "user", "content": text}


def a(text: str) -> dict:
    return {"role": "assistant", "content": text}


CASES = {
    "single": [u("Hello")],
    "multi_turn": [u("What is 2+2?"), a("4."), u("And 3+3?")],
    "training": [u("What is 2+2?"), a("4."), u("And 3+3?"), a("6.")],
    "chinese": [u("你好，请介绍一下你自己。"), a("我是一个语言模型。"), u("谢谢！")],
    "emoji": [u("🦙🚀 ok? 😶‍🌫️"), a("✅ yes"), u("👍🏽")],
    "user_leading_spaces": [u("  two leading spaces")],
    "user_leading_newlines": [u("\n\nindented\n")],
    "answer_leading_space": [u("hi"), a(" spaced answer")],
    "empty_user": [u(""), a("ok"), u("again")],
}


def main() -> None:
    import mistral_common
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.protocol.instruct.validator import ValidationMode
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    path = Path(mistral_common.__file__).parent / "data" / TOKENIZER_FILE
    out = {
        "description": (
            "Reference ids for the encoder's space rule (tests/test_encode_spm_vectors.py). Regenerate with: "
            ".venv/bin/python scripts/make_spm_space_vectors.py > tests/data/spm_space_rule.json"
        ),
        "reference": f"mistral-common {metadata.version('mistral-common')} MistralTokenizer.encode_chat_completion (v3)",
        "tokenizer": f"mistral_common/data/{TOKENIZER_FILE}",
        "tokenizer_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "generated": date.today().isoformat(),
        "template": TEMPLATE,
        "cases": [],
    }
    for name, messages in CASES.items():
        prompt = messages[-1]["role"] != "assistant"
        mode = ValidationMode.test if prompt else ValidationMode.finetuning
        tok = MistralTokenizer.from_file(str(path), mode=mode)
        ids = tok.encode_chat_completion(ChatCompletionRequest.from_openai(messages)).tokens
        out["cases"].append({"name": name, "messages": messages, "add_generation_prompt": prompt, "ids": ids})
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
