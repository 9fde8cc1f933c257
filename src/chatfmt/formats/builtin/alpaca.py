"""Alpaca: the Stanford Alpaca instruction prompt, extended to system prompts and several turns.

Rendered text::

    <s>{system}\\n\\n### Instruction:\\n{user}\\n\\n### Response:\\n{assistant}</s>\\n\\n### Instruction:\\n...

with ``{system}`` defaulting to the Alpaca preamble ``Below is an instruction that describes a task.
Write a response that appropriately completes the request.``, every content ``.strip()``-ed, and
``### Response:\\n`` as the generation prompt.

Sources and how they differ:

- Stanford Alpaca (tatsu-lab/stanford_alpaca ``train.py``, ``PROMPT_DICT["prompt_no_input"]``) is
  single-turn: ``{preamble}\\n\\n### Instruction:\\n{instruction}\\n\\n### Response:`` followed directly
  by ``{output}{eos}`` (no newline after ``Response:``), tokenized in one piece with the tokenizer's
  BOS. Its ``### Input:`` variant (another preamble) has no chat equivalent; such records put the
  input into the user message.
- LLaMA-Factory's ``alpaca`` template (``src/llamafactory/data/template.py``) has user
  ``### Instruction:\\n{content}\\n\\n### Response:\\n``, assistant ``{content}`` + eos + ``\\n\\n`` and
  default system ``{preamble}\\n\\n``; it does not strip contents.
- FastChat's ``alpaca`` conversation (``fastchat/conversation.py``, ``ADD_COLON_TWO``) writes
  ``### Instruction: {content}`` with a space instead of a newline and ``</s>`` with no ``\\n\\n``
  after it: a different convention, not followed here.
- chujiezheng/chat_templates ``alpaca.jinja`` (used with its README's
  ``.replace('    ', '').replace('\\n', '')``) renders ``bos`` + ``system | trim`` + ``\\n\\n`` (nothing
  without a system message; the preamble is the ``system_prompt`` of its ``generation_configs/alpaca.json``),
  then ``### Instruction:\\n{user | trim}\\n\\n`` and ``### Response:\\n{assistant | trim}{eos}\\n\\n``
  and the generation prompt ``### Response:\\n``. This format is pinned to it byte for byte, with the
  preamble inserted when there is no system message (as LLaMA-Factory, FastChat and Stanford do);
  ``Alpaca(default_system=None)`` leaves it out.

BOS and EOS are written as text (``info.bos_token``/``info.eos_token``, ``<s>``/``</s>`` for the LLaMA
models Alpaca was trained on); ``fmt.with_info(bos_token=..., eos_token=...)`` adapts the format to
another tokenizer's special tokens. Segments: contents are ``content``; the BOS, a default system
prompt and the generation prompt belong to no message; assistant content and its EOS are trained,
the ``### Response:\\n`` header and the ``\\n\\n`` after the EOS are not. Roles must alternate
user/assistant after an optional system message (the template raises otherwise); there is no tool
syntax, so a tool list goes into the system prompt as JSON.
"""

from __future__ import annotations

from ..spec import FormatSpec, Roles, RoleSpec, SpecFamily, SpecFormat, SystemSpec

PREAMBLE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
INSTRUCTION = "### Instruction:\n"
RESPONSE = "### Response:\n"
SEP = "\n\n"

SPEC = FormatSpec(
    name="alpaca",
    description="Stanford Alpaca: preamble, ### Instruction:\\n ... ### Response:\\n ... </s>",
    bos="<s>",
    eos="</s>",
    strip=True,
    alternating=True,
    end_of_turn=("</s>",),
    stop=("</s>", "### Instruction:", "### Response:"),
    roles=Roles(system=RoleSpec("", SEP), user=RoleSpec(INSTRUCTION, SEP), assistant=RoleSpec(RESPONSE, SEP)),
    system=SystemSpec(default=PREAMBLE),
)
FAMILY = SpecFamily(
    SPEC.name, spec=SPEC, group="alpaca",
    reference=(
        "chujiezheng/chat_templates chat_templates/alpaca.jinja rendered by transformers "
        "(system prompt defaulting to the Stanford Alpaca preamble)"
    ),
)
FAMILIES = [FAMILY]


def Alpaca(*, default_system: str | None = PREAMBLE) -> SpecFormat:
    """Stanford Alpaca ``### Instruction:`` / ``### Response:`` prompt, multi-turn as in LLaMA-Factory
    (``default_system=None``: no preamble without a system message)."""
    return FAMILY.with_default_system(default_system or "")
