"""SmolLM3: ChatML with a dated metadata system block, ``/think`` / ``/no_think`` reasoning modes and a tool list.

``smollm3`` renders exactly what the chat template of HuggingFaceTB/SmolLM3-3B (revision 3e0e27)
renders under transformers, with no Jinja at run time:

- the reasoning mode is ``/think`` unless ``enable_thinking`` is falsy; a first system message
  containing ``/no_think`` (else ``/think``) overrides it; the *custom instructions* are that
  message's text with both flags removed, right-stripped;
- the system turn is always written: ``<|im_start|>system\\n## Metadata\\n\\nKnowledge Cutoff Date: June 2025\\n``
  ``Today Date: {today, %d %B %Y}\\nReasoning Mode: {mode}\\n\\n## Custom Instructions\\n\\n`` + the custom
  instructions (or SmolLM's default for the mode) + ``\\n\\n``; with ``tools`` (or ``xml_tools``) and/or
  ``python_tools``, ``### Tools\\n\\n``, each list's instructions with one Python ``str(tool)`` line per tool,
  ``\\n\\n<|im_end|>\\n``. **Without tools the system turn has no** ``<|im_end|>``: the template closes it
  only in its tools branch, and chatfmt writes what the model was served;
- a system message containing ``/system_override`` replaces all of that with
  ``<|im_start|>system\\n{custom instructions without /system_override}<|im_end|>\\n`` (no tool list);
- user turns ``<|im_start|>user\\n{content}<|im_end|>\\n``; tool results are user turns too; system
  messages write nothing in the loop (the template would drop a later one; chatfmt refuses it);
- assistant turns ``<|im_start|>assistant\\n`` + (``/no_think``: ``<think>\\n\\n</think>\\n``) + the
  content with leading newlines removed + ``<|im_end|>\\n``;
- the generation prompt is ``<|im_start|>assistant\\n``, plus ``<think>\\n\\n</think>\\n`` in ``/no_think`` mode.

``reasoning_content`` is not rendered, as by the template: SmolLM3's think blocks are part of the
assistant content (``<think>\\n...\\n</think>\\n`` before the answer) in ``/think`` mode.

Today's date is the template's ``strftime_now("%d %B %Y")``: the text changes with the day it is
rendered, as the template's does.

Where chatfmt deliberately differs from the template:

- the template drops an assistant message's ``tool_calls``; chatfmt writes them after the content
  (a newline between) in the syntax the system prompt teaches, ``<tool_call>\\n{"name": ..., "arguments":
  ...}\\n</tool_call>`` one per line, so a tool-use conversation is not silently cut (the pin is
  ``tools=False``: a template render with tool calls keeps the template's output);
- ``enable_thinking=None`` counts as not given (``/think``); the template reads a given ``None`` as falsy;
- a list of text parts renders as its joined text (the template writes ``""`` for a non-string content).

Segments: message content and the custom instructions are ``content``; everything else ``control``.
An assistant message's think block, content, calls and ``<|im_end|>`` are trained with it; its header
and the newline after ``<|im_end|>`` are not. The system turn belongs to the system message when there
is one, else to no message.

Ids: SmolLM3 uses a Llama-3-based vocabulary with its own added tokens; no tokenizer file of it ships
in a registry package or the shared test data, so the text is pinned, not the ids.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...messages import Conversation, Message
from ...segments import SegmentBuilder
from ..base import NativeFormat
from ..family import Family, Pin, TemplateKwarg
from ._chatml import ASSISTANT_HEADER, IM_END, IM_START, chatml_info, header, hermes_call

THINK_DEFAULT = (
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face. Your role as an assistant involves "
    "thoroughly exploring questions through a systematic thinking process before providing the final precise and "
    "accurate solutions. This requires engaging in a comprehensive cycle of analysis, summarizing, exploration, "
    "reassessment, reflection, backtracking, and iteration to develop well-considered thinking process. Please "
    "structure your response into two main sections: Thought and Solution using the specified format: <think> "
    "Thought section </think> Solution section. In the Thought section, detail your reasoning process in steps. "
    "Each step should include detailed considerations such as analysing questions, summarizing relevant findings, "
    "brainstorming new ideas, verifying the accuracy of the current steps, refining any errors, and revisiting "
    "previous steps. In the Solution section, based on various attempts, explorations, and reflections from the "
    "Thought section, systematically present the final solution that you deem correct. The Solution section should "
    "be logical, accurate, and concise and detail necessary steps needed to reach the conclusion."
)
NO_THINK_DEFAULT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face."
XML_TOOLS_HEAD = (
    "You may call one or more functions to assist with the user query.\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n\n<tools>\n"
)
XML_TOOLS_TAIL = (
    "</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)
PYTHON_TOOLS_HEAD = (
    "When you send a message containing Python code between '<code>' and '</code>' tags, it will be executed in a "
    "stateful Jupyter notebook environment, and you will then be given the output to continued reasoning in an "
    "agentic loop.\n\nYou can use the following tools in your python code like regular functions:\n<tools>\n"
)
PYTHON_TOOLS_TAIL = (
    "</tools>\n\nThe state persists between code executions: so variables that you define in one step are still "
    "available thereafter."
)
EMPTY_THINK = "<think>\n\n</think>\n"


def today() -> str:
    """Today's date as the template writes it (``strftime_now("%d %B %Y")``)."""
    return datetime.now().strftime("%d %B %Y")


