"""Ministral 3, Mistral Large 3 and Devstral 2 (Mistral AI, December 2025): ``[INST]`` turns on a
tekken tokenizer of mistral-common's instruct version v13, ``[TOOL_CALLS]name[ARGS]{json}`` calls,
``[THINK]`` reasoning.

Formats (``FAMILIES``), each rendering exactly what its official chat template renders under
transformers (pinned byte for byte in ``official/``):

- ``ministral-3``, ``ministral-3-8b``, ``ministral-3-14b``: the templates of
  mistralai/Ministral-3-3B-Instruct-2512, -8B- and -14B-Instruct-2512. They differ only in the model's
  name inside their default system prompt (``You are Ministral-3-3B-Instruct-2512, ...``), hence three
  names;
- ``ministral-3-reasoning``: mistralai/Ministral-3-3B-Reasoning-2512's template, which the 8B and 14B
  Reasoning models publish too; its default system prompt asks for ``[THINK]...[/THINK]`` and
  assistant reasoning is written as ``[THINK]reasoning[/THINK]`` before the answer, in every turn;
- ``mistral-large-3``: mistralai/Mistral-Large-3-675B-Instruct-2512's template: the Reasoning
  template's body (reasoning written as ``[THINK]...[/THINK]``) with the Instruct default system
  prompt for its own name;
- ``devstral-2``: mistralai/Devstral-Small-2-24B-Instruct-2512's and Devstral-2-123B-Instruct-2512's
  templates (they differ only in how they order image and text parts of a user message, which a
  text-only conversation never shows); the Mistral Vibe default system prompt.

What the templates write:

- ``<s>``, then ``[SYSTEM_PROMPT]`` + the default system prompt + ``[/SYSTEM_PROMPT]`` unless the
  first message is a system message (the placeholders ``{today}``/``{yesterday}`` stay as written);
- consecutive user (or assistant) messages are merged, their texts (also text parts) joined with
  ``"\\n\\n"`` and their tool calls concatenated; system and tool messages are never merged;
- with tools, ``[AVAILABLE_TOOLS]`` + ``tojson(tools)`` + ``[/AVAILABLE_TOOLS]`` right before the
  first user turn (nowhere if there is no user message);
- a user turn is ``[INST]content[/INST]``; a system message ``[SYSTEM_PROMPT]content[/SYSTEM_PROMPT]``
  where it stands; an assistant turn is its content, then per call ``[TOOL_CALLS]name[ARGS]arguments``
  (an object as ``tojson``, a string as it is, ``""`` as ``{}``), then ``</s>``; a tool result
  ``[TOOL_RESULTS]content[/TOOL_RESULTS]`` (no call id);
- ``ministral-3-reasoning`` and ``mistral-large-3``: an answer's ``reasoning_content`` (also
  ``reasoning``) is a leading ``[THINK]...[/THINK]``; content parts
  ``{"type": "thinking", "thinking": ..., "closed": bool}`` in assistant and system messages are ``[THINK]...`` and ``[/THINK]`` unless ``closed`` is false;
- the model answers right after ``[/INST]`` or ``[/TOOL_RESULTS]``: no generation prompt; the
  templates read no keyword argument.

The templates raise, and so does chatfmt (:class:`~chatfmt.errors.ValidationError`), when the first
message (after merging) is neither a user's nor a system's, on a role that may not follow the one
before it (after a system message: a tool result; after a user message: a tool result; after an
assistant message: a system message; after a tool result: a system message), on an assistant message
with neither content nor tool calls (nor reasoning), and on ``thinking`` parts anywhere but in
``ministral-3-reasoning``'s assistant and system messages. Deliberate differences (each pinned in the tests): a tool result given as text parts
is their text joined by ``"\\n\\n"`` (as mistral-common joins them; the template writes the Python
list), ``None`` as ``""``; reasoning on a user message is not written (the reasoning template would
raise on it); tool-call arguments given as JSON text are parsed, as chatfmt's messages always hold
them, and written as ``tojson`` (the template writes the text as given; mistral-common re-serialises
it too); a tool name is written as it is, where transformers' rendering of the template HTML-escapes a
name holding ``<>&'"`` (it is concatenated to ``tojson|safe``'s ``Markup``); an image part is refused
(the templates write ``[IMG]``).

Ids: mistral-common (1.13; ``MistralTokenizer.encode_chat_completion`` with ``InstructTokenizerV13``,
the tokenizer version of these models' ``tekken.json``) and the template give the same ids where
their texts agree: a conversation that starts with a system message (mistral-common adds no default
system prompt), answers without trailing spaces (mistral-common ``rstrip(" ")``s an answer), tool-call
arguments as objects or in ``json.dumps`` form (mistral-common re-serialises a JSON string), results
in the order of their calls (mistral-common v13 reorders them by call id), tools given as
``{"type": "function", "function": {"name", "description", "parameters"}}`` in that key order, with
a description (mistral-common re-serialises each tool that way, ``"description": ""`` when absent).
mistral-common ships no v13 tekken file, and no package ships these models' ``tekken.json``: the tests
build one from mistral-common's ``tekken_240911.json`` vocabulary (whether the models' own vocabulary
is the same is not checked here) with a v13 special-token table (``[ARGS]`` 32 and ``[CALL_ID]`` 33 as
in mistral-common's own test tables, ``[THINK]`` 34 and ``[/THINK]`` 35 assumed), and compare ``fmt.encode`` with chatfmt's tekken reader on it to mistral-common's ids. chatfmt
writes every control token as text (``[INST]``, ``[THINK]``, ...), which the tokenizer maps to its
own ids, so no id table is hard-coded here.

Segments: message content is ``content``; the tool list is ``content`` of no message (a control token
typed in a tool description stays text); everything else is ``control``. An assistant turn (content,
``[THINK]`` block, ``[TOOL_CALLS]``/``[ARGS]`` and the calls' names and arguments, ``</s>``) is trained;
``[INST]``/``[/INST]`` and the rest are not; the default system prompt and ``<s>`` belong to no message.

``chatfmt export NAME --to jinja`` writes ``templates/ministral-3.jinja`` (written from this format,
not copied from the vendor's template), with the variant's default system prompt and ``thinking``.

The output parser ``ministral-3`` reads what these models generate: ``[THINK]reasoning[/THINK]`` (the
reasoning model), content, then one ``[TOOL_CALLS]name[ARGS]{json}`` per call, to ``</s>``. As vLLM's
``mistral`` parser, it also takes ``name{json}`` without ``[ARGS]``, v11's ``name[CALL_ID]id[ARGS]{json}``
(the id is kept) and the older ``[TOOL_CALLS][{"name": ..., "arguments": ...}]`` list; spaces and
newlines around the name and the arguments are allowed, and arguments given as a JSON string holding an
object are decoded. A call whose arguments are not one JSON object (as mistral-common's decoder, which
``json.loads`` them) stays content with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ...errors import ValidationError
from ...messages import Conversation, Message, ToolCall
from ...segments import CONTENT, CONTROL, SegmentBuilder, SegmentKind
from ...toolcalls import bodies
from ...toolcalls.bodies import BodyError, Call
from ...toolcalls.families import ParserSpec
from ...toolcalls.parser import Block, Grammar
from ..base import FormatInfo, NativeFormat
from ..family import Family, Pin

BOS, EOS = "<s>", "</s>"
INST, END_INST = "[INST]", "[/INST]"
SYSTEM, END_SYSTEM = "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"
TOOLS, END_TOOLS = "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]"
TOOL_RESULTS, END_TOOL_RESULTS = "[TOOL_RESULTS]", "[/TOOL_RESULTS]"
TOOL_CALLS, ARGS, CALL_ID = "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"
THINK, END_THINK = "[THINK]", "[/THINK]"

#: how the templates join the texts of merged messages and of text parts
JOIN = "\n\n"

SPECIAL_TOKENS: dict[str, str] = {
    "bos": BOS,
    "eos": EOS,
    "inst": INST,
    "end_inst": END_INST,
    "system": SYSTEM,
    "end_system": END_SYSTEM,
    "available_tools": TOOLS,
    "end_available_tools": END_TOOLS,
    "tool_results": TOOL_RESULTS,
    "end_tool_results": END_TOOL_RESULTS,
    "tool_calls": TOOL_CALLS,
    "args": ARGS,
}

_MINISTRAL_3_REST = (
    ", a Large Language Model (LLM) created by Mistral AI, a French startup headquartered in Paris.\n"
    "You power an AI assistant called Le Chat.\n"
    "Your knowledge base was last updated on 2023-10-01.\n"
    "The current date is {today}.\n"
    "\n"
    "When you're not sure about some information or when the user's request requires up-to-date or specific data, you must use the available tools to fetch the information. Do not hesitate to use tools whenever they can provide a more accurate or complete response. If no relevant tools are available, then clearly state that you don't have the information and avoid making up anything.\n"
    'If the user\'s question is not clear, ambiguous, or does not provide enough context for you to accurately answer the question, you do not try to answer it right away and you rather ask the user to clarify their request (e.g. "What are some good restaurants around me?" => "Where are you?" or "When is the next flight to Tokyo" => "Where do you travel from?").\n'
    'You are always very attentive to dates, in particular you try to resolve dates (e.g. "yesterday" is {yesterday}) and when asked about information at specific dates, you discard information that is at another date.\n'
    "You follow these instructions in all languages, and always respond to the user in the language they use or request.\n"
    "Next sections describe the capabilities that you have.\n"
    "\n"
    "# WEB BROWSING INSTRUCTIONS\n"
    "\n"
    "You cannot perform any web search or access internet to open URLs, links etc. If it seems like the user is expecting you to do so, you clarify the situation and ask the user to copy paste the text directly in the chat.\n"
    "\n"
    "# MULTI-MODAL INSTRUCTIONS\n"
    "\n"
    "You have the ability to read images, but you cannot generate images. You also cannot read nor transcribe audio files or videos.\n"
    "\n"
    "# TOOL CALLING INSTRUCTIONS\n"
    "\n"
    "You may have access to tools that you can use to fetch information or perform actions. You must use these tools in the following situations:\n"
    "\n"
    "1. When the request requires up-to-date information.\n"
    "2. When the request requires specific data that you do not have in your knowledge base.\n"
    "3. When the request involves actions that you cannot perform without tools.\n"
    "\n"
    "Always prioritize using tools to provide the most accurate and helpful response. If tools are not available, inform the user that you cannot perform the requested action at the moment."
)
_REASONING = (
    "# HOW YOU SHOULD THINK AND ANSWER\n"
    "\n"
    "First draft your thinking process (inner monologue) until you arrive at a response. Format your response using Markdown, and use LaTeX for any mathematical equations. Write both your thoughts and the response in the same language as the input.\n"
    "\n"
    "Your thinking process must follow the template below:[THINK]Your thoughts or/and draft, like working through an exercise on scratch paper. Be as casual and as long as you want until you are confident to generate the response to the user.[/THINK]Here, provide a self-contained response."
)
_DEVSTRAL_2 = (
    "You are operating as and within Mistral Vibe, a CLI coding-agent built by Mistral AI and powered by default by the Devstral family of models. It wraps Mistral's Devstral models to enable natural language interaction with a local codebase. Use the available tools when helpful.\n"
    "\n"
    "You can:\n"
    "\n"
    "- Receive user prompts, project context, and files.\n"
    "- Send responses and emit function calls (e.g., shell commands, code edits).\n"
    "- Apply patches, run commands, based on user approvals.\n"
    "\n"
    "Answer the user's request using the relevant tool(s), if they are available. Check that all the required parameters for each tool call are provided or can reasonably be inferred from context. IF there are no relevant tools or there are missing values for required parameters, ask the user to supply these values; otherwise proceed with the tool calls. If the user provides a specific value for a parameter (for example provided in quotes), make sure to use that value EXACTLY. DO NOT make up values for or ask about optional parameters. Carefully analyze descriptive terms in the request as they may indicate required parameter values that should be included even if not explicitly quoted.\n"
    "\n"
    "Always try your hardest to use the tools to answer the user's request. If you can't use the tools, explain why and ask the user for more information.\n"
    "\n"
    "Act as an agentic assistant, if a user asks for a long task, break it down and do it step by step.\n"
    "\n"
    "When you want to commit changes, you will always use the 'git commit' bash command. It will always be suffixed with a line telling it was generated by Mistral Vibe with the appropriate co-authoring information. The format you will always use is the following heredoc.\n"
    "\n"
    "```bash\n"
    'git commit -m "<Commit message here>\n'
    "\n"
    "Generated by Mistral Vibe.\n"
    'Co-Authored-By: Mistral Vibe <vibe@mistral.ai>"\n'
    "```"
)


def ministral_3_system(model: str) -> str:
    """The default system prompt of a Ministral-3 Instruct template, for its model's name."""
    return "You are " + model + _MINISTRAL_3_REST


