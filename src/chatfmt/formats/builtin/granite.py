"""IBM Granite 3.3 and 4.0: ``<|start_of_role|>role<|end_of_role|>content<|end_of_text|>\\n``.

``granite-3.3`` renders exactly what ``ibm-granite/granite-3.3-2b-instruct``'s chat template (llama.cpp
``models/templates/ibm-granite-granite-3.3-2B-Instruct.jinja``) renders under transformers:

- the system turn is the system message, or the default ``Knowledge Cutoff Date: April 2024. Today's
  Date: {date}. You are Granite, developed by IBM.`` followed by one of the template's sentences for
  tools / documents / ``thinking=True`` / neither, and the ``controls`` notes (``citations``,
  ``hallucinations``) when documents are given. The date is ``date_string`` if given, else today's date
  formatted ``%B %d, %Y`` (the template's ``strftime_now('%B %d, %Y')``);
- tools (or an ``available_tools`` keyword, which wins) follow as an ``available_tools`` turn holding
  ``json.dumps(tools, indent=4, ensure_ascii=False)``; ``documents`` (a keyword: dicts with ``doc_id``
  and ``text``) follow as ``document {"document_id": "..."}`` turns;
- every other message is ``<|start_of_role|>{role}<|end_of_role|>{content}<|end_of_text|>\\n`` (a tool
  result is a ``tool`` turn); the generation prompt ``<|start_of_role|>assistant<|end_of_role|>``
  (with `` {controls as JSON}`` before ``<|end_of_role|>`` when ``controls`` is given) is written only
  after a message other than the system message, as the template writes it inside its loop.

  The template has no tool-call syntax: it renders an assistant message's content and drops its
  ``tool_calls`` (and raises when the content is ``None``). Deliberately, this format raises
  :class:`~chatfmt.errors.ValidationError` (rule ``tool_call``) for an assistant message with tool
  calls rather than dropping them; Granite 3.x writes calls as content, ``<|tool_call|>[{...}]``.

``granite-4.0`` renders ``models/templates/ibm-granite-granite-4.0.jinja`` (the Granite 4.0 template):
the system message, with the tools as ``<tools>`` JSON lines (Hermes/Qwen style) and the documents as
``<documents>`` JSON lines appended; with neither system message nor tools/documents, the default
``You are a helpful assistant. Please ensure responses are professional, accurate, and safe.``;
assistant tool calls as ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>`` blocks; tool
results grouped into one ``user`` turn of ``<tool_response>`` blocks.

Both: ``content: None`` renders as ``""`` (Granite 4.0's template does the same; 3.3's raises), a list
of text parts as the parts joined by newlines (as 4.0's template joins them). Tool-call arguments given
as JSON text are parsed and re-dumped. Segments: the system turn belongs to the system message (to no
message when it is the default); the tool and document turns and the generation prompt to no message;
an assistant's content, tool-call text and ``<|end_of_text|>`` are trained, its header and the newline
after ``<|end_of_text|>`` are not.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ...errors import ValidationError
from ...messages import Conversation
from ...segments import SegmentBuilder
from ..base import FormatInfo, NativeFormat
from ..family import TemplateKwarg
from ._headers import GRANITE, header_info, native_family, pinned, tojson

START, END_ROLE, EOT = GRANITE.open, GRANITE.close, GRANITE.end

_TOOLS_33 = (
    " You are a helpful assistant with access to the following tools. When a tool is required to answer the "
    "user's query, respond only with <|tool_call|> followed by a JSON list of tools used. If a tool does not "
    "exist in the provided list of tools, notify the user that you do not have the ability to fulfill the request."
)
_DOCS_33 = (
    " Write the response to the user's input by strictly aligning with the facts in the provided documents. If "
    "the information needed to answer the question is not available in the documents, inform the user that the "
    "question cannot be answered based on the available data."
)
_THINKING_33 = (
    " You are a helpful AI assistant.\nRespond to every user query in a comprehensive and detailed way. You can "
    "write down your thoughts and reasoning process before responding. In the thought process, engage in a "
    "comprehensive cycle of analysis, summarization, exploration, reassessment, reflection, backtracing, and "
    "iteration to develop well-considered thinking process. In the response section, based on various attempts, "
    "explorations, and reflections from the thoughts section, systematically present the final solution that you "
    "deem correct. The response should summarize the thought process. Write your thoughts between <think></think> "
    "and write your response between <response></response> for each user query."
)
_CITATIONS_33 = (
    "\nUse the symbols <|start_of_cite|> and <|end_of_cite|> to indicate when a fact comes from a document in the "
    "search result, e.g <|start_of_cite|> {document_id: 1}my fact <|end_of_cite|> for a fact from document 1. "
    "Afterwards, list all the citations with their corresponding documents in an ordered list."
)
_HALLUCINATIONS_33 = (
    "\nFinally, after the response is written, include a numbered list of sentences from the response with a "
    "corresponding risk value that are hallucinated and not based in the documents."
)

TOOLS_PREFIX_40 = (
    "You are a helpful assistant with access to the following tools. You may call one or more tools to assist "
    "with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_SUFFIX_40 = (
    '\n</tools>\n\nFor each tool call, return a json object with function name and arguments within '
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>. If a tool does not exist in the provided list of tools, notify the user that you do not have "
    "the ability to fulfill the request."
)
DOCS_PREFIX_40 = (
    "You are a helpful assistant with access to the following documents. You may use one or more documents to "
    "assist with the user query.\n\nYou are given a list of documents within <documents></documents> XML tags:\n"
    "<documents>"
)
DOCS_SUFFIX_40 = (
    "\n</documents>\n\nWrite the response to the user's input by strictly aligning with the facts in the provided "
    "documents. If the information needed to answer the question is not available in the documents, inform the "
    "user that the question cannot be answered based on the available data."
)
DEFAULT_SYSTEM_40 = "You are a helpful assistant. Please ensure responses are professional, accurate, and safe."

_SPECIAL = {
    "start_of_role": START,
    "end_of_role": END_ROLE,
    "end_of_text": EOT,
    "tool_call": "<|tool_call|>",
}


def _info(name: str, description: str, reference: str) -> FormatInfo:
    return header_info(name, "granite", description, GRANITE, eos_token=EOT, supports_tools=True, reference=reference,
                       tokens=_SPECIAL)


def default_date() -> str:
    """Today's date as the Granite 3.3 template writes it (``strftime_now('%B %d, %Y')``)."""
    return datetime.now().strftime("%B %d, %Y")


