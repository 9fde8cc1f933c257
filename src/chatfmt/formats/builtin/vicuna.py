"""Vicuna v1.1 / v1.3 / v1.5, as FastChat (the vendor, lm-sys/FastChat) builds its prompts.

FastChat's conversation template ``vicuna_v1.1`` (``fastchat/conversation.py``; every Vicuna model
maps to it through ``VicunaAdapter``) has ``roles=("USER", "ASSISTANT")``,
``sep_style=ADD_COLON_TWO``, ``sep=" "``, ``sep2="</s>"`` and the default system message ``A chat
between a curious user and an artificial intelligence assistant. The assistant gives helpful,
detailed, and polite answers to the user's questions.``. ``Conversation.get_prompt`` writes::

    system + " "
    then for the i-th message: role + ": " + content + (" " if i is even else "</s>")
                  or, if the content is empty: role + ":"

and the generation prompt is an ``ASSISTANT`` message with no content, i.e. ``ASSISTANT:`` (the model
generates the space). FastChat tokenizes that text with the Llama tokenizer's BOS, and its fine-tuning
(``fastchat/train/train.py``) trains each answer and its ``</s>``. This format renders
``<s>`` + ``get_prompt()`` exactly, with no Jinja at run time, e.g.::

    <s>A chat between ... questions. USER: Hello! ASSISTANT: Hi!</s>USER: How are you? ASSISTANT:

- a leading system message replaces the default system message (``set_system_message``, as
  FastChat's OpenAI-compatible server does); its content is written as given, even if empty;
- roles must then alternate user, assistant, user, ... (``train.py`` asserts it, and
  ``get_prompt`` picks the separator by position): anything else raises
  :class:`~chatfmt.errors.ValidationError` (rule ``roles``);
- an empty content is written FastChat's way, ``ROLE:`` with no space and no separator (so an empty
  answer has no ``</s>``): that is how ``get_prompt`` treats a falsy message.

Segments: the BOS and a default system prompt belong to no message; a given system prompt is the
content of message 0 and the space after it is control; ``USER: `` / ``ASSISTANT: `` headers and
separators are control; an assistant's content and its ``</s>`` are trained, nothing else is.
``fmt.with_info(bos_token=None)`` leaves out the ``<s>`` (FastChat's text form, without BOS).

Other renderings of "Vicuna" that this format does not follow: chujiezheng/chat_templates
``vicuna.jinja`` (modified by its author: newlines between turns, ``trim``-ed contents, no default
system prompt) and ollama's ``vicuna`` template (``\\n\\n`` after the system prompt, ``\\n`` between
turns, no BOS); the tests show ollama's expected renders equal this format's up to whitespace.

No tool syntax: a tool list goes into the system prompt as JSON; tool calls raise ``ValidationError``
(rule ``tool_call``). ``None`` content counts as empty and a list of text parts as its joined text.
"""

from __future__ import annotations

from typing import Any

from ...messages import Conversation
from ...segments import SegmentBuilder
from ..base import FormatInfo, NativeFormat
from ..family import Family
from ._turns import check_alternating

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
ROLES = {"user": "USER", "assistant": "ASSISTANT"}
SEP, SEP2 = " ", "</s>"


class Vicuna(NativeFormat):
    """Vicuna (FastChat ``vicuna_v1.1``): ``SYSTEM USER: ... ASSISTANT: ...</s>USER: ...``."""

    info = FormatInfo(
        name="vicuna",
        family="vicuna",
        description="Vicuna v1.1/v1.3/v1.5 (FastChat vicuna_v1.1): system USER: ... ASSISTANT: ...</s>",
        stop=("</s>",),
        end_of_turn=("</s>",),
        bos_token="<s>",
        eos_token="</s>",
        reference=(
            "FastChat fastchat/conversation.py, template vicuna_v1.1 (SeparatorStyle.ADD_COLON_TWO, "
            "Conversation.get_prompt) at lm-sys/FastChat 0e6d3e4b, with the tokenizer's BOS <s>"
        ),
        special_tokens={"bos": "<s>", "eos": "</s>"},
    )

    def __init__(self, info: FormatInfo | None = None, *, default_system: str = VICUNA_SYSTEM) -> None:
        super().__init__(info)
        self.default_system = default_system

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        msgs = conv.messages
        start = check_alternating(conv, self.info.name)
        out.control(self.info.bos_token or "")
        if start == 1:
            system = msgs[0]
            out.content(system.text, 0, system.trained)
            out.control(SEP, 0)
        else:
            out.control(self.default_system + SEP)
        for i in range(start, len(msgs)):
            m = msgs[i]
            trained = m.trained
            role = ROLES[m.role]
            text = m.text
            if not text:
                out.control(role + ":", i)
                continue
            out.control(role + ": ", i)
            out.content(text, i, trained)
            if m.role == "user":
                out.control(SEP, i, trained)
            else:
                out.control(self.info.eos_token or SEP2, i, trained)
        if add_generation_prompt:
            out.control(ROLES["assistant"] + ":")

    def jinja_variables(self) -> dict[str, object]:
        """The export writes this instance's BOS, EOS and default system prompt."""
        return {
            "bos": self.info.bos_token or "",
            "eos": self.info.eos_token or SEP2,
            "default_system": self.default_system,
        }


FAMILIES = [
    Family(
        "vicuna", make=Vicuna, export="vicuna.jinja", reference=Vicuna.info.reference, group="vicuna",
        aliases=("vicuna-v1.1", "vicuna-v1.3", "vicuna-v1.5", "vicuna-7b-v1.5", "vicuna-13b-v1.5"),
    )
]
