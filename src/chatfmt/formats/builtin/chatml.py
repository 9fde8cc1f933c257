"""ChatML: ``<|im_start|>role\\ncontent<|im_end|>\\n``."""

from __future__ import annotations

from ..spec import SpecFamily, SpecFormat, ToolCallsSpec, closed_turns
from ._chatml import CHATML_TOKENS, IM_END

DESCRIPTION = "ChatML <|im_start|>role ... <|im_end|> (OpenAI, SmolLM2, many fine-tunes)"
SPEC = closed_turns("chatml", DESCRIPTION, IM_END, tool_calls=ToolCallsSpec(mode="drop"))
FAMILY = SpecFamily(
    SPEC.name, spec=SPEC, aliases=("im-start",), group="chatml", special_tokens=CHATML_TOKENS,
    reference="the ChatML template as shipped by SmolLM2 / OpenHermes",
)
FAMILIES = [FAMILY]


def ChatML() -> SpecFormat:
    """Plain ChatML with no default system prompt and no tool syntax (tools go to the system message).

    Assistant turns are trained through their ``<|im_end|>``; the newline after it is not; an
    assistant's tool calls are not written (as the template drops them).
    """
    return FAMILY.create()