#: which role may follow which (the templates' ordering check, after merging)
_FOLLOWS: dict[str, frozenset[str]] = {
    "system": frozenset({"user", "assistant", "system"}),
    "user": frozenset({"assistant", "system", "user"}),
    "assistant": frozenset({"assistant", "user", "tool"}),
    "tool": frozenset({"assistant", "tool", "user"}),
}

#: one written piece of a turn: (kind, text, message index)
Piece = tuple[SegmentKind, str, int]


@dataclass
class _Turn:
    """A message after the templates' merging: consecutive user (assistant) messages are one turn."""

    role: str
    members: list[int] = field(default_factory=list)
    #: the content as written, in order: joined texts, ``[THINK]`` blocks
    pieces: list[Piece] = field(default_factory=list)
    #: text parts not yet written (joined by ``"\\n\\n"`` when a thinking part or the end comes)
    texts: list[tuple[int, str]] = field(default_factory=list)
    calls: list[tuple[int, ToolCall]] = field(default_factory=list)

    def flush(self) -> None:
        for k, (i, text) in enumerate(self.texts):
            if k:
                self.pieces.append((CONTROL, JOIN, i))
            self.pieces.append((CONTENT, text, i))
        self.texts.clear()

    def think(self, i: int, text: str, closed: bool = True) -> None:
        self.flush()
        self.pieces += [(CONTROL, THINK, i), (CONTENT, text, i)]
        if closed:
            self.pieces.append((CONTROL, END_THINK, i))

    @property
    def empty(self) -> bool:
        """What the templates' "must have content" check sees: no text (after joining) and no thinking part."""
        return not any(text for _, text, _ in self.pieces)


