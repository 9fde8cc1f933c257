"""Llama 3 Instruct (3, 3.1, 3.2, 3.3): ``<|start_header_id|>role<|end_header_id|>\\n\\n ... <|eot_id|>``.

Each format renders exactly what its model's own Hugging Face ``chat_template`` renders under
transformers, with no Jinja at run time.

``llama-3`` (Meta-Llama-3-8B/70B-Instruct; ollama's ``23-llama3-instruct.jinja``): ``<|begin_of_text|>``,
then per message ``<|start_header_id|>{role}<|end_header_id|>\\n\\n`` + the content ``.strip()``-ed +
``<|eot_id|>``; the generation prompt is the assistant header. No tool syntax: a tool list goes into the
system message as JSON, tool calls are rejected (``ValidationError``, rule ``tool_call``; the template
would silently drop them). The first release of that template (the ``tokenizer_config.json`` of
Meta-Llama-3-8B-Instruct at release) always appended the generation prompt; Meta fixed it to honour
``add_generation_prompt``, which is what this format follows. It is a declarative format
(:data:`LLAMA3_SPEC`, rendered by :class:`~chatfmt.formats.spec.SpecFormat`): the spec is its only
source, for rendering and for the TOML and Jinja export.

``llama-3.1`` (Llama-3.1-8B-Instruct; llama.cpp ``meta-llama-Llama-3.1-8B-Instruct.jinja``; the
Llama-3.3-70B-Instruct template is byte-identical, so ``llama-3.3`` is an alias) and ``llama-3.2``
(Llama-3.2-3B-Instruct):

- a system turn is always written: ``Environment: ipython\\n`` when there are tools (3.1: or
  ``builtin_tools``), 3.1 only: ``Tools: <builtin tools except code_interpreter>\\n\\n``, then
  ``Cutting Knowledge Date: December 2023\\nToday Date: {date_string}\\n\\n`` and the system message
  ``.strip()``-ed. ``date_string`` (a keyword argument, as for the template) defaults to
  ``"26 Jul 2024"`` (3.1) or today's date as ``strftime("%d %b %Y")`` (3.2, the template's
  ``strftime_now``);
- tools (``tools=`` or the template's ``custom_tools=`` keyword) go into the first user message by
  default: the instructions, then each tool as ``json.dumps(tool, indent=4, ensure_ascii=False)`` +
  ``\\n\\n``, then the user's ``.strip()``-ed text; with ``tools_in_user_message=False`` they go into
  the system turn instead (before the system message);
- an assistant message with a tool call renders ``{"name": "<name>", "parameters": <arguments JSON>}``
  + ``<|eot_id|>`` and **not its content** (the template drops it); only one call per message (the
  template raises "This model only supports single tool-calls at once!"; chatfmt raises
  ``ValidationError``, rule ``tool_call``). 3.1 with ``builtin_tools=[...]``: a call of a built-in tool
  renders ``<|python_tag|>name.call(key="value", ...)`` (values must be strings, as the template's
  string concatenation requires), and every tool-call turn ends with ``<|eom_id|>``;
- a tool result renders under the ``ipython`` header as its ``tojson``: a string content becomes a
  JSON string (quotes and escapes included, e.g. ``"sunny"``), a list of parts the JSON of the list.

Segments: message content is ``content``; everything else ``control``. For a tool result the quotes
of the JSON string are control and the escaped text is content (equal to the message content when
nothing needed escaping); a list content is one JSON content segment. The system turn belongs to
message 0 when there is a system message, else to no message (``None``), like BOS and the generation
prompt; the tool instructions in the first user turn belong to that user message. An assistant's
content (or tool-call text) and its ``<|eot_id|>``/``<|eom_id|>`` are trained per
:attr:`~chatfmt.messages.Message.trained`; its header is not.

Deliberate differences from the templates (none for well-formed input):

- leniencies where the template raises or renders garbage: ``None`` content is ``""`` (a tool
  result with ``None`` content renders ``""``), a list of text parts outside tool results is its text
  joined with newlines (the template would render the Python ``repr`` of the list), ``date_string=None``
  and ``builtin_tools=None`` mean "not given", an empty tool list is no tools (the template would
  write the tool instructions with no tools in them);
- with tools in the first user message, the first message after the system message must be a user
  message (``ValidationError``, rule ``roles``): the template would put whatever message comes first
  under the user header, dropping an assistant's tool calls;
- an assistant message with an empty ``tool_calls`` list is an ordinary message (the template raises).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...errors import ValidationError
from ...messages import Message, ToolCall
from ...segments import SegmentBuilder
from ..family import TemplateKwarg
from ..spec import FormatSpec, Roles, RoleSpec, SpecFamily, SpecFormat, ToolCallsSpec
from ._headers import (
    BEGIN_OF_TEXT,
    CUSTOM_TOOLS,
    LLAMA3,
    TOOL_KWARGS,
    TOOLS_IN_USER_MESSAGE,
    LlamaToolsFormat,
    json_call,
    llama_tools_info,
    native_family,
    pinned,
    system_tools_text,
)

BOS = BEGIN_OF_TEXT
EOT = LLAMA3.end
EOM = "<|eom_id|>"
PYTHON_TAG = "<|python_tag|>"
DEFAULT_DATE = "26 Jul 2024"
KNOWLEDGE_CUTOFF = "Cutting Knowledge Date: December 2023\n"
TOKENS = {"bos": BOS, "start_header": LLAMA3.open, "end_header": LLAMA3.close.strip(), "eot": EOT}

#: Llama 3 (3.0): header, stripped content, ``<|eot_id|>``; no tool syntax
LLAMA3_SPEC = FormatSpec(
    name="llama-3",
    description="Meta-Llama-3-Instruct: <|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>",
    bos=BOS,
    eos=EOT,
    eos_placement="none",
    strip=True,
    end_of_turn=(EOT,),
    stop=(EOT, "<|end_of_text|>"),
    roles=Roles(*(RoleSpec(LLAMA3.header(r), EOT) for r in ("system", "user", "assistant", "tool"))),
    tool_calls=ToolCallsSpec(mode="error", error="{name} has no tool-call syntax (its template would drop the tool calls)"),
)
LLAMA3_REFERENCE = (
    "the chat_template of meta-llama/Meta-Llama-3-8B-Instruct (fixed add_generation_prompt revision; "
    "= ollama's template index entry 23-llama3-instruct.jinja), rendered by transformers"
)


def Llama3() -> SpecFormat:  # a function: the name tests and users import, not a class any more
    """A Meta-Llama-3-Instruct format: :data:`LLAMA3_SPEC` rendered, with the family's identity."""
    return LLAMA3_FAMILY.create()


