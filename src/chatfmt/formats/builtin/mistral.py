"""Mistral instruct formats, as Mistral's own encoder ``mistral-common`` produces them, id for id.

The reference is ``mistral-common`` 1.13 (``MistralTokenizer.encode_chat_completion``), which runs
``MistralRequestValidator`` (``protocol/instruct/validator.py``), ``InstructRequestNormalizer``
(``protocol/instruct/normalize.py``) and ``InstructTokenizerV1/V2/V3/V7``
(``tokens/tokenizers/instruct.py``) over ``SentencePieceTokenizer`` (``SentencePieceProcessor.encode``)
or ``Tekkenizer`` (tiktoken). The tests compare ids on the tokenizer files mistral-common ships.

Formats (``FAMILIES``), by mistral-common's own version table (its README; ``MistralTokenizer.v1()`` ...):

- ``mistral-v1``: ``tokenizer.model.v1`` (32000 pieces; ``[INST]`` is plain text). Mistral-7B-Instruct
  v0.1 *and v0.2*, Mixtral-8x7B-Instruct: the open v0.2 and Mixtral models use the v1 tokenizer.
- ``mistral-v2``: ``mistral_instruct_tokenizer_240216.model.v2`` (``[INST]`` etc. are control
  tokens). The API models mistral-small-2402 / mistral-large-2402 (``from_model`` also maps the API
  names mistral-tiny-2312 / mistral-small-2312 to it); no open-weight model uses it.
- ``mistral-v3``: ``mistral_instruct_tokenizer_240323.model.v3``; Mistral-7B-Instruct-v0.3 (whose
  ``tokenizer.model.v3`` is byte-identical to the v2 *file*: the ``.v3`` suffix picks the protocol),
  Mixtral-8x22B-Instruct, Codestral-22B, Mistral-Large-2407.
- ``mistral-v7``: ``mistral_instruct_tokenizer_241114.model.v7`` (Mistral-Large-2411).
- ``mistral-tekken``: the v3 protocol on ``tekken_240718.json`` (Mistral-Nemo-Instruct-2407,
  Ministral-8B-2410; Pixtral-12B's ``tekken_240911.json`` has the same text vocabulary). Tekken's
  control ids differ from sentencepiece's (``[TOOL_CALLS]`` 9 not 5, ``[AVAILABLE_TOOLS]`` 5 not 6, ...)
  and it has no dummy prefix. ``chatfmt.load_tokenizer`` reads tekken files
  (:mod:`chatfmt.tokenizers.tekken`).

What mistral-common does (text-only conversations; the encoder is written once, in
:mod:`chatfmt.formats.builtin._inst`, parameterised by each version's :class:`Protocol`):

- **Normalizer** (``_aggregate_messages``): consecutive user (assistant) messages are merged, their
  texts joined with ``"\\n\\n"`` (empty texts skipped; text parts of one message are joined the same
  way), assistant tool calls concatenated. v1-v3 take the system message out as ``system_prompt``
  (empty: none) and insert an empty user message when the first message left is not a user's; v7
  (``InstructRequestNormalizerV7``) keeps system messages in place and inserts nothing. Tool call
  arguments (and, v1-v3, tool results) go through ``_normalize_json_content``: empty is ``{}``, JSON
  is parsed, anything else stays a string.
- **Encoding**: ``[<s>]`` then each message; every string goes through ``tokenizer.encode`` on its own
  (sentencepiece: each starts with the dummy prefix ``▁``), control tokens are ids, and text is never
  parsed for control tokens.

  - v1 (``InstructTokenizerV1``): a user message is ``encode(f"[INST] {content} [/INST]")`` with
    ``system_prompt + "\\n\\n"`` before the content of the *first* user message; an answer is
    ``encode(content) + [</s>]``, unstripped. The tool list is ignored; tool calls/results raise.
  - v2 (``InstructTokenizerV2``): ``[INST] encode(content) [/INST]`` with ``system_prompt + "\\n\\n"``
    before the content of the *last* user message (``encode_user_content``), preceded there by
    ``[AVAILABLE_TOOLS] encode(json.dumps(tools)) [/AVAILABLE_TOOLS]`` (each tool as
    ``Tool.model_dump``: ``{"type": "function", "function": {"name", "description" ("" if absent),
    "parameters"}}``; ``json.dumps(..., ensure_ascii=False)`` with the default ``", "``/``": "``
    separators everywhere). An answer is ``encode(content.rstrip(" ")) + [</s>]``; tool calls
    ``[TOOL_CALLS] encode(json.dumps([{"name", "arguments"}])) [</s>]``; a tool result
    ``[TOOL_RESULTS] encode(json.dumps([{"name", "content"}])) [/TOOL_RESULTS]`` with the content's
    JSON value. Tool calls and results before the last user message are dropped; one result per
    call turn after it.
  - v3 (``InstructTokenizerV3``): calls ``{"name", "arguments", "id"}`` (no ``id`` when absent), results
    ``{"content": value, "call_id": id}``; nothing is dropped.
  - v7 (``InstructTokenizerV7``): ``[SYSTEM_PROMPT] encode(system) [/SYSTEM_PROMPT]`` where the system
    message stands; results ``[TOOL_RESULTS] encode(call_id) [TOOL_CONTENT] encode(content)
    [/TOOL_RESULTS]`` with the content as given; an answer may carry content and then tool calls.

- **Validator**: an assistant message needs content or tool calls (v1-v3: not both); v3+ call ids and
  ``tool_call_id`` are 9 letters or digits. chatfmt raises :class:`~chatfmt.errors.ValidationError`
  for these (rules ``content``, ``tool_call``, ``tool_call_id``, ``tool_result``), and for non-text
  content parts. mistral-common also checks role order and JSON schemas, which chatfmt leaves to
  :func:`~chatfmt.messages.validate_conversation`.
- **A conversation ending with an answer**: mistral-common's default (``test``) and ``serving`` modes
  refuse it unless the answer has ``prefix=True``; its ``finetuning`` mode encodes it with ``</s>`` -
  the training form, and what chatfmt renders. ``prefix=True`` (``ChatCompletionRequest.from_openai(...,
  continue_final_message=True)``) leaves ``</s>`` out (v2+ still ``rstrip(" ")`` the text): chatfmt's
  ``continue_final_message=True``. The model answers right after ``[/INST]`` (or ``[/TOOL_RESULTS]``),
  so ``add_generation_prompt`` changes nothing.
- **Training** (mistral-finetune, ``finetune/data/tokenize.py`` ``tokenize_instruct``): every token of
  an assistant message is trained (content, ``[TOOL_CALLS]``, the call JSON, ``</s>``), nothing else;
  that is chatfmt's default labelling. With tools it trains only the last message (``only_last``:
  ``train_on="last_assistant"``) and drops the id of a final tool call (send that call without an
  id: it is then left out, as mistral-common's finetuning mode does for ``"null"``).

Segments: ``<s>``, ``</s>`` and the control tokens of the tokenizer are id segments (ids from the
format's table); v1's ``[INST] `` / `` [/INST]`` are control text encoded with the content as one
string. Each separate ``encode`` call of a sentencepiece format gets an id-less segment ``" "`` in
front: it is the dummy prefix's space in the text (so :meth:`render` is what the ids spell, the text
mistral-common's ``*_spm`` templates write) and it keeps the calls apart when encoding. The JSON of
tool lists, calls and results is content (the tool list belongs to no message), so a control token
typed in an argument stays text. ``compat="transformers"`` does not apply to these formats.

Where the Hugging Face templates differ from mistral-common (pinned in
``tests/formats/builtin/test_mistral.py``, 37 conversations for v3):

- **Mistral-7B-Instruct-v0.3's** ``chat_template`` (``tokenizer_config.json``; rendered by transformers
  and tokenized by its ``tokenizer.json``): 15 conversations give mistral-common's ids, 17 do not, 5
  raise. Differences: the system prompt is added only when the *last message* is the user's, so it
  vanishes from training samples and from chats ending on a tool result; answers are ``|trim``-med
  (mistral-common strips trailing spaces only); ``"[INST] " + ""`` adds a ``▁`` for an empty user
  message; an empty system prompt still adds ``"\\n\\n"``; a system-only chat renders ``<s>``; tool
  definitions are written by hand (string values unescaped, keys in the given order, no default
  ``description``); string tool-call ``arguments`` stay an escaped JSON string instead of an object;
  tool results are inserted raw (``{"content": sunny, ...}``, JSON not re-dumped, ``""`` gives
  ``{"content": , ...}``); control tokens typed in content are parsed by the tokenizer. It raises
  on consecutive messages of one role, on an answer before the first user message, on list content
  and on a call without a 9-character id.
- **mistral-common's generated templates** (its ``tests/data/chat_templates``), rendered by
  transformers, against chatfmt's text: ``v1_spm`` differs only for a system-only chat (``<s>``) and
  empty text parts (kept and joined: ``"\\n\\n\\n\\n"``), and raises when an answer comes first
  (mistral-common inserts an empty user message). ``v2_spm``, ``v3_spm``, ``v7_spm`` and ``v3``
  (tekken) share the empty-text-part difference (and, but for v7, the other two), and besides keep
  the trailing spaces of answers (no ``rstrip(" ")``, also with ``continue_final_message``), write
  ``[INST] [/INST]`` for an empty user message (the sentencepiece ones), leave tool definitions as
  given, dump a JSON tool result as a JSON *string* (v2/v3), raise on a call without an id (v3+), and
  under transformers HTML-escape every tool call with object arguments (``arguments|tojson|safe`` is
  a ``markupsafe.Markup``; strings concatenated to it are escaped: ``{&#34;name&#34;: ...``).
  ``v7_spm`` also misses the space after ``[/SYSTEM_PROMPT]`` before an answer and writes
  ``[SYSTEM_PROMPT] [/SYSTEM_PROMPT]`` for an empty system prompt. Of 36-38 conversations each, 17-19
  agree. The non-``spm`` ``v1``/``v7`` templates are for tekken tokenizers of those versions, which
  no format here targets.
"""

