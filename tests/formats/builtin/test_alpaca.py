"""Alpaca is pinned byte for byte to chujiezheng/chat_templates' ``alpaca.jinja`` as transformers renders it.

The template is used the way its README prescribes (``.replace('    ', '').replace('\\n', '')``) with
``bos_token="<s>"`` and ``eos_token="</s>"``. Without a system message chatfmt inserts the Alpaca
preamble (the template's ``generation_configs/alpaca.json`` ``system_prompt``), so the reference is
given that preamble as its system message; ``Alpaca(default_system=None)`` matches the template as is.
The Stanford Alpaca single-turn prompt and LLaMA-Factory's multi-turn ``alpaca`` template are checked
too, with their differences pinned.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatfmt.errors import ValidationError
from chatfmt.formats import registry
from chatfmt.formats.builtin.alpaca import PREAMBLE, Alpaca
from chatfmt.formats.spec import SpecFormat

TESTDATA = Path(__file__).resolve().parents[3].parent / "shared" / "testdata"
CHUJIEZHENG = TESTDATA / "templates" / "chujiezheng-chat_templates"
TEMPLATE = CHUJIEZHENG / "chat_templates" / "alpaca.jinja"
GENERATION_CONFIG = CHUJIEZHENG / "generation_configs" / "alpaca.json"

# tatsu-lab/stanford_alpaca train.py, PROMPT_DICT["prompt_no_input"]
STANFORD_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)

S, U, A = "system", "user", "assistant"


def need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is absent (the chujiezheng templates live in <repo>/../shared/testdata)")


@functools.cache
def _template() -> str:
    return TEMPLATE.read_text(encoding="utf-8").replace("    ", "").replace("\n", "")


def hf_render(messages: list[dict], bos_token: str = "<s>", eos_token: str = "</s>", **kwargs) -> str:
    need(TEMPLATE)
    pytest.importorskip("transformers")
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        [messages], chat_template=_template(), bos_token=bos_token, eos_token=eos_token, **kwargs
    )
    return rendered[0]


def with_preamble(messages: list[dict]) -> list[dict]:
    """What chatfmt's default system prompt amounts to, as an explicit system message."""
    return messages if messages[0]["role"] == S else [{"role": S, "content": PREAMBLE}, *messages]


def conv(*turns: tuple[str, str]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in turns]


CASES = {
    "single_user": conv((U, "Give three tips for staying healthy.")),
    "single_pair": conv((U, "Give three tips for staying healthy."), (A, "1. Eat well.\n2. Sleep.\n3. Move.")),
    "system_user": conv((S, "You are a poet."), (U, "Write a line about the sea.")),
    "system_pair": conv((S, "You are a poet."), (U, "A line about the sea."), (A, "The sea keeps time.")),
    "multi_turn": conv((U, "2+2?"), (A, "4"), (U, "3+3?"), (A, "6"), (U, "and 4+4?")),
    "system_multi_turn": conv((S, "Answer tersely."), (U, "Hi"), (A, "Hello."), (U, "Bye"), (A, "Bye.")),
    "chinese": conv((S, "你是一个乐于助人的助手。"), (U, "把下面的句子翻译成英文：我爱你"), (A, "I love you.")),
    "chinese_no_system": conv((U, "你好"), (A, "你好！有什么可以帮你？")),
    "edge_whitespace": conv((S, "\n  padded system \t"), (U, "  padded\n\n"), (A, "\n answer \t"), (U, "\u3000x\u3000")),
    "empty_contents": conv((S, ""), (U, ""), (A, ""), (U, "")),
    "empty_user_no_system": conv((U, ""), (A, "ok")),
    "section_markers_in_content": conv((U, "### Response:\nfake"), (A, "### Instruction:\n</s><s>")),
    "multiline": conv((U, "Fix:\n```py\nprint 'x'\n```"), (A, "```py\nprint('x')\n```")),
    "long": conv(*[(U if k % 2 == 0 else A, f"turn {k}: " + "word " * k) for k in range(10)]),
}


@pytest.mark.parametrize("add_generation_prompt", [False, True], ids=["no_gen", "gen"])
@pytest.mark.parametrize("case", list(CASES))
def test_text_matches_chujiezheng_template(case: str, add_generation_prompt: bool) -> None:
    messages = CASES[case]
    ours = Alpaca().render(messages, add_generation_prompt=add_generation_prompt)
    assert ours == hf_render(with_preamble(messages), add_generation_prompt=add_generation_prompt)


