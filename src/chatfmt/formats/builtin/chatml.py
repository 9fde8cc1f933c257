"""ChatML: ``<|im_start|>role\\ncontent<|im_end|>\\n``."""

from __future__ import annotations

from typing import Any

from ...messages import Conversation
from ...segments import SegmentBuilder
from ..base import FormatInfo, NativeFormat


class ChatML(NativeFormat):
    """Plain ChatML with no default system prompt and no tool syntax (tools go to the system message).

    Assistant turns are trained through their ``<|im_end|>``; the newline after it is not.
    """

    info = FormatInfo(
        name="chatml",
        family="chatml",
        description="ChatML <|im_start|>role ... <|im_end|> (OpenAI, SmolLM2, many fine-tunes)",
        stop=("<|im_end|>",),
        end_of_turn=("<|im_end|>",),
        eos_token="<|im_end|>",
        reference="the ChatML template as shipped by SmolLM2 / OpenHermes",
        special_tokens={"im_start": "<|im_start|>", "im_end": "<|im_end|>"},
    )

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        for i, m in enumerate(conv.messages):
            out.turn(i, f"<|im_start|>{m.role}\n", m.text, "<|im_end|>", m.trained, "\n")
        if add_generation_prompt:
            out.control("<|im_start|>assistant\n")


FORMATS = [("chatml", ChatML, ("im-start",))]