DATE_STRING = TemplateKwarg(
    "date_string", "str | None", DEFAULT_DATE, "the 'Today Date' of the system turn (3.2: today by default)"
)
BUILTIN_TOOLS = TemplateKwarg(
    "builtin_tools",
    "list[str] | None",
    None,
    "built-in tools (brave_search, wolfram_alpha, code_interpreter): <|python_tag|> calls, <|eom_id|> ends",
)
KWARGS = (*TOOL_KWARGS, BUILTIN_TOOLS, DATE_STRING)


class Llama31(LlamaToolsFormat):
    """Llama-3.1-Instruct (and 3.3): date lines, JSON tool calls, ``ipython`` tool results, built-in tools."""

    headers = LLAMA3
    extra_template_kwargs = tuple(k.name for k in KWARGS)

    info = llama_tools_info(
        "llama-3.1",
        "Llama-3.1/3.3-Instruct: Llama 3 headers, 'Cutting Knowledge Date' system turn, tools in the "
        "first user message, JSON tool calls, <|python_tag|> built-in tools, ipython tool results",
        LLAMA3,
        eom=EOM,
        end_of_turn=(EOT, EOM),
        reference=(
            "the chat_template of meta-llama/Llama-3.1-8B-Instruct (= llama.cpp's models/templates/"
            "meta-llama-Llama-3.1-8B-Instruct.jinja at c392e50, byte-identical to its "
            "meta-llama-Llama-3.3-70B-Instruct.jinja and ollama's 24-llama3-instruct.jinja), rendered by transformers"
        ),
        tokens={**TOKENS, "eom": EOM, "python_tag": PYTHON_TAG},
    )

    #: whether ``builtin_tools=[...]`` is understood (3.1/3.3; the 3.2 template ignores it)
    builtin_tools_supported = True

    def default_date(self) -> str:
        return DEFAULT_DATE

    def _builtin(self, kwargs: dict[str, Any]) -> list[Any] | None:
        builtin = kwargs.get("builtin_tools") if self.builtin_tools_supported else None
        return None if builtin is None else list(builtin)

    def system_turn(
        self, out: SegmentBuilder, msgs: list[Message], tools: list[Any] | None, in_user: bool, kwargs: dict[str, Any]
    ) -> int:
        builtin = self._builtin(kwargs)
        date = kwargs.get("date_string")
        date = self.default_date() if date is None else str(date)
        system = msgs[0] if msgs and msgs[0].role == "system" else None
        head = LLAMA3.header("system")
        if builtin is not None or tools is not None:
            head += "Environment: ipython\n"
        if builtin is not None:
            head += "Tools: " + ", ".join(str(t) for t in builtin if t != "code_interpreter") + "\n\n"
        head += KNOWLEDGE_CUTOFF + "Today Date: " + date + "\n\n"
        if tools is not None and not in_user:
            head += system_tools_text(tools)
        if system is None:
            out.control(head + EOT)
            return 0
        out.turn(0, head, system.text.strip(), EOT, system.trained)
        return 1

    def content(self, out: SegmentBuilder, m: Message, i: int, *, first: bool) -> None:
        out.content(m.text.strip(), i, m.trained)

    def calls(self, out: SegmentBuilder, m: Message, i: int, kwargs: dict[str, Any]) -> None:
        calls = m.tool_calls or []
        if len(calls) != 1:
            raise ValidationError(
                f"{self.info.name} supports one tool call per assistant message, got "
                f"{len(calls)} (the template raises: \"This model only supports single "
                'tool-calls at once!")',
                index=i,
                rule="tool_call",
            )
        call = calls[0]
        builtin = self._builtin(kwargs)
        text = self._builtin_call(call, i) if builtin is not None and call.name in builtin else json_call(call)
        out.control(text + (EOM if builtin is not None else EOT), i, m.trained)

    def _builtin_call(self, call: ToolCall, index: int) -> str:
        args = call.arguments if isinstance(call.arguments, dict) else {}
        parts = []
        for key, value in args.items():
            if not isinstance(value, str):
                raise ValidationError(
                    f"{self.info.name}: the built-in tool call {call.name!r} needs string argument values "
                    f"(the template concatenates them), got {type(value).__name__} for {key!r}",
                    index=index,
                    rule="tool_call",
                )
            parts.append(f'{key}="{value}"')
        return PYTHON_TAG + call.name + ".call(" + ", ".join(parts) + ")"

    def jinja_variables(self) -> dict[str, object]:
        """The export's variables: ``builtin_tools_supported`` and ``default_date`` (none: today)."""
        date = None if type(self).default_date is not Llama31.default_date else DEFAULT_DATE
        return {"builtin_tools_supported": self.builtin_tools_supported, "default_date": date}


