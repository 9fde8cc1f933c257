"""Phi-3 / Phi-3.5 instruct: ``<|role|>\\n ... <|end|>\\n``.

Each format renders exactly what its model's own Hugging Face ``chat_template`` renders under
transformers, with no Jinja at run time: per system, user or assistant message
``<|{role}|>\\n`` + the content as given (not stripped) + ``<|end|>\\n``; then the generation prompt
``<|assistant|>\\n``, or, without one, ``<|endoftext|>`` (the template's ``eos_token``). There is no BOS.

- ``phi-3`` (Phi-3-mini-4k-instruct, the chat template of its ``tokenizer_config.json``) writes
  every system message, even an empty one;
- ``phi-3.5`` (Phi-3.5-mini-instruct) writes a system message only when its content is not empty.

Neither template has tool syntax: a tool list goes into the system message as JSON, and tool calls
are rejected (``ValidationError``, rule ``tool_call``): the templates would silently drop them and
every ``tool`` message. Phi-4 (``<|im_start|>system<|im_sep|>...``) is not implemented here: no copy
of its official template was available to pin against.

Segments: message content is ``content``, everything else ``control``. The final ``<|endoftext|>``
belongs to no message and is not trained. An assistant's content and its ``<|end|>`` are trained per
:attr:`~chatfmt.messages.Message.trained`; its header and the newline after ``<|end|>`` are not.

Deliberate differences from the templates (none for well-formed input): ``None`` content renders as
``""`` and a list of text parts as its text joined with newlines (the templates raise on both).
"""

from __future__ import annotations

from typing import Any

from ...messages import Conversation
from ...segments import SegmentBuilder
from ..base import FormatInfo, NativeFormat
from ._headers import PHI3, header_info, native_family, no_tool_calls, pinned

END = PHI3.end
EOS = "<|endoftext|>"
ROLES = ("system", "user", "assistant")


def _info(name: str, description: str, model: str, where: str) -> FormatInfo:
    return header_info(
        name,
        "phi",
        description,
        PHI3,
        stop=(EOS,),
        eos_token=EOS,
        reference=f"the chat_template of microsoft/{model} ({where}), rendered by transformers",
        tokens={"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>", "end": END, "eos": EOS},
    )


class Phi3(NativeFormat):
    """Phi-3-mini-instruct."""

    info = _info(
        "phi-3",
        "Phi-3-mini-instruct: <|system|>/<|user|>/<|assistant|>\\n...<|end|>\\n, <|endoftext|> at the end",
        "Phi-3-mini-4k-instruct",
        "its tokenizer_config.json",
    )

    #: whether an empty system message is left out (Phi-3.5's template checks ``message['content']``)
    skip_empty_system = False

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        no_tool_calls(conv, self.info.name)
        for i, m in enumerate(conv.messages):
            if m.role not in ROLES:  # (unreachable: a tool result needs a tool call before it)
                continue
            if m.role == "system" and self.skip_empty_system and not m.content:
                continue
            PHI3.turn(out, i, m.role, m.text, m.trained)
        out.control("<|assistant|>\n" if add_generation_prompt else EOS)

    def jinja_variables(self) -> dict[str, object]:
        return {"skip_empty_system": self.skip_empty_system}


class Phi35(Phi3):
    """Phi-3.5-mini-instruct: Phi-3 without empty system turns."""

    info = _info(
        "phi-3.5",
        "Phi-3.5-mini-instruct: <|system|>/<|user|>/<|assistant|>\\n...<|end|>\\n (no empty system turn), "
        "<|endoftext|> at the end",
        "Phi-3.5-mini-instruct",
        "= llama.cpp's models/templates/microsoft-Phi-3.5-mini-instruct.jinja at c392e50",
    )

    skip_empty_system = True


FAMILIES = [
    native_family(Phi3, ("phi3", "phi-3-mini", "phi-3-mini-instruct", "phi-3-mini-4k-instruct"), parser="plain",
                  pins=pinned("microsoft/Phi-3-mini-4k-instruct", tools=False), export="phi-3.jinja"),
    native_family(Phi35, ("phi3.5", "phi-3.5-mini", "phi-3.5-mini-instruct"), parser="plain",
                  pins=pinned("microsoft/Phi-3.5-mini-instruct", tools=False), export="phi-3.jinja"),
]