def _str(value: Any) -> str:
    """Jinja's ``string`` filter: a string as it is, anything else as Python's ``str``."""
    return value if isinstance(value, str) else str(value)


def tool_lines(head: str, tools: Any, tail: str) -> str:
    return head + "".join(_str(t) + "\n" for t in tools) + tail


class SmolLM3(NativeFormat):
    """SmolLM3-3B: ChatML, a metadata system block, ``/think`` and ``/no_think``, Hermes-style tools."""

    info = chatml_info(
        "smollm3",
        "smollm",
        "SmolLM3: ChatML with a dated '## Metadata' system block, /think and /no_think (enable_thinking), "
        "<tool_call> JSON tools",
        "the chat_template of HuggingFaceTB/SmolLM3-3B (revision 3e0e27), rendered by transformers",
        stop=(IM_END, "<|end_of_text|>"),
        supports_tools=True,
        supports_reasoning=True,
        special_tokens={
            "im_start": IM_START,
            "im_end": IM_END,
            "think_start": "<think>",
            "think_end": "</think>",
        },
    )

    def build(
        self,
        conv: Conversation,
        out: SegmentBuilder,
        *,
        add_generation_prompt: bool,
        enable_thinking: Any = None,
        xml_tools: Any = None,
        python_tools: Any = None,
        **kwargs: Any,
    ) -> None:
        msgs = conv.messages
        think = True if enable_thinking is None else bool(enable_thinking)
        has_system = bool(msgs) and msgs[0].role == "system"
        owner = 0 if has_system else None
        sys_trained = has_system and msgs[0].trained
        instructions = ""
        if has_system:
            text = msgs[0].text
            if "/no_think" in text:
                think = False
            elif "/think" in text:
                think = True
            instructions = text.replace("/no_think", "").replace("/think", "").rstrip()
        out.control(header("system"), owner)
        if has_system and "/system_override" in msgs[0].text:
            out.content(instructions.replace("/system_override", "").rstrip(), 0, sys_trained)
            out.turn(0, "", "", IM_END, sys_trained, "\n")
        else:
            mode = "/think" if think else "/no_think"
            out.control(
                "## Metadata\n\nKnowledge Cutoff Date: June 2025\nToday Date: "
                + today()
                + "\nReasoning Mode: "
                + mode
                + "\n\n## Custom Instructions\n\n",
                owner,
            )
            if instructions:
                out.content(instructions, 0, sys_trained)
            else:
                out.control(THINK_DEFAULT if think else NO_THINK_DEFAULT, owner)
            out.control("\n\n", owner)
            xml = conv.tools or xml_tools
            if xml or python_tools:
                block = "### Tools\n\n"
                if xml:
                    block += tool_lines(XML_TOOLS_HEAD, xml, XML_TOOLS_TAIL)
                if python_tools:
                    block += tool_lines(PYTHON_TOOLS_HEAD, python_tools, PYTHON_TOOLS_TAIL)
                out.control(block + "\n\n", owner)
                out.control(IM_END, owner, sys_trained)
                out.control("\n", owner)
        for i, m in enumerate(msgs):
            if m.role == "user" or m.role == "tool":
                out.turn(i, header("user"), m.text, IM_END, m.trained, "\n")
            elif m.role == "assistant":
                self._assistant(out, i, m, think)
        if add_generation_prompt:
            out.control(ASSISTANT_HEADER + ("" if think else EMPTY_THINK))

    def _assistant(self, out: SegmentBuilder, i: int, m: Message, think: bool) -> None:
        trained = m.trained
        out.control(ASSISTANT_HEADER, i)
        if not think:
            out.control(EMPTY_THINK, i, trained)
        content = m.text.lstrip("\n")
        out.content(content, i, trained)
        calls = [hermes_call(c) for c in m.tool_calls or ()]
        end = ("\n" if calls and content else "") + "\n".join(calls) + IM_END
        out.turn(i, "", "", end, trained, "\n")


FAMILIES = [
    Family(
        "smollm3",
        make=SmolLM3,
        aliases=("smollm3-3b", "smollm-3"),
        parser="qwen3",
        kwargs=(
            TemplateKwarg(
                "enable_thinking",
                "bool",
                True,
                "False: /no_think mode (empty think blocks); a system /think or /no_think wins",
            ),
            TemplateKwarg("xml_tools", "list | None", None, "a tool list written as tools= is (tools= wins)"),
            TemplateKwarg(
                "python_tools", "list | None", None, "functions the model may call in <code> blocks"
            ),
        ),
        pins=(Pin("HuggingFaceTB/SmolLM3-3B", "HuggingFaceTB--SmolLM3-3B.jinja", tools=False),),
        export="smollm3.jinja",
        reference=SmolLM3.info.reference,
        group="smollm",
    ),
]