class Llama32(Llama31):
    """Llama-3.2-Instruct: the 3.1 format without built-in tools; the date defaults to today."""

    info = llama_tools_info(
        "llama-3.2",
        "Llama-3.2-Instruct: Llama 3.1's format with today's date, no built-in tools "
        "(tools in the first user message, JSON tool calls, ipython tool results)",
        LLAMA3,
        eom=EOM,
        reference=(
            "the chat_template of meta-llama/Llama-3.2-3B-Instruct (= llama.cpp's models/templates/"
            "meta-llama-Llama-3.2-3B-Instruct.jinja at c392e50), rendered by transformers"
        ),
        tokens=TOKENS,
    )

    builtin_tools_supported = False

    def default_date(self) -> str:
        """Today, as the template's ``strftime_now("%d %b %Y")`` gives it."""
        return datetime.now().strftime("%d %b %Y")


LLAMA3_FAMILY = SpecFamily(
    "llama-3",
    spec=LLAMA3_SPEC,
    aliases=("llama3", "llama-3-instruct", "llama3-instruct", "meta-llama-3-instruct"),
    parser="llama3",
    pins=pinned("meta-llama/Meta-Llama-3-8B-Instruct", tools=False),
    reference=LLAMA3_REFERENCE,
    group="llama",
    special_tokens=TOKENS,
)

FAMILIES = [
    LLAMA3_FAMILY,
    native_family(Llama31, ("llama3.1", "llama-3.1-instruct", "llama-3.3", "llama3.3", "llama-3.3-instruct"),
                  parser="llama3", kwargs=KWARGS, pins=pinned("meta-llama/Llama-3.1-8B-Instruct", tools=True),
                  export="llama-3.1.jinja"),
    native_family(
        Llama32,
        ("llama3.2", "llama-3.2-instruct"),
        parser="llama3",
        kwargs=(
            CUSTOM_TOOLS,
            TemplateKwarg("builtin_tools", "list[str] | None", None, "accepted and ignored, as the 3.2 template does"),
            TOOLS_IN_USER_MESSAGE,
            TemplateKwarg("date_string", "str | None", None, "the 'Today Date' of the system turn (default: today)"),
        ),
        pins=pinned("meta-llama/Llama-3.2-3B-Instruct", tools=True),
        export="llama-3.1.jinja",
    ),
]