from __future__ import annotations

from ..base import FormatInfo
from ._headers import native_family
from ._inst import (
    BOS,
    CALL_ID,
    END_INST,
    END_SYSTEM,
    END_TOOL_RESULTS,
    END_TOOLS,
    EOS,
    INST,
    JOIN,
    SPM_BOS_EOS,
    SYSTEM,
    TOOL_CALLS,
    TOOL_CONTENT,
    TOOL_RESULTS,
    TOOLS,
    InstFormat,
    Protocol,
    tools_json,
)

#: the ``[INST]`` encoder of every version (mistral-common's ``InstructTokenizerV<n>``)
MistralInstruct = InstFormat

#: control token ids of the sentencepiece tokenizers v2, v3, v7 (``tokenizer.model.v2``/``.v3``/``.v7``,
#: Mistral-7B-Instruct-v0.3's ``tokenizer.model``): CONTROL pieces 0-18
SPM_IDS: dict[str, int] = {
    BOS: 1,
    EOS: 2,
    INST: 3,
    END_INST: 4,
    TOOL_CALLS: 5,
    TOOLS: 6,
    END_TOOLS: 7,
    TOOL_RESULTS: 8,
    END_TOOL_RESULTS: 9,
    SYSTEM: 16,
    END_SYSTEM: 17,
    TOOL_CONTENT: 18,
}
#: the v1 sentencepiece model (Mistral-7B-Instruct v0.1/v0.2, Mixtral-8x7B) has only <unk> <s> </s>
V1_IDS: dict[str, int] = SPM_BOS_EOS
#: tekken files without a special-token list (mistral-common's ``Tekkenizer.DEPRECATED_SPECIAL_TOKENS``)
TEKKEN_IDS: dict[str, int] = {
    BOS: 1,
    EOS: 2,
    INST: 3,
    END_INST: 4,
    TOOLS: 5,
    END_TOOLS: 6,
    TOOL_RESULTS: 7,
    END_TOOL_RESULTS: 8,
    TOOL_CALLS: 9,
    SYSTEM: 17,
    END_SYSTEM: 18,
    TOOL_CONTENT: 19,
}