def _jinja_str(value: Any) -> str:
    return "" if value is None else str(value)


class Granite33(NativeFormat):
    """Granite 3.3 Instruct: dated default system prompt, ``available_tools`` turn, documents, controls."""

    info = _info(
        "granite-3.3",
        "IBM Granite 3.3: <|start_of_role|>role<|end_of_role|>...<|end_of_text|>, dated system prompt",
        "the chat_template of ibm-granite/granite-3.3-2b-instruct (= llama.cpp's models/templates/"
        "ibm-granite-granite-3.3-2B-Instruct.jinja at 0c1e570), rendered by transformers",
    )

    def build(
        self,
        conv: Conversation,
        out: SegmentBuilder,
        *,
        add_generation_prompt: bool,
        date_string: str | None = None,
        documents: list[dict[str, Any]] | None = None,
        thinking: Any = None,
        controls: Any = None,
        available_tools: Any = None,
        **kwargs: Any,
    ) -> None:
        msgs = conv.messages
        tools = available_tools or conv.tools
        for i, m in enumerate(msgs):
            if m.tool_calls:
                raise ValidationError(
                    "granite-3.3's template has no tool-call syntax (it would drop the calls); write the call as "
                    "the assistant content, <|tool_call|>[{...}]",
                    index=i,
                    rule="tool_call",
                )
        start = 0
        if msgs[0].role == "system":
            start = 1
            GRANITE.turn(out, 0, "system", msgs[0].text, msgs[0].trained)
        else:
            date = default_date() if date_string is None else date_string
            system = "Knowledge Cutoff Date: April 2024. Today's Date: " + date + ". You are Granite, developed by IBM."
            if tools and documents:
                system += _TOOLS_33 + _DOCS_33
            elif tools:
                system += _TOOLS_33
            elif documents:
                system += _DOCS_33
            elif thinking:
                system += _THINKING_33
            else:
                system += " You are a helpful AI assistant."
            if controls and documents and "citations" in controls:
                system += _CITATIONS_33
            if controls and documents and "hallucinations" in controls:
                system += _HALLUCINATIONS_33
            out.control(START + "system" + END_ROLE + system + EOT + "\n")
        if tools:
            out.control(START + "available_tools" + END_ROLE + json.dumps(tools, ensure_ascii=False, indent=4) + EOT + "\n")
        for doc in documents or ():
            doc_id = _jinja_str(doc.get("doc_id"))
            out.control(START + 'document {"document_id": "' + doc_id + '"}' + END_ROLE + "\n")
            out.control(_jinja_str(doc.get("text")) + EOT + "\n")
        GRANITE.turns(out, msgs, start)
        if add_generation_prompt and start < len(msgs):
            out.control(START + "assistant" + ((" " + tojson(controls)) if controls else "") + END_ROLE)