def tojson(value: Any) -> str:
    """transformers' ``tojson``: ``json.dumps`` with non-ASCII kept and the default separators."""
    return json.dumps(value, ensure_ascii=False)


def arguments_text(call: ToolCall) -> str:
    """A call's arguments as the templates write them: an object as ``tojson``, a string as it is
    (``""`` as ``{}``)."""
    args = call.arguments
    if isinstance(args, str):
        return args or "{}"
    return tojson({} if args is None else args)


def _text_of(m: Message, i: int, name: str) -> str:
    """A tool result's text: a string, or its text parts joined by ``"\\n\\n"``."""
    c = m.content
    if c is None or isinstance(c, str):
        return c or ""
    texts = []
    for j, p in enumerate(c):
        if not isinstance(p, Mapping) or p.get("type", "text") != "text":
            kind = p.get("type") if isinstance(p, Mapping) else type(p).__name__
            raise ValidationError(
                f"content part {j} is {kind!r}: {name} takes text parts", index=i, rule="content"
            )
        texts.append(str(p.get("text", "")))
    return JOIN.join(texts)


class Ministral3(NativeFormat):
    """Ministral-3-3B-Instruct-2512: ``[SYSTEM_PROMPT]``, ``[INST]``, ``[TOOL_CALLS]name[ARGS]{json}``."""

    #: the default system prompt written when the first message is not a system message
    default_system: str = ministral_3_system("Ministral-3-3B-Instruct-2512")
    #: whether reasoning and ``thinking`` parts are written (the Reasoning template)
    thinking: bool = False

    info = FormatInfo(
        name="ministral-3",
        family="mistral",
        description="Ministral 3 3B Instruct (tekken v13): [SYSTEM_PROMPT] [INST] [TOOL_CALLS]name[ARGS]{json}",
        stop=(EOS,),
        end_of_turn=(EOS,),
        bos_token=BOS,
        eos_token=EOS,
        supports_system=True,
        supports_tools=True,
        supports_reasoning=False,
        reference="the chat_template of mistralai/Ministral-3-3B-Instruct-2512, rendered by transformers; ids "
        "compared with mistral-common 1.13's InstructTokenizerV13 (encode_chat_completion)",
        special_tokens=dict(SPECIAL_TOKENS),
    )

    def jinja_variables(self) -> dict[str, object]:
        """What the Jinja export (``templates/ministral-3.jinja``) is written with."""
        return {"default_system": self.default_system, "thinking": self.thinking}

    # -- merging (the templates' aggregation of consecutive messages)

    def _add(self, turn: _Turn, m: Message, i: int) -> None:
        """Message ``i``'s content (and reasoning) into ``turn``."""
        c = m.content
        if self.thinking and m.role == "assistant" and m.reasoning_content:
            if isinstance(c, list) and any(isinstance(p, Mapping) and p.get("type") == "thinking" for p in c):
                raise ValidationError(
                    f"{self.name}: a message cannot have both thinking parts and reasoning_content "
                    "(the template raises)",
                    index=i,
                    rule="reasoning",
                )
            turn.think(i, m.reasoning_content)
            if c == "":
                return  # the template's [thinking, text] drops an empty text
        if c is None:
            return
        if isinstance(c, str):
            turn.texts.append((i, c))
            return
        for j, p in enumerate(c):
            kind = p.get("type", "text") if isinstance(p, Mapping) else type(p).__name__
            if kind == "text":
                turn.texts.append((i, str(p.get("text", ""))))
            elif kind == "thinking" and self.thinking and m.role in ("assistant", "system"):
                turn.think(i, str(p.get("thinking", "")), bool(p.get("closed", True)))
            else:
                allowed = "text parts" + (
                    " (thinking parts in assistant and system messages)" if self.thinking else ""
                )
                raise ValidationError(
                    f"content part {j} is {kind!r}: {self.name} takes {allowed}", index=i, rule="content"
                )

    def _turns(self, conv: Conversation) -> list[_Turn]:
        turns: list[_Turn] = []
        for i, m in enumerate(conv.messages):
            if m.role not in _FOLLOWS:
                raise ValidationError(
                    f"{self.name}: only user, assistant, system and tool roles are supported, got {m.role!r}",
                    index=i,
                    rule="roles",
                )
            if not turns or m.role in ("system", "tool") or turns[-1].role != m.role:
                if turns:
                    turns[-1].flush()
                turns.append(_Turn(m.role))
            turn = turns[-1]
            turn.members.append(i)
            if m.role != "tool":
                self._add(turn, m, i)
                turn.calls += [(i, tc) for tc in m.tool_calls or ()]
        if turns:
            turns[-1].flush()
        return turns

    def _check_order(self, turns: list[_Turn]) -> None:
        if turns and turns[0].role not in ("user", "system"):
            raise ValidationError(
                f"{self.name}: the conversation must start with a user or system message, got {turns[0].role!r}",
                index=turns[0].members[0],
                rule="roles",
            )
        for before, turn in zip(turns, turns[1:], strict=False):
            if turn.role not in _FOLLOWS[before.role]:
                raise ValidationError(
                    f"{self.name}: a {turn.role!r} message cannot follow a {before.role!r} message",
                    index=turn.members[0],
                    rule="roles",
                )

    # -- writing

    @staticmethod
    def _write(out: SegmentBuilder, pieces: list[Piece], trained: dict[int, bool]) -> None:
        for kind, text, i in pieces:
            out.add(text, kind, i, trained[i])

    def build(
        self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any
    ) -> None:
        msgs = conv.messages
        turns = self._turns(conv)
        self._check_order(turns)
        trained = {i: m.trained for i, m in enumerate(msgs)}
        out.control(BOS)
        if self.default_system and not (msgs and msgs[0].role == "system"):
            out.control(SYSTEM + self.default_system + END_SYSTEM)
        raw = conv.raw_tools if conv.raw_tools is not None else conv.tools
        tools_pending = bool(raw)
        for turn in turns:
            first, last = turn.members[0], turn.members[-1]
            if turn.role == "user":
                if tools_pending:
                    out.control(TOOLS)
                    out.content(tojson(raw), None)
                    out.control(END_TOOLS)
                    tools_pending = False
                out.control(INST, first, trained[first])
                self._write(out, turn.pieces, trained)
                out.control(END_INST, last, trained[last])
            elif turn.role == "system":
                out.control(SYSTEM, first, trained[first])
                self._write(out, turn.pieces, trained)
                out.control(END_SYSTEM, last, trained[last])
            elif turn.role == "assistant":
                if turn.empty and not turn.calls:
                    raise ValidationError(
                        f"{self.name}: an assistant message needs content or tool calls (the template raises)",
                        index=last,
                        rule="content",
                    )
                self._write(out, turn.pieces, trained)
                for i, call in turn.calls:
                    out.control(TOOL_CALLS, i, trained[i])
                    out.content(call.name, i, trained[i])
                    out.control(ARGS, i, trained[i])
                    out.content(arguments_text(call), i, trained[i])
                out.control(EOS, last, trained[last])
            else:
                m = msgs[first]
                out.turn(first, TOOL_RESULTS, _text_of(m, first, self.name), END_TOOL_RESULTS, trained[first])