#: each format: (description, the tokenizer its ids are compared with, aliases)
_ABOUT: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mistral-v1": (
        "Mistral v1 (Mistral-7B-Instruct v0.1/v0.2, Mixtral-8x7B): <s> [INST] user [/INST] answer</s>, [INST] as text",
        "sentencepiece on mistral-common's tokenizer.model.v1",
        ("mistral-7b-instruct-v0.1", "mistral-7b-instruct-v0.2", "mixtral-8x7b-instruct", "mistral-instruct-v1"),
    ),
    "mistral-v2": (
        "Mistral v2 (mistral-small-2402, mistral-large-2402): <s>[INST] user[/INST] answer</s> as tokens, "
        "[TOOL_CALLS] without call ids",
        "sentencepiece on mistral-common's mistral_instruct_tokenizer_240216.model.v2",
        ("mistral-small-2402", "mistral-large-2402", "mistral-instruct-v2"),
    ),
    "mistral-v3": (
        "Mistral v3 (Mistral-7B-Instruct v0.3, Mixtral-8x22B, Codestral): [AVAILABLE_TOOLS] [INST] [TOOL_CALLS] "
        "[TOOL_RESULTS] with call ids, system prompt in the last user message",
        "sentencepiece on mistral-common's mistral_instruct_tokenizer_240323.model.v3 and Mistral-7B-Instruct-v0.3's "
        "tokenizer.model.v3",
        ("mistral-7b-instruct-v0.3", "mixtral-8x22b-instruct", "codestral-22b", "mistral-instruct-v3"),
    ),
    "mistral-v7": (
        "Mistral v7 (Mistral-Large-2411): [SYSTEM_PROMPT] system [/SYSTEM_PROMPT], [TOOL_CONTENT] tool results",
        "sentencepiece on mistral-common's mistral_instruct_tokenizer_241114.model.v7",
        ("mistral-large-2411", "mistral-instruct-v7"),
    ),
    "mistral-tekken": (
        "Mistral v3 on tekken (Mistral-Nemo-Instruct-2407, Ministral-8B, Pixtral-12B text): "
        "<s>[INST]user[/INST]answer</s>",
        "tiktoken (chatfmt.tokenizers.tekken) on mistral-common's tekken_240718.json",
        ("mistral-nemo", "mistral-v3-tekken", "mistral-nemo-instruct-2407", "ministral-8b-2410"),
    ),
}