class Granite40(NativeFormat):
    """Granite 4.0: system prompt with ``<tools>``/``<documents>``, ``<tool_call>`` and ``<tool_response>``."""

    info = _info(
        "granite-4.0",
        "IBM Granite 4.0: <|start_of_role|>role<|end_of_role|>...<|end_of_text|>, <tool_call> tools",
        "llama.cpp's models/templates/ibm-granite-granite-4.0.jinja at 0c1e570 (the chat_template of the "
        "ibm-granite/granite-4.0 models), rendered by transformers",
    )

    def build(
        self,
        conv: Conversation,
        out: SegmentBuilder,
        *,
        add_generation_prompt: bool,
        documents: list[Any] | None = None,
        available_tools: Any = None,
        **kwargs: Any,
    ) -> None:
        msgs = conv.messages
        tools = available_tools or conv.tools
        tools_msg = TOOLS_PREFIX_40 + "".join("\n" + tojson(t) for t in tools) + TOOLS_SUFFIX_40 if tools else ""
        docs_msg = DOCS_PREFIX_40 + "".join("\n" + tojson(d) for d in documents) + DOCS_SUFFIX_40 if documents else ""
        extra = "\n\n".join(part for part in (tools_msg, docs_msg) if part)
        has_system = msgs[0].role == "system"
        owner = 0 if has_system else None
        sys_trained = has_system and msgs[0].trained
        out.control(START + "system" + END_ROLE, owner)
        if has_system and (msgs[0].text or extra):
            out.content(msgs[0].text, 0, sys_trained)
            if extra:
                out.control("\n\n" + extra, 0)
        else:
            out.control(extra or DEFAULT_SYSTEM_40, owner)
        out.control(EOT, owner, sys_trained)
        out.control("\n", owner)

        for i in range(1 if has_system else 0, len(msgs)):
            m = msgs[i]
            trained = m.trained
            if m.role == "user":
                GRANITE.turn(out, i, "user", m.text, trained)
            elif m.role == "assistant":
                content = m.text
                calls = "".join(
                    ("\n" if k or content else "")
                    + '<tool_call>\n{"name": "'
                    + tc.name
                    + '", "arguments": '
                    + tojson(tc.arguments)
                    + "}\n</tool_call>"
                    for k, tc in enumerate(m.tool_calls or ())
                )
                GRANITE.turn(out, i, "assistant", content, trained, calls + EOT)
            elif m.role == "tool":
                if i == 0 or msgs[i - 1].role != "tool":
                    out.control(START + "user" + END_ROLE, i)
                out.control("\n<tool_response>\n", i)
                out.content(m.text, i, trained)
                out.control("\n</tool_response>", i)
                if i == len(msgs) - 1 or msgs[i + 1].role != "tool":
                    out.control(EOT, i, trained)
                    out.control("\n", i)
        if add_generation_prompt:
            out.control(START + "assistant" + END_ROLE)


DOCUMENTS = TemplateKwarg("documents", "list[dict] | None", None, "documents to ground the answer in (doc_id, text)")
AVAILABLE_TOOLS = TemplateKwarg("available_tools", "list[dict] | None", None, "the tool list (wins over tools=)")

FAMILIES = [
    native_family(
        Granite33,
        ("granite3.3", "granite-3.3-instruct", "granite"),
        parser="granite-3.3",
        kwargs=(
            TemplateKwarg(
                "date_string", "str | None", None, "the date of the default system prompt (default: today, %B %d, %Y)"
            ),
            DOCUMENTS,
            TemplateKwarg("thinking", "bool", False, "the default system prompt asks for <think> and <response>"),
            TemplateKwarg(
                "controls", "dict | None", None, "citations / hallucinations notes, and the generation prompt's controls"
            ),
            AVAILABLE_TOOLS,
        ),
        pins=pinned("ibm-granite/granite-3.3-2b-instruct", tools=False),
        export="granite-3.3.jinja",
    ),
    native_family(Granite40, ("granite4", "granite-4", "granite-4.0-instruct"), parser="granite-4.0",
                  kwargs=(DOCUMENTS, AVAILABLE_TOOLS), pins=pinned("ibm-granite/granite-4.0", tools=True),
                  export="granite-4.0.jinja"),
]
