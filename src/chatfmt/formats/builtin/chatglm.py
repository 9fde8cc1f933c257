"""ChatGLM3: ``[gMASK]sop`` then per message ``<|role|>`` + metadata line + content.

Pinned against THUDM's own code (``tokenization_chatglm.py`` of THUDM/chatglm3-6b):

- ``build_single_message(role, metadata, message)`` =
  ``[<|role|>] + sp.encode(f"{metadata}\\n") + sp.encode(message)``: the role is a special token, the
  metadata line and the content are two separate sentencepiece calls, each with sentencepiece's
  dummy prefix ``▁`` (so an empty metadata line is ``[30910 "▁", 13 "<0x0A>"]`` and ``hi`` is
  ``▁hi``).
- ``build_chat_input(query, history, role)``: a system message carrying ``tools`` gets
  ``content + "\\n" + json.dumps(tools, indent=4, ensure_ascii=False)``; ``<|assistant|>`` is
  appended; ``[gMASK]`` ``sop`` are prepended by ``build_inputs_with_special_tokens``.
- Tools as THUDM/ChatGLM3 does them (``openai_api_demo/utils.py``, ``composite_demo/client.py``,
  ``finetune_chatmodel_demo/preprocess_utils.py``): with no system message the system text is
  "Answer the following questions as best as you can. You have access to the following tools:";
  a call is an assistant message with the tool name as metadata and the content
  ``"```python\\n" + tool_call(k=v, ...) + "\\n```"`` (``ast`` unparse of the keyword call); the
  result is an ``<|observation|>`` message.
- Training (``finetune_demo/finetune_hf.py`` ``process_batch`` and the older
  ``preprocess_utils.format_conversation``): ``</s>`` ends the sequence, and the loss mask is shifted
  by one token: a token is trained when the token *before* it belongs to a trained message. So an
  assistant turn trains its metadata line and content plus the token after it (the next role token,
  or the final ``</s>``), not its own ``<|assistant|>``.

The text form shows each sentencepiece dummy prefix as a space, ``<|user|> \\n hi``, which is what
the chatglm3-6b-32k chat template renders.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from ...errors import ValidationError
from ...messages import Conversation, ToolCall
from ...segments import SegmentBuilder
from ..base import FormatInfo, NativeFormat
from ..family import Family

GMASK = ("[gMASK]", 64790)
SOP = ("sop", 64792)
ROLE_TOKENS: dict[str, tuple[str, int]] = {
    "system": ("<|system|>", 64794),
    "user": ("<|user|>", 64795),
    "assistant": ("<|assistant|>", 64796),
    "tool": ("<|observation|>", 64797),
}
EOS = ("</s>", 2)
#: ``sp.encode("\n")`` with the ChatGLM3 sentencepiece model: the dummy prefix "▁" and byte <0x0A>
EMPTY_METADATA_IDS = (30910, 13)
#: text form of an empty metadata line: the dummy prefix of the line, "\n", the content's dummy prefix
EMPTY_METADATA_TEXT = " \n "

TOOL_SYSTEM_PROMPT = (
    "Answer the following questions as best as you can. You have access to the following tools:"
)
FUNCTION_CALL_NAME = "tool_call"
FUNCTION_CALL_PREFIX = "```python\n"
FUNCTION_CALL_POSTFIX = "\n```"


def format_tool_call(call: ToolCall, index: int | None = None) -> str:
    """The content ChatGLM3 gives a tool call: ``"```python\\ntool_call(a=1, b='x')\\n```"``.

    As ``format_function_call`` in ChatGLM3's fine-tune demo: an ``ast.Call`` of ``tool_call`` with
    one keyword per argument, each value an ``ast.Constant``, unparsed (values come out as Python
    ``repr``). Arguments must be an object.
    """
    args = call.arguments
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            raise ValidationError(
                f"arguments of tool call {call.name!r} are not valid JSON: {e.msg}",
                index=index,
                rule="tool_call",
            ) from None
    if not isinstance(args, dict):
        raise ValidationError(
            f"chatglm3 renders tool call arguments as keyword arguments; {call.name!r} has "
            f"{type(args).__name__} arguments, not an object",
            index=index,
            rule="tool_call",
        )
    node = ast.Call(
        func=ast.Name(id=FUNCTION_CALL_NAME),
        args=[],
        keywords=[ast.keyword(arg=str(k), value=ast.Constant(v)) for k, v in args.items()],
    )
    return FUNCTION_CALL_PREFIX + ast.unparse(node) + FUNCTION_CALL_POSTFIX


def tools_text(tools: list[Any]) -> str:
    """``json.dumps(tools, indent=4, ensure_ascii=False)``, as ``build_chat_input`` appends it."""
    return json.dumps(tools, indent=4, ensure_ascii=False)


class ChatGLM3(NativeFormat):
    """ChatGLM3-6B (and -32k, same tokenizer and format).

    Segments, all special tokens as id segments:

    - ``[gMASK]`` ``sop`` (ids 64790, 64792), outside any message;
    - per message: the role token (``tool`` messages use ``<|observation|>``); an empty metadata line
      as one id segment ``" \\n "`` = (30910, 13); the content. A non-empty metadata line (a tool
      name) is control text ``name + "\\n"`` between two zero-id ``" "`` segments, so an encoder that
      tokenizes each text run between id segments with sentencepiece reproduces the vendor's two
      separate ``sp.encode`` calls, and the text shows their dummy prefixes as spaces;
    - an assistant message with tool calls: its content (if any) as one ``<|assistant|>`` block, then
      one ``<|assistant|>{name}`` block per call whose content is :func:`format_tool_call`;
    - tools: the JSON dump goes after the system message's content (control text, same message); with
      no system message a system block with :data:`TOOL_SYSTEM_PROMPT` is emitted (message ``None``).
      The tool list is dumped as given (``Conversation.raw_tools`` when a record parser kept it),
      exactly as the vendor dumps whatever it receives;
    - generation prompt ``<|assistant|>``; a conversation that ends with an assistant message and no
      generation prompt is closed with ``</s>`` (id 2) as the fine-tune code does.

    ``trained`` follows the vendor's shifted loss mask: the role token of a message is trained when
    the previous message is (it ends that turn), the rest of a message when the message itself is;
    the final ``</s>`` with the last message.
    """

    #: why ``chatfmt export --to jinja`` refuses (see :func:`chatfmt.formats.export.to_jinja`)
    jinja_unsupported = (
        "ChatGLM3's build_chat_input encodes the metadata line and the content with separate sp.encode "
        "calls and writes an empty metadata line as the ids 30910 13 (no text spells them apart from the "
        "content): a template's text tokenizes differently (the shipped Jinja template shows this: "
        "`chatfmt diff chatglm3 <its template>`)"
    )

    info = FormatInfo(
        name="chatglm3",
        family="chatglm",
        description="ChatGLM3: [gMASK]sop<|role|>metadata\\ncontent, special tokens by id, tool calls as tool_call(...)",
        stop=("<|user|>", "<|observation|>", EOS[0]),
        end_of_turn=("<|user|>", "<|observation|>", EOS[0]),
        eos_token=EOS[0],
        supports_system=True,
        supports_tools=True,
        reference=(
            "THUDM/chatglm3-6b tokenization_chatglm.py build_single_message/build_chat_input; "
            "THUDM/ChatGLM3 finetune_demo (process_batch, format_conversation/format_function_call) and "
            "openai_api_demo (tool system prompt, stop ids eos/<|user|>/<|observation|>)"
        ),
        special_tokens={
            "gmask": GMASK[0],
            "sop": SOP[0],
            "system": ROLE_TOKENS["system"][0],
            "user": ROLE_TOKENS["user"][0],
            "assistant": ROLE_TOKENS["assistant"][0],
            "observation": ROLE_TOKENS["tool"][0],
            "eos": EOS[0],
        },
    )

    def build(
        self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any
    ) -> None:
        msgs = conv.messages
        tools = conv.raw_tools if getattr(conv, "raw_tools", None) is not None else conv.tools
        out.ids(GMASK[0], (GMASK[1],))
        out.ids(SOP[0], (SOP[1],))
        prev = False  # trained flag of the token before the next role token
        if tools and msgs[0].role != "system":
            _header(out, "system", "", None, False, False)
            out.control(TOOL_SYSTEM_PROMPT + "\n" + tools_text(tools))
        for i, m in enumerate(msgs):
            t = m.trained
            if m.role == "assistant" and m.tool_calls:
                if m.text:
                    _header(out, "assistant", "", i, t, prev)
                    out.content(m.text, i, t)
                    prev = t
                for call in m.tool_calls:
                    _header(out, "assistant", call.name, i, t, prev)
                    out.content(format_tool_call(call, i), i, t)
                    prev = t
                continue
            _header(out, m.role, "", i, t, prev)
            out.content(m.text, i, t)
            if m.role == "system" and tools:
                out.control("\n" + tools_text(tools), i, t)
            prev = t
        last = len(msgs) - 1
        if add_generation_prompt:
            text, token_id = ROLE_TOKENS["assistant"]
            out.ids(text, (token_id,))
        elif msgs[last].role == "assistant":
            out.ids(EOS[0], (EOS[1],), last, msgs[last].trained)


def _header(
    out: SegmentBuilder, role: str, metadata: str, message: int | None, trained: bool, prev: bool
) -> None:
    """``<|role|>`` (trained with the previous message) and the metadata line (with this one)."""
    text, token_id = ROLE_TOKENS[role]
    out.ids(text, (token_id,), message, prev)
    if not metadata:
        out.ids(EMPTY_METADATA_TEXT, EMPTY_METADATA_IDS, message, trained)
        return
    out.ids(" ", (), message, trained)
    out.control(metadata + "\n", message, trained)
    out.ids(" ", (), message, trained)


FAMILIES = [
    Family("chatglm3", ChatGLM3, aliases=("chatglm3-6b", "chatglm3-6b-32k"), parser="chatglm3",
           reference=ChatGLM3.info.reference)
]