class Ministral3_8B(Ministral3):
    """Ministral-3-8B-Instruct-2512: ``ministral-3`` with its own name in the default system prompt."""

    default_system = ministral_3_system("Ministral-3-8B-Instruct-2512")
    info = replace(
        Ministral3.info,
        name="ministral-3-8b",
        description="Ministral 3 8B Instruct: ministral-3 with the 8B model's name in its default system prompt",
        reference=Ministral3.info.reference.replace("3B", "8B"),
    )


class Ministral3_14B(Ministral3):
    """Ministral-3-14B-Instruct-2512: ``ministral-3`` with its own name in the default system prompt."""

    default_system = ministral_3_system("Ministral-3-14B-Instruct-2512")
    info = replace(
        Ministral3.info,
        name="ministral-3-14b",
        description="Ministral 3 14B Instruct: ministral-3 with the 14B model's name in its default system prompt",
        reference=Ministral3.info.reference.replace("3B", "14B"),
    )


class Ministral3Reasoning(Ministral3):
    """Ministral-3-*-Reasoning-2512: ``[THINK]reasoning[/THINK]`` before every answer that has reasoning."""

    default_system = _REASONING
    thinking = True
    info = replace(
        Ministral3.info,
        name="ministral-3-reasoning",
        description="Ministral 3 Reasoning (3B/8B/14B): ministral-3 with [THINK]...[/THINK] reasoning kept in history",
        supports_reasoning=True,
        reference=Ministral3.info.reference.replace("Instruct", "Reasoning"),
        special_tokens={**SPECIAL_TOKENS, "think_start": THINK, "think_end": END_THINK},
    )