def _info(name: str, protocol: Protocol) -> FormatInfo:
    description, tokenizer, _ = _ABOUT[name]
    version = protocol.version
    special = {"bos": BOS, "eos": EOS}
    if protocol.has("tool_syntax"):
        special |= {
            "inst": INST,
            "end_inst": END_INST,
            "tool_calls": TOOL_CALLS,
            "available_tools": TOOLS,
            "end_available_tools": END_TOOLS,
            "tool_results": TOOL_RESULTS,
            "end_tool_results": END_TOOL_RESULTS,
        }
    if protocol.has("system_tokens"):
        special |= {"system": SYSTEM, "end_system": END_SYSTEM, "tool_content": TOOL_CONTENT}
    return FormatInfo(
        name=name,
        family="mistral",
        description=description,
        stop=(EOS,),
        end_of_turn=(EOS,),
        bos_token=BOS,
        eos_token=EOS,
        supports_system=True,
        supports_tools=protocol.has("tool_syntax"),
        reference=(
            f"mistral-common 1.13 InstructTokenizerV{version} (mistral_common/tokens/tokenizers/instruct.py) "
            f"behind MistralTokenizer.encode_chat_completion; ids compared with {tokenizer}"
        ),
        special_tokens=special,
    )


class MistralV1(InstFormat):
    """v1: ``<s>`` + per user message ``sp.encode("[INST] {content} [/INST]")`` (``[INST]`` is plain text),
    per answer ``sp.encode(content)`` + ``</s>``; the system prompt opens the first user message."""

    protocol = Protocol(1, V1_IDS)
    info = _info("mistral-v1", protocol)


class MistralV2(InstFormat):
    """v2: ``[INST]``/``[/INST]`` tokens, tools, system prompt in the last user message; tool calls and
    results before the last user message are dropped."""

    protocol = Protocol(2, SPM_IDS)
    info = _info("mistral-v2", protocol)


class MistralV3(InstFormat):
    """v3: v2 with call ids in tool calls and ``{"content", "call_id"}`` tool results, all history kept."""

    protocol = Protocol(3, SPM_IDS)
    info = _info("mistral-v3", protocol)


class MistralV7(InstFormat):
    """v7: the system prompt in ``[SYSTEM_PROMPT]...[/SYSTEM_PROMPT]`` where it stands; tool results as
    ``[TOOL_RESULTS] id [TOOL_CONTENT] content [/TOOL_RESULTS]``; content and tool calls may mix."""

    protocol = Protocol(7, SPM_IDS)
    info = _info("mistral-v7", protocol)


class MistralTekken(InstFormat):
    """The v3 protocol on the tekken tokenizer (Mistral-Nemo): other control ids, no dummy prefix."""

    protocol = Protocol(3, TEKKEN_IDS, dummy_prefix=False)
    info = _info("mistral-tekken", protocol)


FAMILIES = [
    native_family(cls, _ABOUT[cls.info.name][2], parser="mistral" if cls.protocol.has("tool_syntax") else "plain")
    for cls in (MistralV1, MistralV2, MistralV3, MistralV7, MistralTekken)
]

__all__ = [
    "BOS",
    "CALL_ID",
    "END_INST",
    "END_SYSTEM",
    "END_TOOLS",
    "END_TOOL_RESULTS",
    "EOS",
    "FAMILIES",
    "INST",
    "JOIN",
    "SYSTEM",
    "TOOLS",
    "TOOL_CALLS",
    "TOOL_CONTENT",
    "TOOL_RESULTS",
    "MistralInstruct",
    "MistralTekken",
    "MistralV1",
    "MistralV2",
    "MistralV3",
    "MistralV7",
    "Protocol",
    "tools_json",
]
