"""``continue_final_message`` on a final assistant message with nothing to continue gives the open
assistant turn: the generation prompt after the messages before it (what Baichuan2's
``build_chat_input`` gives for a conversation ending in an empty answer), for every built-in and every
template in the test data. Where there is nothing a format can continue (a final user message with no
content) it is a :class:`~chatfmt.errors.ValidationError` naming the message and the rule, as is
asking for both ``continue_final_message`` and ``add_generation_prompt``."""

from __future__ import annotations

import copy
import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

import chatfmt
from chatfmt.errors import ValidationError
from chatfmt.formats import registry

HISTORY = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
EMPTY_ANSWERS = {"empty string": "", "null": None, "empty text part": [{"type": "text", "text": ""}]}


def _render(fmt, messages, **kw):
    """(text, segment texts) or the exception type."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            r = fmt.render_segments(copy.deepcopy(messages), **kw)
            return fmt.render(copy.deepcopy(messages), **kw), [(s.text, s.kind, s.message) for s in r]
        except Exception as e:  # noqa: BLE001 - the error type is what is compared
            return type(e)


@pytest.mark.parametrize("empty", sorted(EMPTY_ANSWERS))
@pytest.mark.parametrize("name", registry.names())
def test_builtin_continues_an_empty_answer_as_the_open_assistant_turn(name: str, empty: str) -> None:
    fmt = registry.get(name)
    messages = [*HISTORY, {"role": "assistant", "content": EMPTY_ANSWERS[empty]}]
    assert _render(fmt, messages, continue_final_message=True) == _render(fmt, HISTORY, add_generation_prompt=True)


def test_every_template_continues_an_empty_answer_as_the_open_assistant_turn(chat_template) -> None:
    fmt = chatfmt.from_template(chat_template.source, bos_token="<s>", eos_token="</s>")
    for history in (HISTORY, HISTORY[1:]):
        messages = [*history, {"role": "assistant", "content": ""}]
        assert _render(fmt, messages, continue_final_message=True) == _render(fmt, history, add_generation_prompt=True)


@pytest.mark.parametrize("name", ["chatml", "llama-3", "mistral-v3", "baichuan2"])
def test_a_final_user_message_with_nothing_to_continue_is_a_validation_error(name: str) -> None:
    fmt = registry.get(name)
    with pytest.raises(ValidationError) as info:
        fmt.render([{"role": "user", "content": ""}], continue_final_message=True)
    assert info.value.rule == "continue_final_message" and info.value.index == 0


def test_a_template_with_nothing_to_continue_names_the_message() -> None:
    fmt = chatfmt.from_template("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}")
    with pytest.raises(ValidationError) as info:
        fmt.render_segments([{"role": "user", "content": "a"}, {"role": "user"}], continue_final_message=True)
    assert (info.value.rule, info.value.index) == ("continue_final_message", 1)


@pytest.mark.parametrize(
    "fmt", [registry.get("chatml"), chatfmt.from_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")], ids=["builtin", "jinja"]
)
def test_continue_and_a_generation_prompt_together_are_a_validation_error(fmt) -> None:
    with pytest.raises(ValidationError, match="cannot both be set") as info:
        fmt.render([{"role": "user", "content": "hi"}], continue_final_message=True, add_generation_prompt=True)
    assert info.value.rule == "continue_final_message"


def test_a_non_empty_answer_is_still_continued_after_its_text() -> None:
    fmt = registry.get("chatml")
    text = fmt.render([*HISTORY, {"role": "assistant", "content": "Once"}], continue_final_message=True)
    assert text.endswith("<|im_start|>assistant\nOnce")


def test_ids_of_a_continued_empty_answer_are_the_generation_prompts() -> None:
    mistral_common = pytest.importorskip("mistral_common")
    pytest.importorskip("sentencepiece")
    path = Path(mistral_common.__file__).parent / "data" / "mistral_instruct_tokenizer_240323.model.v3"
    tok = chatfmt.load_tokenizer(path)
    fmt = registry.get("mistral-v3")
    messages = [*HISTORY, {"role": "assistant", "content": ""}]
    got = fmt.encode(messages, tok, continue_final_message=True).input_ids
    assert got == fmt.encode(HISTORY, tok, add_generation_prompt=True).input_ids


def test_baichuan2_continued_empty_answer_equals_build_chat_input(testdata) -> None:
    """``build_chat_input`` on a conversation ending with an empty assistant message: the assistant
    marker 196 and nothing after it (it appends no second 196 after an assistant message)."""
    path = Path(__file__).parent / "builtin" / "test_baichuan.py"
    testdata("baichuan2", "generation_utils.py")
    spec = importlib.util.spec_from_file_location("_continue_test_baichuan", path)
    harness = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = harness
    spec.loader.exec_module(harness)
    tok = chatfmt.load_tokenizer(testdata("baichuan2"))
    for history in (HISTORY, [HISTORY[1]], [HISTORY[1], {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "More"}]):
        messages = [*history, {"role": "assistant", "content": ""}]
        want = harness.vendor_build_chat_input(copy.deepcopy(messages))
        assert want[-1] == 196
        got = registry.get("baichuan2").encode(messages, tok, continue_final_message=True).input_ids
        assert got == want
