"""The output grammars of the model families, registered by name, and the choice of one for a format.

Facts per family (what the model emits; the built-in formats render the same when given the message):

- hermes / qwen2.5 / granite-4.0 / falcon3: ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``,
  several in a row; qwen3 / qwq add ``<think>...</think>`` (QwQ's and DeepSeek-R1's generation prompts
  end with ``<think>\\n``, so generation starts inside the reasoning block);
- llama-3.1/3.2/3.3: the whole message is ``{"name": ..., "parameters": {...}}`` when tools were given;
  ``<|python_tag|>`` starts a built-in call ``brave_search.call(query="...")``, JSON, or raw code;
  ends at ``<|eom_id|>`` / ``<|eot_id|>``; llama-4: ``<|python_start|>``/``<|python_end|>`` around
  JSON or Python-style calls ``[f(a=1)]``;
- mistral: ``[TOOL_CALLS]`` + a JSON list (v2/v3/v7/tekken) or v11's ``name[ARGS]{...}``;
- chatglm3: segments ``name\\n```python\\ntool_call(k=v)\\n```\\n`` / ``\\ncontent`` separated by
  ``<|assistant|>`` (its ``process_response``); glm-4: ``name\\n{json}``;
- functionary v3.1: ``<function=name>{json}</function>`` and ``<|python_tag|>code``; v3.2:
  ``>>>name\\n{json}`` / ``>>>all\\ncontent`` (the generation prompt ends with the first ``>>>``);
- granite-3.3: ``<|tool_call|>[{...}]``; command-r7b: ``<|START_THINKING|>plan<|END_THINKING|>
  <|START_ACTION|>[{"tool_call_id", "tool_name", "parameters"}]<|END_ACTION|>``, answers in
  ``<|START_RESPONSE|>...<|END_RESPONSE|>``;
- deepseek-r1: ``<｜tool▁call▁begin｜>function<｜tool▁sep｜>name\\n```json\\n{...}\\n```<｜tool▁call▁end｜>``;
  deepseek-v3.1: ``<｜tool▁call▁begin｜>name<｜tool▁sep｜>{...}<｜tool▁call▁end｜>``;
- minicpm5: ``<function name="f"><param name="k">v</param></function>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from ..plugins import Origin, Registry, import_modules
from . import bodies
from .parser import Block, Grammar, OutputParser, ParserError, Segments

THINK = {"think_start": "<think>", "think_end": "</think>"}
_THINK_KEYS = ("think_start", "think_end")


@dataclass(frozen=True)
class ParserSpec:
    """A registered output grammar: ``factory(tools)`` builds it (some families parse bare calls only
    when tools were given).

    A format names its parser in its declaration (:attr:`chatfmt.formats.family.Family.parser`, a
    TOML format's ``parser`` key); ``template_markers`` choose a parser for a Jinja template no family
    is pinned against (the parsers with markers are tried by ``priority``, lower first), and
    ``formats`` lets a plugin parser name the formats it serves when their own declaration does not."""

    name: str
    factory: Callable[[list[Any] | None], Grammar]
    description: str = ""
    #: format names this parser serves, for a plugin format whose own declaration names no parser (a
    #: format given as a plain callable); chatfmt's built-ins name theirs in their ``Family``
    formats: tuple[str, ...] = ()
    #: substrings of a Jinja template (or of a TOML format's tool-call syntax) that select this parser
    template_markers: tuple[str, ...] = ()
    #: the order in which parsers' ``template_markers`` are tried (lower first; most specific first)
    priority: int = 100


def _as_parser_spec(name: str, obj: object) -> tuple[ParserSpec, tuple[str, ...]]:
    """What a ``chatfmt.parsers`` entry point (or a built-in module's ``PARSERS``) holds, as a
    :class:`ParserSpec` named ``name``: a ``ParserSpec``, a ``Grammar`` or a ``factory(tools)``."""
    if isinstance(obj, ParserSpec):
        return (obj if obj.name == name else replace(obj, name=name)), ()
    if isinstance(obj, Grammar):
        grammar = obj
        return ParserSpec(name, lambda tools: grammar), ()
    if callable(obj):
        return ParserSpec(name, obj), ()
    raise ParserError(
        f"parser plugin {name!r}: expected a ParserSpec, a Grammar or a factory(tools) -> Grammar, "
        f"got {type(obj).__name__}"
    )


def _builtin_parsers(reg: Registry[ParserSpec]) -> None:
    for spec in _default_specs():
        reg.add(spec.name, spec)
    for mod in import_modules(BUILTIN_FORMATS):  # a built-in format module may declare its grammar
        for spec in getattr(mod, "PARSERS", ()):
            reg.add(spec.name, spec)


def _unknown_parser(name: str, known: list[str]) -> Exception:
    return ParserError(f"unknown output parser {name!r}; known: {', '.join(known)}")


BUILTIN_FORMATS = "chatfmt.formats.builtin"

#: every output parser: chatfmt's grammars (and ``PARSERS`` of the built-in format modules), then the
#: ``chatfmt.parsers`` entry points
OUTPUT_PARSERS: Registry[ParserSpec] = Registry(
    "parsers", builtins=_builtin_parsers, adapt=_as_parser_spec, unknown=_unknown_parser
)
_registry = OUTPUT_PARSERS  # the older private name (tests pop registrations from it)


def register_parser(
    name: str,
    factory: Callable[[list[Any] | None], Grammar] | Grammar,
    *,
    description: str = "",
    formats: tuple[str, ...] = (),
    template_markers: tuple[str, ...] = (),
    priority: int = 100,
) -> None:
    """Register an output grammar (or a ``factory(tools) -> Grammar``) under ``name`` in this process;
    later registrations win. To reach every process, declare a ``chatfmt.parsers`` entry point."""
    spec, _ = _as_parser_spec(name, factory)
    spec = replace(
        spec, description=description, formats=formats, template_markers=template_markers, priority=priority
    )
    OUTPUT_PARSERS.register(name, spec, origin=Origin("runtime"))


def list_parsers() -> list[str]:
    """Names of the registered output parsers, sorted."""
    return OUTPUT_PARSERS.names()


def parser_spec(name: str) -> ParserSpec:
    """The registered spec ``name``; raises :class:`ParserError` naming the known ones (or a
    :class:`~chatfmt.errors.PluginError` carrying the import failure of a plugin that declared it)."""
    return OUTPUT_PARSERS.get(name)


def get_parser(
    name: str,
    tokenizer: Any = None,
    *,
    prompt: str | None = None,
    tools: list[Any] | None = None,
    stop: tuple[str, ...] = (),
    **kwargs: Any,
) -> OutputParser:
    """A fresh :class:`OutputParser` for the registered grammar ``name`` (``stop``: extra texts that
    end the message; ``kwargs`` go to :class:`OutputParser`: ``id_factory``, ``seed``, ``warn``)."""
    grammar = parser_spec(name).factory(tools)
    if stop:
        grammar = grammar.with_markers(stop)
    return (grammar.parser_class or OutputParser)(grammar, tokenizer, prompt=prompt, **kwargs)


# -- the grammars ------------------------------------------------------------------------------------


def _plain(tools: Any) -> Grammar:
    return Grammar("plain")


def _think(tools: Any) -> Grammar:
    return Grammar("think", THINK, think=_THINK_KEYS)


_TOOL_CALL = {"tool_call_start": "<tool_call>", "tool_call_end": "</tool_call>"}
_HERMES_BLOCK = Block("tool_call_start", ("tool_call_end",), bodies.json_or_named_calls)
_IM_END = {"im_end": "<|im_end|>", "endoftext": "<|endoftext|>"}


def _hermes(tools: Any) -> Grammar:
    return Grammar("hermes", {**_TOOL_CALL, **_IM_END}, blocks=(_HERMES_BLOCK,), end=("im_end", "endoftext"))


def _qwen3(tools: Any) -> Grammar:
    return Grammar(
        "qwen3",
        {**_TOOL_CALL, **THINK, **_IM_END},
        think=_THINK_KEYS,
        blocks=(_HERMES_BLOCK,),
        end=("im_end", "endoftext"),
    )


def _qwq(tools: Any) -> Grammar:
    return Grammar(
        "qwq",
        {**_TOOL_CALL, **THINK, **_IM_END},
        think=_THINK_KEYS,
        reasoning_by_default=True,
        blocks=(_HERMES_BLOCK,),
        end=("im_end", "endoftext"),
    )


_LLAMA3 = {"eot": "<|eot_id|>", "eom": "<|eom_id|>", "eos": "<|end_of_text|>", "python_tag": "<|python_tag|>"}


def _llama3(tools: Any) -> Grammar:
    return Grammar(
        "llama3",
        _LLAMA3,
        blocks=(Block("python_tag", (), bodies.code_or_calls),),
        bare=bodies.json_or_pythonic_calls if tools else None,
        end=("eot", "eom", "eos"),
        # llama.cpp's and vLLM's Llama 3 parsers find the {"name": ...} object after prose too
        bare_after_prose=True,
    )


def _llama4(tools: Any) -> Grammar:
    markers = {
        "eot": "<|eot|>",
        "eom": "<|eom|>",
        "eos": "<|end_of_text|>",
        "python_start": "<|python_start|>",
        "python_end": "<|python_end|>",
    }
    return Grammar(
        "llama4",
        markers,
        bare=bodies.json_or_pythonic_calls if tools else None,
        end=("eot", "eom", "eos"),
        drop=("python_start", "python_end"),
    )


def _llama4_always(tools: Any) -> Grammar:
    # the built-in renders calls after <|python_end|> whatever the tools; parse them even without tools
    g = _llama4(tools or [True])
    return g


def _mistral(tools: Any) -> Grammar:
    return Grammar(
        "mistral",
        {"tool_calls": "[TOOL_CALLS]", "eos": "</s>"},
        blocks=(Block("tool_calls", (), bodies.mistral_calls),),
        end=("eos",),
    )


def _chatglm3(tools: Any) -> Grammar:
    markers = {
        "assistant": "<|assistant|>",
        "user": "<|user|>",
        "observation": "<|observation|>",
        "eos": "</s>",
    }
    return Grammar(
        "chatglm3",
        markers,
        segments=Segments("assistant", frozenset({""}), bodies.chatglm3_call),
        end=("user", "observation", "eos"),
    )


def _glm4(tools: Any) -> Grammar:
    markers = {
        "assistant": "<|assistant|>",
        "user": "<|user|>",
        "observation": "<|observation|>",
        "eos": "<|endoftext|>",
    }
    return Grammar(
        "glm4",
        markers,
        segments=Segments("assistant", frozenset({""}), bodies.args_call),
        end=("user", "observation", "eos"),
    )


def _functionary_v31(tools: Any) -> Grammar:
    markers = {**_LLAMA3, "function": "<function=", "function_end": "</function>"}
    return Grammar(
        "functionary-v3.1",
        markers,
        blocks=(
            Block("function", ("function_end",), bodies.function_tag_call),
            Block("python_tag", (), partial(bodies.code_or_calls, code_tool="python")),
        ),
        end=("eot", "eom", "eos"),
    )


def _functionary_v32(tools: Any) -> Grammar:
    markers = {"sep": ">>>", "eot": "<|eot_id|>", "eos": "<|end_of_text|>"}
    return Grammar(
        "functionary-v3.2",
        markers,
        segments=Segments("sep", frozenset({"all"}), bodies.args_call),
        end=("eot", "eos"),
    )


def _granite33(tools: Any) -> Grammar:
    markers = {"tool_call": "<|tool_call|>", "eos": "<|end_of_text|>"}
    return Grammar("granite-3.3", markers, blocks=(Block("tool_call", (), bodies.json_calls),), end=("eos",))


def _granite40(tools: Any) -> Grammar:
    markers = {**_TOOL_CALL, "tool_call": "<|tool_call|>", "eos": "<|end_of_text|>"}
    return Grammar(
        "granite-4.0",
        markers,
        blocks=(_HERMES_BLOCK, Block("tool_call", (), bodies.json_calls)),
        end=("eos",),
    )


def _command_r7b(tools: Any) -> Grammar:
    markers = {
        "think_start": "<|START_THINKING|>",
        "think_end": "<|END_THINKING|>",
        "action_start": "<|START_ACTION|>",
        "action_end": "<|END_ACTION|>",
        "response_start": "<|START_RESPONSE|>",
        "response_end": "<|END_RESPONSE|>",
        "eot": "<|END_OF_TURN_TOKEN|>",
    }
    return Grammar(
        "command-r7b",
        markers,
        think=_THINK_KEYS,
        blocks=(Block("action_start", ("action_end",), bodies.json_calls),),
        end=("eot",),
        drop=("response_start", "response_end"),
    )


_DS = {
    "calls_begin": "<｜tool▁calls▁begin｜>",
    "calls_end": "<｜tool▁calls▁end｜>",
    "call_begin": "<｜tool▁call▁begin｜>",
    "call_end": "<｜tool▁call▁end｜>",
    "eos": "<｜end▁of▁sentence｜>",
    **THINK,
}
_DS_SEP = "<｜tool▁sep｜>"


def _deepseek_r1(tools: Any) -> Grammar:
    return Grammar(
        "deepseek-r1",
        _DS,
        think=_THINK_KEYS,
        reasoning_by_default=True,
        blocks=(Block("call_begin", ("call_end",), partial(bodies.deepseek_r1_call, sep=_DS_SEP)),),
        end=("eos",),
        drop=("calls_begin", "calls_end"),
    )


def _deepseek_v3(tools: Any) -> Grammar:
    # DeepSeek-V3: R1's call syntax (``function<｜tool▁sep｜>name`` + a json code block), no reasoning;
    # its template writes ``<｜Assistant｜>`` again after the calls, before any text that follows them
    markers = {k: v for k, v in _DS.items() if k not in THINK}
    markers["assistant"] = "<｜Assistant｜>"
    return Grammar(
        "deepseek-v3",
        markers,
        blocks=(Block("call_begin", ("call_end",), partial(bodies.deepseek_r1_call, sep=_DS_SEP)),),
        end=("eos",),
        drop=("calls_begin", "calls_end", "assistant"),
    )


def _deepseek_v31(tools: Any) -> Grammar:
    return Grammar(
        "deepseek-v3.1",
        _DS,
        think=_THINK_KEYS,
        blocks=(Block("call_begin", ("call_end",), partial(bodies.deepseek_v31_call, sep=_DS_SEP)),),
        end=("eos",),
        drop=("calls_begin", "calls_end"),
    )


def _minicpm5(tools: Any) -> Grammar:
    markers = {"function": "<function name=", "function_end": "</function>", **THINK, **_IM_END}
    return Grammar(
        "minicpm5",
        markers,
        think=_THINK_KEYS,
        blocks=(Block("function", ("function_end",), bodies.xml_function_call),),
        end=("im_end", "endoftext"),
    )


def _tool_calls_list(tools: Any) -> Grammar:
    # Apriel / Jamba: <tool_calls>[{json}, ...]</tool_calls>; Hunyuan: <tool_calls><tool_call>name
    # ```json {...}```</tool_call>...</tool_calls>
    markers = {"calls_start": "<tool_calls>", "calls_end": "</tool_calls>", **THINK}
    return Grammar(
        "tool-calls-list",
        markers,
        think=_THINK_KEYS,
        blocks=(Block("calls_start", ("calls_end",), bodies.tool_calls_list),),
    )


def _tagged(
    name: str, start: str, end: str, body: Callable[[str], list[bodies.Call]]
) -> Callable[[Any], Grammar]:
    """A grammar whose calls sit between two tags (``end`` "": the block runs to the end of the message),
    with an optional ``<think>`` block before them."""

    def factory(tools: Any) -> Grammar:
        markers = {"calls_start": start, **THINK}
        if end:
            markers["calls_end"] = end
        block = Block("calls_start", ("calls_end",) if end else (), body)
        return Grammar(name, markers, think=_THINK_KEYS, blocks=(block,))

    return factory


def _bare_json(tools: Any) -> Grammar:
    # a template that renders tool calls with no marker of its own: the calls are a bare JSON object
    # or list at the start of the message (xLAM, fine-tunes of Llama 3 that dropped its tags)
    # (only when the request has tools, as for Llama 3: an answer that is a JSON object is not a call)
    return Grammar("json", THINK, think=_THINK_KEYS, bare=bodies.json_or_pythonic_calls if tools else None)


def _solar(tools: Any) -> Grammar:
    markers = {
        "call_begin": "<|tool_call:begin|>",
        "call_end": "<|tool_call:end|>",
        "calls": "<|tool_calls|>",
        "calls_end": "<|calls|>",
        **THINK,
    }
    return Grammar(
        "solar",
        markers,
        think=_THINK_KEYS,
        blocks=(Block("call_begin", ("call_end",), bodies.solar_call),),
        drop=("calls", "calls_end"),
    )


def _command_r(tools: Any) -> Grammar:
    # Command R / R+ tool use: "Action: ```json [{"tool_name": ..., "parameters": {...}}] ```"
    markers = {"action": "Action:", "eot": "<|END_OF_TURN_TOKEN|>", "sot": "<|START_OF_TURN_TOKEN|>"}
    return Grammar("command-r", markers, blocks=(Block("action", (), bodies.json_calls),), end=("eot", "sot"))


def _default_specs() -> list[ParserSpec]:
    # which formats use which parser is said by the formats (``Family.parser``); the markers choose one
    # for a Jinja template no family is pinned against, most specific (lowest priority) first
    S = ParserSpec
    return [
        S("plain", _plain, "content only"),
        S(
            "think",
            _think,
            "<think>...</think> reasoning, no tool calls",
            template_markers=("<think>",),
            priority=140,
        ),
        S(
            "hermes",
            _hermes,
            "<tool_call>{json}</tool_call>",
            template_markers=("<tool_call>",),
            priority=120,
        ),
        S("qwen3", _qwen3, "<think> + <tool_call>"),
        S("qwq", _qwq, "reasoning from the prompt's <think>\\n + <tool_call>"),
        S(
            "llama3",
            _llama3,
            "bare JSON calls (with tools), <|python_tag|>",
            template_markers=("<|python_tag|>", "<|eom_id|>", '"parameters": dictionary of argument name'),
            priority=90,
        ),
        S(
            "llama4",
            _llama4_always,
            "<|python_start|> JSON / pythonic calls",
            template_markers=("<|python_start|>",),
            priority=80,
        ),
        S(
            "mistral",
            _mistral,
            "[TOOL_CALLS][{...}] or name[ARGS]{...}",
            template_markers=("[TOOL_CALLS]",),
            priority=70,
        ),
        S(
            "chatglm3",
            _chatglm3,
            "name\\n```python\\ntool_call(...)```",
            template_markers=("tool_call(",),
            priority=110,
        ),
        S("glm4", _glm4, "name\\n{json}", template_markers=("<|observation|>",), priority=130),
        S(
            "functionary-v3.1",
            _functionary_v31,
            "<function=name>{json}</function>",
            template_markers=("<function=",),
            priority=40,
        ),
        S("functionary-v3.2", _functionary_v32, ">>>name\\n{json}", template_markers=(">>>",), priority=50),
        S(
            "granite-3.3",
            _granite33,
            "<|tool_call|>[{...}]",
            template_markers=("<|tool_call|>",),
            priority=95,
        ),
        S("granite-4.0", _granite40, "<tool_call> blocks"),
        S(
            "command-r7b",
            _command_r7b,
            "<|START_ACTION|>[...]<|END_ACTION|>",
            template_markers=("<|START_ACTION|>",),
            priority=30,
        ),
        S(
            "deepseek-r1",
            _deepseek_r1,
            "<think> + <｜tool▁call▁begin｜>function<｜tool▁sep｜>...",
            template_markers=("<｜tool▁call▁begin｜>function",),
            priority=10,
        ),
        S(
            "deepseek-v3",
            _deepseek_v3,
            "<｜tool▁call▁begin｜>function<｜tool▁sep｜>name + json block, no reasoning",
        ),
        S(
            "deepseek-v3.1",
            _deepseek_v31,
            "<think> + <｜tool▁call▁begin｜>name<｜tool▁sep｜>{...}",
            template_markers=("<｜tool▁calls▁begin｜>",),
            priority=20,
        ),
        # syntaxes of Hub models no built-in family covers, chosen for their templates by markers
        S(
            "tool-calls-list",
            _tool_calls_list,
            "<tool_calls>[{json}]</tool_calls> or <tool_calls><tool_call>...",
            template_markers=("<tool_calls>",),
            priority=115,
        ),
        S(
            "olmo3",
            _tagged("olmo3", "<function_calls>", "</function_calls>", bodies.json_or_pythonic_list),
            "<function_calls>f(a=1)\\ng(b=2)</function_calls>",
            template_markers=("<function_calls>",),
            priority=65,
        ),
        S(
            "lfm2",
            _tagged("lfm2", "<|tool_call_start|>", "<|tool_call_end|>", bodies.json_or_pythonic_list),
            "<|tool_call_start|>[f(a=1)]<|tool_call_end|>",
            template_markers=("<|tool_call_start|>",),
            priority=66,
        ),
        S(
            "nemotron",
            _tagged("nemotron", "<TOOLCALL>", "</TOOLCALL>", bodies.json_calls),
            "<TOOLCALL>[{json}]</TOOLCALL>",
            template_markers=("<TOOLCALL>",),
            priority=67,
        ),
        S(
            "gigachat",
            _tagged("gigachat", "<|function_call|>", "", bodies.json_calls),
            "<|function_call|>{json}",
            template_markers=("<|function_call|>",),
            priority=68,
        ),
        S(
            "step-audio",
            _tagged("step-audio", "<|CALL_START|>", "<|CALL_END|>", bodies.named_json_call),
            "<|CALL_START|>function\\nname\\n{json}<|CALL_END|>",
            template_markers=("<|CALL_START|>",),
            priority=69,
        ),
        S(
            "internlm",
            _tagged("internlm", "<|action_start|><|plugin|>", "<|action_end|>", bodies.json_calls),
            "<|action_start|><|plugin|>{json}<|action_end|>",
            template_markers=("<|action_start|><|plugin|>",),
            priority=71,
        ),
        S(
            "longcat",
            _tagged("longcat", "<longcat_tool_call>", "</longcat_tool_call>", bodies.json_calls),
            "<longcat_tool_call>{json}</longcat_tool_call>",
            template_markers=("<longcat_tool_call>",),
            priority=72,
        ),
        S(
            "command-r",
            _command_r,
            "Action: ```json [{tool_name, parameters}]```",
            template_markers=("Action:\\n```json",),
            priority=73,
        ),
        S(
            "apertus",
            _tagged("apertus", "<|tools_prefix|>", "<|tools_suffix|>", bodies.name_keyed_calls),
            '<|tools_prefix|>[{"name": {args}}]<|tools_suffix|>',
            template_markers=("<|tools_prefix|>",),
            priority=74,
        ),
        S(
            "solar",
            _solar,
            "<|tool_call:begin|>id<|tool_call:name|>name<|tool_call:args|>{json}<|tool_call:end|>",
            template_markers=("<|tool_call:name|>",),
            priority=75,
        ),
        S(
            "hyperclovax",
            _tagged("hyperclovax", "-> tool/function_call", "", bodies.json_calls),
            "-> tool/function_call\\n[{json}]",
            template_markers=("-> tool/function_call",),
            priority=76,
        ),
        S(
            "gigachat3",
            _tagged("gigachat3", "function call<|role_sep|>", "", bodies.json_calls),
            "function call<|role_sep|>{json}",
            template_markers=("'function call'",),
            priority=77,
        ),
        S(
            "json",
            _bare_json,
            "a bare JSON call or list of calls (templates with no call markers)",
            template_markers=("tool_calls",),
            priority=150,
        ),
        S(
            "minicpm5",
            _minicpm5,
            '<function name="f"><param ...>',
            template_markers=("<function name=",),
            priority=60,
        ),
    ]


# -- choosing a parser for a format ------------------------------------------------------------------


def parser_name_for_format(fmt: Any) -> str:
    """The registered parser name for a chatfmt format, from what its declaration says:

    1. the format's family (:func:`chatfmt.formats.registry.family_of`: a built-in or plugin format
       by name, a Jinja template by the official template a family is pinned against) names it;
    2. a declarative (TOML) format's ``parser`` key names it;
    3. a registered parser says it serves the format (``ParserSpec.formats``);
    4. a Jinja template by what it contains, matched against the parsers' ``template_markers``
       (``<tool_call>`` -> hermes, with ``<think>`` qwen3, ``[TOOL_CALLS]`` -> mistral,
       ``<|python_tag|>`` -> llama3, ...; none: ``plain``); a TOML format no family declares by its
       ``[tool_calls]`` syntax, the same way;
    5. ``think`` for a format that supports reasoning, else ``plain``."""
    from ..formats import registry

    fam = registry.family_of(fmt)
    if fam is not None and fam.parser:
        return fam.parser
    spec = _declared_spec(fmt)
    if spec is not None and spec.parser:
        return str(spec.parser)
    info = getattr(fmt, "info", None)
    served = _served_by(getattr(info, "name", "") or "") or (
        _served_by(fam.name) if fam is not None else None
    )
    if served is not None:
        return served
    template = getattr(fmt, "template", None)
    if isinstance(template, str):
        tool_use = getattr(getattr(fmt, "_tool_use", None), "template", "") or ""
        return _by_markers(template + tool_use) or "plain"
    if fam is None and spec is not None and spec.tool_calls is not None:
        calls = spec.tool_calls
        found = _by_markers(calls.prefix + calls.template + calls.suffix)
        if found is not None:
            return found
    if getattr(info, "supports_reasoning", False):
        return "think"
    return "plain"


def _served_by(name: str) -> str | None:
    """The parser that names format ``name`` among the formats it serves, if any."""
    if not name:
        return None
    for spec in OUTPUT_PARSERS.values():
        if name in spec.formats:
            return spec.name
    return None


def _by_markers(text: str) -> str | None:
    """The parser whose template markers ``text`` contains, most specific (lowest priority) first;
    a hermes ``<tool_call>`` text that also opens ``<think>`` blocks is qwen3's."""
    if not text:
        return None
    with_markers = sorted(
        (s for s in OUTPUT_PARSERS.values() if s.template_markers), key=lambda s: s.priority
    )
    for spec in with_markers:
        if any(m in text for m in spec.template_markers):
            if spec.name == "hermes" and "<think>" in text:
                return "qwen3"
            return spec.name
    return None


def _declared_spec(fmt: Any) -> Any:
    """The :class:`~chatfmt.formats.spec.FormatSpec` a declarative (TOML) format renders from, if any."""
    from ..formats.spec import FormatSpec

    spec = getattr(fmt, "spec", None)
    return spec if isinstance(spec, FormatSpec) else None


def parser_for_format(
    fmt: Any,
    tokenizer: Any = None,
    *,
    prompt: str | None = None,
    tools: list[Any] | None = None,
    **kwargs: Any,
) -> OutputParser:
    """An output parser for what a model using ``fmt`` generates.

    ``tokenizer`` (a chatfmt Tokenizer) makes single-token markers count only when fed as that token;
    ``prompt`` (the rendered prompt) decides whether generation starts inside a reasoning block;
    ``tools`` enables families that emit bare calls (Llama-3.x). The format's stop strings also end
    the message. ``kwargs`` go to :class:`OutputParser` (``id_factory``, ``seed``, ``warn``).
    """
    if fmt is None:
        raise ParserError("parser_for_format needs a format")
    info = getattr(fmt, "info", None)
    stop = tuple(
        dict.fromkeys([*(getattr(info, "stop", ()) or ()), *(getattr(info, "end_of_turn", ()) or ())])
    )
    return get_parser(parser_name_for_format(fmt), tokenizer, prompt=prompt, tools=tools, stop=stop, **kwargs)