@pytest.mark.parametrize("add_generation_prompt", [False, True], ids=["no_gen", "gen"])
@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0]["role"] != S])
def test_without_default_system_matches_the_template_as_is(case: str, add_generation_prompt: bool) -> None:
    messages = CASES[case]
    ours = Alpaca(default_system=None).render(messages, add_generation_prompt=add_generation_prompt)
    assert ours == hf_render(messages, add_generation_prompt=add_generation_prompt)


def test_default_system_is_the_preamble_of_the_generation_config() -> None:
    need(GENERATION_CONFIG)
    config = json.loads(GENERATION_CONFIG.read_text(encoding="utf-8"))
    assert config["system_prompt"] == PREAMBLE
    assert config["stop_token_ids"] == [2]  # </s> of the LLaMA vocabulary: the EOS this format writes


def test_single_turn_is_the_stanford_prompt_plus_a_newline() -> None:
    instruction, output = "Give three tips for staying healthy.", "Eat, sleep, move."
    source = STANFORD_PROMPT_NO_INPUT.format(instruction=instruction)
    prompt = Alpaca().render(conv((U, instruction)), add_generation_prompt=True)
    # Stanford ends the prompt at "### Response:" and appends "{output}{eos}" directly (train.py);
    # chujiezheng and LLaMA-Factory put a newline after "### Response:".
    assert prompt == "<s>" + source + "\n"
    trained = Alpaca().render(conv((U, instruction), (A, output)))
    assert trained == "<s>" + source + "\n" + output + "</s>\n\n"


def llama_factory_alpaca(messages: list[dict], eos: str = "</s>") -> str:
    """LLaMA-Factory's ``alpaca`` template (src/llamafactory/data/template.py) as text: system
    ``{content}`` (default: the preamble + "\\n\\n"), user ``### Instruction:\\n{content}\\n\\n### Response:\\n``,
    assistant ``{content}`` + eos + ``\\n\\n``; no BOS of its own, contents as given."""
    system = messages[0]["content"] if messages[0]["role"] == S else ""
    text = system or PREAMBLE + "\n\n"
    for m in messages[1 if messages[0]["role"] == S else 0 :]:
        if m["role"] == U:
            text += "### Instruction:\n" + m["content"] + "\n\n### Response:\n"
        else:
            text += m["content"] + eos + "\n\n"
    return text


@pytest.mark.parametrize("case", ["single_user", "single_pair", "multi_turn", "chinese_no_system", "multiline"])
def test_default_system_multi_turn_matches_llama_factory(case: str) -> None:
    messages = CASES[case]
    prompt = messages[-1]["role"] == U
    assert Alpaca().render(messages, add_generation_prompt=prompt) == "<s>" + llama_factory_alpaca(messages)


def test_llama_factory_differs_on_custom_system_prompts_and_whitespace() -> None:
    # LLaMA-Factory writes a given system prompt with no separator, and does not strip contents
    messages = conv((S, "Be brief."), (U, " Hi "))
    assert llama_factory_alpaca(messages) == "Be brief.### Instruction:\n Hi \n\n### Response:\n"
    assert Alpaca().render(messages, add_generation_prompt=True) == (
        "<s>Be brief.\n\n### Instruction:\nHi\n\n### Response:\n"
    )


@pytest.mark.parametrize("case", list(CASES))
def test_segments_are_tagged_and_train_the_response_with_its_eos(case: str) -> None:
    messages = CASES[case]
    rendered = Alpaca().render_segments(messages, add_generation_prompt=True)
    indices = [s.message for s in rendered if s.message is not None]
    assert indices == sorted(indices)
    assert all(s.token_ids is None for s in rendered)
    for i, m in enumerate(messages):
        assert "".join(s.text for s in rendered if s.message == i and s.is_content) == m["content"].strip()
        trained = "".join(s.text for s in rendered if s.message == i and s.trained)
        assert trained == (m["content"].strip() + "</s>" if m["role"] == A else "")
    unowned = [s for s in rendered if s.message is None]
    assert all(s.is_control and not s.trained for s in unowned)
    default = "" if messages[0]["role"] == S else PREAMBLE + "\n\n"
    assert "".join(s.text for s in unowned) == "<s>" + default + "### Response:\n"


