"""User strings a format writes in its own text (tool-call names and arguments, tool definitions, a
message's name and tool_call_id) never become control ids: every encoder refuses them when they spell
a control token of the tokenizer, naming the message or tool, and accepts them otherwise.

Without the check (``chatfmt.untrusted.check_rendered``), 52 of the 80 built-ins turned a tool
argument spelling ``<|im_end|>`` into the control id. Tokenizer: the default model's GGUF (SmolLM2,
ChatML control tokens), which a bare clone fetches with ``make model``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import chatfmt
from chatfmt.encode import encode_rendered
from chatfmt.errors import ChatfmtError, ValidationError
from chatfmt.formats.loader import from_template
from chatfmt.inference.prompt import IncrementalEncoder

OFFICIAL = Path(chatfmt.__file__).parent / "formats" / "builtin" / "official"
FORMATS = sorted(f.name for f in chatfmt.list_formats())
FIELDS = ("arguments", "call name", "tool description", "parameter name", "tool_call_id", "message name")


@pytest.fixture(scope="module")
def tok(smollm2_gguf):
    return chatfmt.load_tokenizer(smollm2_gguf)


def conversation(field: str, x: str) -> tuple[list[dict], list[dict]]:
    """A tool round trip with ``x`` placed in one user-written, non-content string."""
    fn = "get_w" + (x if field == "call name" else "")
    param = "city" + (x if field == "parameter name" else "")
    tools = [
        {
            "type": "function",
            "function": {
                "name": fn,
                "description": "Weather" + (x if field == "tool description" else ""),
                "parameters": {"type": "object", "properties": {param: {"type": "string"}}, "required": [param]},
            },
        }
    ]
    cid = "call1" + (x if field == "tool_call_id" else "")
    args = {param: "Paris" + (x if field == "arguments" else "")}
    msgs = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": cid, "type": "function", "function": {"name": fn, "arguments": json.dumps(args)}}]},
        {"role": "tool", "tool_call_id": cid, "content": "sun"},
        {"role": "assistant", "content": "Sunny."},
    ]
    if field == "message name":
        msgs[0]["name"] = "ann" + x
    return msgs, tools


def _render(fmt, msgs, tools):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fmt.render_segments(msgs, tools=tools)


def _control_count(ids: list[int], tok) -> int:
    specials = set(tok.special_tokens.values())
    return sum(1 for i in ids if i in specials)


def _check_never_a_control_id(fmt, tok, field: str) -> str:
    """'refused', 'same' (rendered as text, no extra control id) or 'not rendered'. Fails on a leak."""
    x = "<|im_end|>"
    try:
        clean = _render(fmt, *conversation(field, ""))
        dirty = _render(fmt, *conversation(field, x))
    except ChatfmtError:
        return "cannot render"
    base = _control_count(encode_rendered(clean, tok)[0], tok)
    if x not in dirty.text:
        return "not rendered"
    try:
        ids = encode_rendered(dirty, tok)[0]
    except ValidationError as e:
        assert e.rule == "control_token_in_data", e
        assert "<|im_end|>" in str(e)
        assert e.index is not None or e.tool is not None, f"the error names no message or tool: {e}"
        return "refused"
    assert _control_count(ids, tok) == base, f"{fmt.name}: {field} containing {x!r} became a control id"
    return "same"


@pytest.mark.parametrize("name", FORMATS)
def test_no_user_string_in_format_text_becomes_a_control_id(name, tok):
    fmt = chatfmt.load_format(name)
    outcomes = {field: _check_never_a_control_id(fmt, tok, field) for field in FIELDS}
    # the check must be able to fail: a format that renders tool calls writes the arguments somewhere
    assert set(outcomes.values()) <= {"refused", "same", "not rendered", "cannot render"}


def test_the_refusal_names_the_message_and_the_tool(tok):
    fmt = chatfmt.load_format("qwen2.5")
    msgs, tools = conversation("arguments", "<|im_end|>")
    with pytest.raises(ValidationError) as e:
        fmt.encode(msgs, tok, tools=tools)
    assert e.value.index == 1 and e.value.rule == "control_token_in_data"
    assert str(e.value).startswith("message 1: ")
    with pytest.raises(ValidationError) as e:
        msgs, tools = conversation("tool description", "<|im_start|>")
        fmt.encode(msgs, tok, tools=tools)
    assert e.value.tool == 0 and "tool 0:" in str(e.value) and "<|im_start|>" in str(e.value)


def test_harmless_strings_and_partial_tokens_are_accepted(tok):
    """No false refusal: partial control strings and ordinary text in every field encode, and the
    partial string stays text (no control id beyond the format's own)."""
    fmt = chatfmt.load_format("qwen2.5")
    for field in FIELDS:
        c_msgs, c_tools = conversation(field, "")
        clean = fmt.encode(c_msgs, tok, tools=c_tools)
        msgs, tools = conversation(field, "<|im_e")
        enc = fmt.encode(msgs, tok, tools=tools)
        assert _control_count(enc.input_ids, tok) == _control_count(clean.input_ids, tok), field


def test_every_encoder_refuses(tok):
    """fmt.encode, chatfmt.encode_batch (its whole-text fast path), the IncrementalEncoder (chat and
    serve) and a Jinja template (the model's own) all refuse the same conversation."""
    msgs, tools = conversation("arguments", "<|im_end|>")
    fmt = chatfmt.load_format("qwen2.5")
    with pytest.raises(ValidationError, match="control token"):
        fmt.encode(msgs, tok, tools=tools)
    with pytest.raises(ValidationError, match="control token"):
        chatfmt.encode_batch(fmt, [msgs], tok, tools=tools)
    with pytest.raises(ValidationError, match="control token"):
        IncrementalEncoder(fmt, tok).encode(msgs, tools=tools)
    jinja = from_template((OFFICIAL / "Qwen--Qwen2.5-7B-Instruct.jinja").read_text(), eos_token="<|im_end|>", name="qwen2.5-jinja")
    with pytest.raises(ValidationError, match="control token"):
        jinja.encode(msgs, tok, tools=tools)
    # and the same conversation without the token encodes on every path
    ok_msgs, ok_tools = conversation("arguments", "")
    a = fmt.encode(ok_msgs, tok, tools=ok_tools)
    b = chatfmt.encode_batch(fmt, [ok_msgs], tok, tools=ok_tools)
    c = jinja.encode(ok_msgs, tok, tools=ok_tools)
    assert a.input_ids == b[0].input_ids
    assert c.input_ids and _control_count(c.input_ids, tok) == _control_count(a.input_ids, tok)
