"""Zephyr (HuggingFaceH4/zephyr-7b-beta): ``<|user|>\\n{content}</s>\\n<|assistant|>\\n{content}</s>\\n``.

Renders exactly what zephyr-7b-beta's own chat template renders under transformers (the template
ollama fingerprints as ``zephyr``, ``ollama-template-index/extracted/02-zephyr.jinja``), with no Jinja
at run time:

- every system, user and assistant message is ``<|{role}|>\\n{content}{eos}\\n`` with ``eos = </s>``,
  contents as given (no stripping), in any order;
- the generation prompt is ``<|assistant|>\\n``;
- there is no BOS in the text and no default system prompt.

Segments: message content is ``content``; the role header, ``</s>`` and newline are ``control``. An
assistant message's content and its ``</s>`` are trained, its header and the newline after ``</s>``
are not. The generation prompt belongs to no message.

BOS: the template writes none, so neither does this format by default. zephyr-7b-beta was trained
(alignment-handbook + TRL) and is prompted (its model card's ``pipeline`` example) by tokenizing the
rendered text with the Llama tokenizer's ``add_bos_token``, i.e. with ``<s>`` in front;
``Zephyr(bos_token="<s>")`` writes that ``<s>`` as a control segment so that token ids match.

Where chatfmt deliberately differs from the template:

- an assistant message with tool calls raises :class:`~chatfmt.errors.ValidationError` (rule
  ``tool_call``): the template has no tool syntax and would drop the calls (and every ``tool``
  message); a tool list goes into the system prompt as JSON;
- ``None`` content renders as ``""`` and a list of text parts as its joined text (the template
  raises on both).

ollama's own ``zephyr`` template renders the same text for its test conversations
(``ollama-template-index/testdata/zephyr.gotmpl``); the tests check that too.
"""

from __future__ import annotations

from ..family import Pin
from ..spec import SpecFamily, SpecFormat, closed_turns, role_tables

DESCRIPTION = "Zephyr-7B-beta: <|system|>/<|user|>/<|assistant|>\\n ... </s>\\n"
SPEC = closed_turns("zephyr", DESCRIPTION, "</s>", "<|user|>", roles=role_tables("<|{role}|>\n", "</s>\n", ("system", "user", "assistant")))
FAMILY = SpecFamily(
    SPEC.name, spec=SPEC, aliases=("zephyr-7b-beta",), group="zephyr", special_tokens={"bos": "<s>", "eos": "</s>"},
    pins=(Pin("HuggingFaceH4/zephyr-7b-beta", "HuggingFaceH4--zephyr-7b-beta.jinja", tools=False),),
    reference=(
        "the chat_template of HuggingFaceH4/zephyr-7b-beta as indexed by ollama "
        "(ollama-template-index/extracted/02-zephyr.jinja), rendered by transformers with eos_token='</s>'"
    ),
)
FAMILIES = [FAMILY]


def Zephyr(*, bos_token: str | None = None) -> SpecFormat:
    """Zephyr-7B-beta: ``<|system|>`` / ``<|user|>`` / ``<|assistant|>`` headers, every turn ended by
    ``</s>``; ``bos_token`` (e.g. ``"<s>"``) is written first when given."""
    return FAMILY.create(bos=bos_token) if bos_token else FAMILY.create()
