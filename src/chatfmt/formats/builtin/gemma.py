"""Gemma instruct (1, 2, 3): ``<start_of_turn>user|model\\n ... <end_of_turn>\\n``.

Each format renders exactly what its model's own Hugging Face ``chat_template`` renders under
transformers, with no Jinja at run time.

``gemma`` (Gemma 1 -it; alias ``gemma-2``: the gemma-2-2b-it template is byte-identical) is a
declarative format (:data:`GEMMA_SPEC`, rendered by :class:`~chatfmt.formats.spec.SpecFormat`, its
only source for rendering and export):
``<bos>``, then per message ``<start_of_turn>{user|model}\\n`` + the content ``.strip()``-ed +
``<end_of_turn>\\n``; the generation prompt is ``<start_of_turn>model\\n``. The template raises for a
system message ("System role not supported") and for roles that do not alternate user/assistant
starting with the user; so does this format (``ValidationError``, rules ``system`` and ``roles``).

``gemma-3`` (Gemma 3 -it): the same turns, and a system message is allowed: its text (as given, not
stripped; for a list of parts, the first part's text) + ``\\n\\n`` is put at the start of the first
user turn. A list of content parts renders each ``text`` part ``.strip()``-ed, back to back, and
``<start_of_image>`` for each ``image`` part (other parts are skipped).

Gemma has no tool syntax: ``gemma-3`` puts a tool list into the system message as JSON, ``gemma``
(no system role) rejects it (``ValidationError``, rule ``tools``); tool calls are rejected (``ValidationError``, rule
``tool_call``; the templates would silently drop them).

Segments: message content is ``content``, ``<start_of_image>`` and everything else ``control``. BOS
and the generation prompt belong to no message. In ``gemma-3`` the first user turn's header, the
system text and the ``\\n\\n`` after it belong to the system message (message 0). An assistant's content
and its ``<end_of_turn>`` are trained per :attr:`~chatfmt.messages.Message.trained`; its header and
the newline after ``<end_of_turn>`` are not.

Deliberate differences from the templates (none for well-formed input):

- leniencies where the template raises or renders garbage: a ``gemma-3`` system message with ``None``
  content is ``""`` (elsewhere ``None`` already renders as nothing), a list of text parts in ``gemma``
  is its text joined with newlines (the template would ``trim`` the Python ``repr`` of the list);
- ``gemma-3`` with a system message and nothing after it raises ``ValidationError`` (rule ``roles``);
  the template renders just ``<bos>`` and drops the system prompt.
"""

from __future__ import annotations

from typing import Any

from ...errors import ValidationError
from ...messages import Conversation, Message
from ...segments import SegmentBuilder
from ..base import NativeFormat
from ..spec import FormatSpec, Roles, RoleSpec, SpecFamily, SpecFormat, SystemSpec, ToolCallsSpec
from ._headers import GEMMA, header_info, native_family, pinned
from ._turns import check_alternating

BOS = "<bos>"
START = GEMMA.open
END = GEMMA.end
IMAGE = "<start_of_image>"
TOKENS = {"bos": BOS, "start_of_turn": START, "end_of_turn": END}
GENERATION_PROMPT = GEMMA.header("model")

#: Gemma / Gemma 2: no system role, alternating turns, stripped contents
GEMMA_SPEC = FormatSpec(
    name="gemma",
    description="Gemma / Gemma 2 -it: <start_of_turn>user|model\\n...<end_of_turn>\\n, no system role",
    bos=BOS,
    eos="<eos>",
    eos_placement="none",
    strip=True,
    alternating=True,
    end_of_turn=(END,),
    stop=(END, "<eos>"),
    roles=Roles(
        system=RoleSpec(),
        user=RoleSpec(GEMMA.header("user"), END + GEMMA.after),
        assistant=RoleSpec(GENERATION_PROMPT, END + GEMMA.after),
        tool=None,
    ),
    system=SystemSpec(
        placement="unsupported",
        error="{name} does not support a system message (the template raises: 'System role not supported')",
    ),
    tool_calls=ToolCallsSpec(mode="error", error="{name} has no tool-call syntax (its template would drop the calls)"),
)


def Gemma() -> SpecFormat:  # a function: the name tests and users import, not a class any more
    """A Gemma / Gemma 2 instruct format: :data:`GEMMA_SPEC` rendered, with the family's identity."""
    return GEMMA_FAMILY.create()


def _role(m: Message) -> str:
    return "model" if m.role == "assistant" else m.role


class Gemma3(NativeFormat):
    """Gemma 3 instruct: the system text opens the first user turn; content parts with images."""

    info = header_info(
        "gemma-3",
        "gemma",
        "Gemma 3 -it: <start_of_turn>user|model\\n...<end_of_turn>\\n, system text + blank line at the "
        "start of the first user turn, <start_of_image>",
        GEMMA,
        stop=("<eos>",),
        bos_token=BOS,
        eos_token="<eos>",
        reference=(
            "the chat_template of google/gemma-3 -it (its chat_template.json = ollama's template index entry "
            "22-gemma3-instruct.jinja), rendered by transformers"
        ),
        tokens={**TOKENS, "start_of_image": IMAGE},
    )

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        msgs = conv.messages
        start = check_alternating(conv, self.info.name)
        system = msgs[0] if start == 1 else None
        out.control(BOS)
        for i in range(start, len(msgs)):
            m = msgs[i]
            trained = m.trained
            if system is not None and i == start:
                out.control(GEMMA.header(_role(m)), 0)
                out.content(self._system_text(system), 0, system.trained)
                out.control("\n\n", 0, system.trained)
            else:
                out.control(GEMMA.header(_role(m)), i)
            c = m.content
            if isinstance(c, str):
                out.content(c.strip(), i, trained)
            elif isinstance(c, list):
                for part in c:
                    kind = part.get("type")
                    if kind == "image":
                        out.control(IMAGE, i)
                    elif kind == "text":
                        out.content(str(part.get("text", "")).strip(), i, trained)
            out.turn(i, "", "", END, trained, GEMMA.after)
        if add_generation_prompt:
            out.control(GENERATION_PROMPT)

    def _system_text(self, system: Message) -> str:
        c = system.content
        if c is None:
            return ""
        if isinstance(c, str):
            return c
        if not c or not isinstance(c[0].get("text"), str):
            raise ValidationError(
                f"{self.info.name}: a system message given as a list of parts must start with a text part "
                "(the template reads content[0]['text'])",
                index=0,
                rule="content",
            )
        return str(c[0]["text"])


GEMMA_FAMILY = SpecFamily(
    "gemma",
    spec=GEMMA_SPEC,
    aliases=("gemma-it", "gemma-1", "gemma-2", "gemma2", "gemma-2-it", "gemma-7b-it", "gemma-2b-it"),
    parser="plain",
    pins=pinned("google/gemma-2-2b-it", tools=False),
    reference=(
        "the chat_template of google/gemma-7b-it (its tokenizer_config.json) = google/gemma-2-2b-it (llama.cpp's "
        "models/templates/google-gemma-2-2b-it.jinja at c392e50), byte-identical, rendered by transformers"
    ),
    group="gemma",
    special_tokens=TOKENS,
)

FAMILIES = [
    GEMMA_FAMILY,
    native_family(Gemma3, ("gemma3", "gemma-3-it"), parser="plain", pins=pinned("google/gemma-3-it", tools=False),
                  export="gemma-3.jinja"),
]