class MistralLarge3(Ministral3Reasoning):
    """Mistral-Large-3-675B-Instruct-2512: the Reasoning template's body (``[THINK]`` reasoning written)
    with the Ministral 3 Instruct default system prompt, for its own name."""

    default_system = ministral_3_system("Mistral-Large-3-675B-Instruct-2512")
    info = replace(
        Ministral3Reasoning.info,
        name="mistral-large-3",
        description="Mistral Large 3 675B Instruct: ministral-3-reasoning's format with the Le Chat default system prompt",
        reference="the chat_template of mistralai/Mistral-Large-3-675B-Instruct-2512, rendered by transformers; ids "
        "compared with mistral-common 1.13's InstructTokenizerV13 (encode_chat_completion)",
    )


class Devstral2(Ministral3):
    """Devstral-Small-2-24B / Devstral-2-123B-Instruct-2512: ``ministral-3`` with the Mistral Vibe prompt."""

    default_system = _DEVSTRAL_2
    info = replace(
        Ministral3.info,
        name="devstral-2",
        description="Devstral 2 (Small-2-24B, 2-123B): ministral-3's format with the Mistral Vibe default system prompt",
        reference="the chat_templates of mistralai/Devstral-Small-2-24B-Instruct-2512 and "
        "mistralai/Devstral-2-123B-Instruct-2512, rendered by transformers; ids compared with mistral-common 1.13's "
        "InstructTokenizerV13 (encode_chat_completion)",
    )


