"""Qwen3 and QwQ: ChatML with ``<think>`` reasoning blocks and Hermes-style ``<tool_call>`` tools.

``qwen3`` renders exactly what Qwen3's own chat template (``Qwen/Qwen3-0.6B``, the same for the whole
Qwen3 dense/MoE release; llama.cpp ``models/templates/Qwen-Qwen3-0.6B.jinja``) renders under
transformers:

- no default system prompt; with tools, the system turn is the system content (if any) + ``\\n\\n``,
  then the ``# Tools`` block (one ``json.dumps(tool, ensure_ascii=False)`` line per tool) and the
  ``<tool_call>`` instructions;
- the *last query* is the last user message that is not a ``<tool_response>...</tool_response>``
  wrapper; assistant messages before it lose their reasoning; after it, an assistant message is
  written ``<think>\\n{reasoning}\\n</think>\\n\\n{content}`` when it is the final message or has
  reasoning (an empty think block for a final message without reasoning);
- reasoning is ``reasoning_content`` (or its aliases ``reasoning``/``thinking``), else it is parsed
  out of the content: ``{reasoning}</think>{content}``, an optional ``<think>`` before it dropped;
- tool calls follow the content as ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``
  blocks (a newline before each one, except the first when the content is empty); consecutive tool
  results share one ``<|im_start|>user`` turn of ``<tool_response>`` blocks;
- the generation prompt is ``<|im_start|>assistant\\n``, plus an empty ``<think>\\n\\n</think>\\n\\n``
  when ``enable_thinking=False`` (the template tests ``enable_thinking is false``: only the boolean
  ``False`` switches thinking off).

``qwq`` renders the llama.cpp copy of QwQ-32B's template (``models/templates/Qwen-QwQ-32B.jinja``):
no reasoning field at all; assistant content of every turn but the last is cut to what follows its
last ``</think>``; tools as Qwen2.5 (``<|im_start|>system\\n\\n\\n# Tools`` without a system message);
the generation prompt opens the think block, ``<|im_start|>assistant\\n<think>\\n``.

Deliberate differences from the templates:

- ``content: None`` renders as ``""`` (the Qwen3 template raises on an assistant message without
  content, e.g. a tool-call message from an OpenAI client; transformers drops ``None`` keys);
  a list of text parts renders as its joined text.
- QwQ's ``enable_thinking``: the official QwQ-32B template always ends the generation prompt with
  ``<think>\\n``; llama.cpp's copy adds ``{% if not enable_thinking %}</think>{% endif %}``, which
  closes the think block whenever ``enable_thinking`` is not passed (llama.cpp always passes it).
  Here the default (``enable_thinking`` not given) is the official prompt, ``enable_thinking=False``
  closes the block as llama.cpp's copy does, ``True`` leaves it open.
- Tool-call ``arguments`` given as JSON text are parsed into an object by chatfmt and re-dumped
  (the Qwen3 template writes a string verbatim), so ``{"a":1}`` renders as ``{"a": 1}``.

Segments: message content (and reasoning text) is ``content``; everything else ``control``. An
assistant message's think block, content, tool-call blocks and ``<|im_end|>`` are trained with it; its
``<|im_start|>assistant\\n`` header (the generation prompt) and the newline after ``<|im_end|>`` are
not. A tool block with no system message belongs to no message.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...messages import Conversation, Message
from ...segments import SegmentBuilder
from ..family import Family, Pin, TemplateKwarg
from ._chatml import (
    ASSISTANT_HEADER,
    EMPTY_THINK,
    QWEN_SPECIAL_TOKENS,
    ChatMLFormat,
    assistant_turn,
    chatml_info,
    last_query_index,
)

__all__ = ["FAMILIES", "QwQ", "Qwen3", "last_query_index"]


class Qwen3(ChatMLFormat):
    """Qwen3: ChatML, ``<think>`` blocks (history reasoning dropped), ``enable_thinking``, Hermes tools."""

    info = chatml_info(
        "qwen3", "qwen", "Qwen3: ChatML with <think> reasoning (enable_thinking), <tools>/<tool_call>/<tool_response>",
        "the chat_template of Qwen/Qwen3-0.6B (= llama.cpp models/templates/Qwen-Qwen3-0.6B.jinja, "
        "testdata templates/llama.cpp-0c1e570/), rendered by transformers",
        supports_tools=True, supports_reasoning=True, special_tokens=dict(QWEN_SPECIAL_TOKENS),
    )
    extra_template_kwargs = ("enable_thinking",)
    think = "final"

    def generation_prompt(self, enable_thinking: Any) -> str:
        return ASSISTANT_HEADER + (EMPTY_THINK if enable_thinking is False else "")


class QwQ(ChatMLFormat):
    """QwQ-32B: ChatML, past turns cut after ``</think>``, generation prompt opens ``<think>``."""

    info = replace(
        Qwen3.info,
        name="qwq",
        description="QwQ-32B: ChatML, history cut after </think>, generation prompt <think>, Hermes tools",
        reference="llama.cpp models/templates/Qwen-QwQ-32B.jinja (testdata templates/llama.cpp-0c1e570/; the "
        "chat_template of Qwen/QwQ-32B plus llama.cpp's enable_thinking line), rendered by transformers",
    )
    extra_template_kwargs = ("enable_thinking",)
    lone_tools_sep = "\n\n"

    def assistant(self, out: SegmentBuilder, conv: Conversation, i: int, m: Message, after_query: bool) -> None:
        content = m.text
        if i != len(conv.messages) - 1:
            content = content.split("</think>")[-1].lstrip("\n")
        calls = [self.call_text(c) for c in m.tool_calls or ()]
        assistant_turn(out, i, m, content, calls, calls_after_text=bool(m.text))

    def generation_prompt(self, enable_thinking: Any) -> str:
        closed = enable_thinking is not None and not enable_thinking
        return ASSISTANT_HEADER + "<think>\n" + ("</think>" if closed else "")


_THINKING = TemplateKwarg(
    "enable_thinking", "bool", None, "False: the generation prompt closes the think block (no reasoning)"
)

_QWQ_THINKING = TemplateKwarg(
    "enable_thinking", "bool", None,
    "False: the generation prompt closes the think block it opens (llama.cpp's copy); not given: the "
    "official prompt, the block left open",
)
FAMILIES = [
    Family(
        "qwen3", make=Qwen3, aliases=("qwen-3", "qwen3-instruct"), parser="qwen3", kwargs=(_THINKING,),
        pins=(Pin("Qwen/Qwen3-0.6B", "Qwen--Qwen3-0.6B.jinja"),), export="qwen3.jinja", reference=Qwen3.info.reference, group="qwen",
    ),
    Family(
        "qwq", make=QwQ, aliases=("qwq-32b",), parser="qwq", kwargs=(_QWQ_THINKING,),
        pins=(Pin("Qwen/QwQ-32B", "Qwen--QwQ-32B.jinja"),), export="qwq.jinja", reference=QwQ.info.reference, group="qwen",
    ),
]
