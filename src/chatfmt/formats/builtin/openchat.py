"""OpenChat 3.5 (openchat/openchat_3.5, -1210, -0106): ``GPT4 Correct User: ...<|end_of_turn|>``.

The chat template of openchat_3.5's ``tokenizer_config.json`` (the template ollama fingerprints as
``openchat``, ``ollama-template-index/extracted/04-openchat.jinja``) renders::

    <s>GPT4 Correct User: {content}<|end_of_turn|>GPT4 Correct Assistant: {content}<|end_of_turn|>...

with ``GPT4 Correct Assistant:`` as the generation prompt (the model generates the space), every
message as ``"GPT4 Correct " + role.title() + ": " + content + "<|end_of_turn|>"``, contents as
given, in any order. This format renders exactly that, with no Jinja at run time, except for one
deliberate difference:

- **a system message** is written as its bare content + ``<|end_of_turn|>`` right after ``<s>``, as
  the vendor does, not as ``GPT4 Correct System: ...``. OpenChat's own code (imoneoi/openchat
  ``ochat/config``: the ``openchat_v3.2_mistral`` conversation template, served as ``openchat_3.5``)
  tokenizes the system prompt with no role prefix (``system_as_role`` off), and the
  ``hf_chat_template`` it ships for that model writes ``message['content'] + '<|end_of_turn|>'`` for a
  system message. ``OpenChat(system_prefix="GPT4 Correct System: ")`` reproduces the
  ``tokenizer_config.json`` template (and ollama) byte for byte. (The vendor's encoder leaves out an
  empty system prompt altogether, while both templates write its ``<|end_of_turn|>``; this format
  follows the templates.)

Other deliberate differences: an assistant message with tool calls raises
:class:`~chatfmt.errors.ValidationError` (rule ``tool_call``; the template has no tool syntax and would
drop the calls); a tool list goes into the system prompt as JSON; ``None`` content renders as ``""``
and a list of text parts as its joined text (the template raises on both).

Segments: ``<s>`` and the generation prompt belong to no message; ``GPT4 Correct {Role}: `` headers
and ``<|end_of_turn|>`` are control; an assistant's content and its ``<|end_of_turn|>`` are trained,
its header is not. The vendor's fine-tuning weights exactly those tokens (message content and its
end-of-turn token; role prefixes and the system prompt get weight 0).
"""

from __future__ import annotations

from dataclasses import replace

from ..spec import Roles, RoleSpec, SpecFamily, SpecFormat, closed_turns

END_OF_TURN = "<|end_of_turn|>"
CONDITION = "GPT4 Correct"

DESCRIPTION = "OpenChat 3.5: <s>GPT4 Correct User: ...<|end_of_turn|>GPT4 Correct Assistant: ..."
_HEADERS = {"system": "", "user": f"{CONDITION} User: ", "assistant": f"{CONDITION} Assistant: ", "tool": f"{CONDITION} Tool: "}
SPEC = closed_turns(
    "openchat", DESCRIPTION, END_OF_TURN, "</s>", bos="<s>", generation_prompt=f"{CONDITION} Assistant:",
    roles=Roles(*(RoleSpec(header, END_OF_TURN) for header in _HEADERS.values())),
)
FAMILY = SpecFamily(
    SPEC.name, spec=SPEC, aliases=("openchat-3.5", "openchat-3.5-1210", "openchat-3.5-0106"), group="openchat",
    special_tokens={"bos": "<s>", "eos": "</s>", "end_of_turn": END_OF_TURN},
    reference=(
        "the chat_template of openchat/openchat_3.5 tokenizer_config.json as indexed by ollama "
        "(ollama-template-index/extracted/04-openchat.jinja), rendered by transformers; system prompt "
        "as in imoneoi/openchat ochat/config (openchat_v3.2_mistral: no role prefix)"
    ),
)
FAMILIES = [FAMILY]


def OpenChat(*, system_prefix: str = "") -> SpecFormat:
    """OpenChat 3.5: ``<s>`` + ``GPT4 Correct {Role}: {content}<|end_of_turn|>`` per message (a system
    message with ``system_prefix`` before it, none by default)."""
    if not system_prefix:
        return FAMILY.create()
    roles = SPEC.roles
    return FAMILY.create(roles=replace(roles, system=replace(roles.system, prefix=system_prefix)))
