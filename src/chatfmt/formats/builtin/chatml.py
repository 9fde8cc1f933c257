"""ChatML: ``<|im_start|>role\\ncontent<|im_end|>\\n``."""

from __future__ import annotations

from ..spec import FormatSpec, SpecFamily, SpecFormat, ToolCallsSpec, chatml_roles

SPEC = FormatSpec(
    name="chatml",
    description="ChatML <|im_start|>role ... <|im_end|> (OpenAI, SmolLM2, many fine-tunes)",
    eos="<|im_end|>",
    eos_placement="none",
    end_of_turn=("<|im_end|>",),
    stop=("<|im_end|>",),
    roles=chatml_roles(),
    tool_calls=ToolCallsSpec(mode="drop"),
)

FAMILY = SpecFamily(
    name="chatml",
    spec=SPEC,
    aliases=("im-start",),
    group="chatml",
    reference="the ChatML template as shipped by SmolLM2 / OpenHermes",
    special_tokens={"im_start": "<|im_start|>", "im_end": "<|im_end|>"},
)
FAMILIES = [FAMILY]


def ChatML() -> SpecFormat:
    """Plain ChatML with no default system prompt and no tool syntax (tools go to the system message).

    Assistant turns are trained through their ``<|im_end|>``; the newline after it is not; an
    assistant's tool calls are not written (as the template drops them).
    """
    return FAMILY.create()