# -- the output parser ---------------------------------------------------------------------------------


def _arguments(text: str) -> str:
    """The arguments after ``[ARGS]`` (or right after the name): one JSON object, possibly given as a
    JSON string holding one; surrounding whitespace allowed."""
    text = text.strip()
    if not text:
        raise BodyError("no arguments after the tool name")
    try:
        value, end = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as e:
        raise BodyError(f"arguments are not JSON: {e.msg} at {e.pos}") from None
    except (ValueError, RecursionError) as e:
        raise BodyError(f"arguments are not usable JSON: {type(e).__name__}") from None
    if text[end:].strip():
        raise BodyError("text after the arguments' JSON")
    return bodies.dump_arguments(value)  # a JSON string holding an object is decoded there


def tool_call(body: str) -> list[Call]:
    """The text after one ``[TOOL_CALLS]``: ``name[ARGS]{json}``, ``name[CALL_ID]id[ARGS]{json}``,
    ``name{json}``, or a JSON list of ``{"name", "arguments"}`` (the pre-v11 syntax)."""
    text = body.strip()
    if text[:1] in "[{":
        return bodies.json_calls(text)
    call_id: str | None = None
    if ARGS in text:
        head, _, args = text.partition(ARGS)
    else:
        brace = text.find("{")
        quote = text.find('"')
        cut = min(k for k in (brace, quote, len(text)) if k >= 0)
        if cut == len(text):
            raise BodyError("neither name[ARGS]{...} nor name{...}")
        head, args = text[:cut], text[cut:]
    if CALL_ID in head:
        head, _, call_id = head.partition(CALL_ID)
        call_id = call_id.strip() or None
    name = head.strip()
    if not name or any(ch.isspace() for ch in name):
        raise BodyError(f"not a tool name: {name[:40]!r}")
    return [Call(bodies.call_from_object({"name": name, "arguments": {}}).name, _arguments(args), call_id)]