def test_segments_of_one_exchange() -> None:
    rendered = Alpaca().render_segments(conv((S, "Sys"), (U, " Q "), (A, "R")))
    assert [(s.text, s.kind, s.message, s.trained) for s in rendered] == [
        ("<s>", "control", None, False),
        ("Sys", "content", 0, False),
        ("\n\n", "control", 0, False),
        ("### Instruction:\n", "control", 1, False),
        ("Q", "content", 1, False),
        ("\n\n", "control", 1, False),
        ("### Response:\n", "control", 2, False),
        ("R", "content", 2, True),
        ("</s>", "control", 2, True),
        ("\n\n", "control", 2, False),
    ]


def test_bos_and_eos_follow_the_format_info() -> None:
    messages = conv((U, "Hi"), (A, "Hello"), (U, "Bye"))
    fmt = Alpaca().with_info(bos_token=None, eos_token="<|endoftext|>")
    ours = fmt.render(messages, add_generation_prompt=True)
    assert ours == hf_render(with_preamble(messages), bos_token="", eos_token="<|endoftext|>", add_generation_prompt=True)


def test_continue_final_message_matches_transformers() -> None:
    messages = conv((U, "Write a haiku"), (A, "Autumn moonlight—"))
    ours = Alpaca().render(messages, continue_final_message=True)
    assert ours == hf_render(with_preamble(messages), continue_final_message=True)
    assert ours.endswith("### Response:\nAutumn moonlight—")


@pytest.mark.parametrize(
    ("messages", "index", "rule"),
    [
        (conv((A, "first")), 0, "roles"),
        (conv((U, "a"), (U, "b")), 1, "roles"),
        (conv((S, "only a system prompt")), 0, "roles"),
        (
            [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "w", "arguments": {}}}]},
                {"role": "tool", "content": "sunny"},
            ],
            1,
            "tool_call",
        ),
    ],
)
def test_roles_must_alternate_as_the_template_requires(messages: list[dict], index: int, rule: str) -> None:
    with pytest.raises(ValidationError) as err:
        Alpaca().render(messages)
    assert (err.value.index, err.value.rule) == (index, rule)


def test_tool_list_goes_into_the_system_prompt_as_json() -> None:
    tools = [{"type": "function", "function": {"name": "get_time", "description": "现在几点"}}]
    dump = json.dumps(tools, ensure_ascii=False)
    assert Alpaca().render(conv((U, "time?")), tools=tools) == Alpaca().render(conv((S, dump), (U, "time?")))


def test_registered_with_its_info() -> None:
    for name in ("alpaca", "Alpaca"):
        fmt = registry.get(name)
        assert isinstance(fmt, SpecFormat) and fmt.spec is Alpaca().spec  # declared as a spec
        assert fmt.name == "alpaca"
    info = Alpaca().info
    assert "### Instruction:" in info.stop and "</s>" in info.stop
    assert info.end_of_turn == ("</s>",) and (info.bos_token, info.eos_token) == ("<s>", "</s>")
    assert not info.supports_tools and "alpaca.jinja" in info.reference


# --- arbitrary contents ---------------------------------------------------------------------------

TRICKY = ["", " ", "\n\n", "  x  ", "### Instruction:", "### Response:\n", "</s>", "\t", "你好 ", "\u3000"]
texts = st.one_of(st.sampled_from(TRICKY), st.text(max_size=40))


@st.composite
def dialogs(draw) -> list[dict]:
    messages = []
    if draw(st.booleans()):
        messages.append({"role": S, "content": draw(texts)})
    for k in range(draw(st.integers(min_value=1, max_value=6))):
        messages.append({"role": U if k % 2 == 0 else A, "content": draw(texts)})
    return messages


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dialogs(), st.booleans())
def test_arbitrary_dialogs_match_the_template(messages: list[dict], add_generation_prompt: bool) -> None:
    ours = Alpaca().render(messages, add_generation_prompt=add_generation_prompt)
    assert ours == hf_render(with_preamble(messages), add_generation_prompt=add_generation_prompt)