def _grammar(tools: list[Any] | None) -> Grammar:
    markers = {"tool_calls": TOOL_CALLS, "think_start": THINK, "think_end": END_THINK, "eos": EOS}
    return Grammar(
        "ministral-3",
        markers,
        think=("think_start", "think_end"),
        blocks=(Block("tool_calls", (), tool_call),),
        end=("eos",),
    )


PARSERS = [
    ParserSpec(
        "ministral-3",
        _grammar,
        "[THINK]...[/THINK] + [TOOL_CALLS]name[ARGS]{json} per call",
        template_markers=("[ARGS]",),
        priority=65,
    ),
]


def _family(fmt: type[Ministral3], aliases: tuple[str, ...], *pins: Pin) -> Family:
    return Family(
        fmt.info.name,
        make=fmt,
        aliases=aliases,
        parser="ministral-3",
        kwargs=(),
        pins=pins,
        export="ministral-3.jinja",
        reference=fmt.info.reference,
        group="mistral",
    )


def _pin(repo: str) -> Pin:
    return Pin(repo, repo.replace("/", "--") + ".jinja")


FAMILIES = [
    _family(
        Ministral3,
        ("ministral-3-3b-instruct-2512", "ministral-3-3b-instruct", "ministral-3-3b"),
        _pin("mistralai/Ministral-3-3B-Instruct-2512"),
    ),
    _family(
        Ministral3_8B,
        ("ministral-3-8b-instruct-2512", "ministral-3-8b-instruct"),
        _pin("mistralai/Ministral-3-8B-Instruct-2512"),
    ),
    _family(
        Ministral3_14B,
        ("ministral-3-14b-instruct-2512", "ministral-3-14b-instruct"),
        _pin("mistralai/Ministral-3-14B-Instruct-2512"),
    ),
    _family(
        Ministral3Reasoning,
        (
            "ministral-3-3b-reasoning-2512",
            "ministral-3-8b-reasoning-2512",
            "ministral-3-14b-reasoning-2512",
            "ministral-3-3b-reasoning",
            "ministral-3-8b-reasoning",
            "ministral-3-14b-reasoning",
        ),
        _pin("mistralai/Ministral-3-3B-Reasoning-2512"),
    ),
    _family(
        MistralLarge3,
        ("mistral-large-3-675b-instruct-2512", "mistral-large-3-675b-instruct", "mistral-large-3-675b"),
        _pin("mistralai/Mistral-Large-3-675B-Instruct-2512"),
    ),
    _family(
        Devstral2,
        (
            "devstral-small-2-24b-instruct-2512",
            "devstral-2-123b-instruct-2512",
            "devstral-small-2",
            "devstral-2-123b",
        ),
        _pin("mistralai/Devstral-Small-2-24B-Instruct-2512"),
        _pin("mistralai/Devstral-2-123B-Instruct-2512"),
    ),
]
