"""Jinja chat templates (Hugging Face ``chat_template``), rendered exactly as transformers renders
them, with segments recovered from the output.

Rendering follows ``tokenizer.apply_chat_template(..., tokenize=False)`` of transformers 5: keys
whose value is ``None`` are dropped from messages, inputs are rebuilt from plain JSON types, the
reasoning fields are aliased (``reasoning_content`` / ``thinking`` / ``reasoning``), special tokens
(``bos_token``, ``eos_token``, ...) are template variables that keyword arguments override, and
``continue_final_message`` cuts the output right after the final message's content.

Segments: every message's content (and reasoning) is wrapped in private-use marker characters
before a second render; where removing the markers gives exactly the plain render, the marker
positions are the content spans. A message whose markers do not survive (the template slices or
inspects its content) is retried alone, and otherwise located by an ordered search after the
previous message. Everything else is control text, attributed to the message it introduces or
ends, and the end of an assistant turn (up to its end-of-turn token) is trained with it.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from ..errors import ChatfmtWarning, TemplateError
from ..messages import Conversation
from ..segments import CONTENT, CONTROL, Rendered, Segment, SegmentKind
from ..untrusted import DataSource
from .base import (
    DOCUMENTS,
    TOOLS,
    ChatFormat,
    CheckedRender,
    FormatInfo,
    NativeFormat,
    given,
    merge_template_kwargs,
    not_rendered_quiet,
    warn_not_rendered,
)
from .sandbox import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_TIMEOUT,
    compile_template,
    render_template,
    template_variables,
)

_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")

#: what a render is called with besides the messages: ``(tools, documents, add_generation_prompt,
#: template keyword arguments)``
_CtxArgs = tuple[Any, Any, bool, dict[str, Any]]
#: a piece of rendered text: ``(start, end, kind, message index, trained)``
_Piece = tuple[int, int, SegmentKind, int | None, bool]
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "

# end-of-turn strings that, when a template uses them literally, end an assistant turn
KNOWN_TURN_ENDS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|END_OF_TURN_TOKEN|>",
    "<|end▁of▁sentence|>",
    "<｜end▁of▁sentence｜>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "</s>",
    "<|eos|>",
    "[/TOOL_CALLS]",
    "<|return|>",
    "<turn|>",
    "<|end_of_turn|>",
    "<|assistant_end|>",
    "<seed:eos>",
    "<end_of_sentence>",
    "<|role_end|>",
    "<|eot|>",
    "<|EOT|>",
    "<|message_sep|>",
    "<end_message>",
    "[e~[",
)

# literals in a template that look like control tokens (``<|im_end|>``, ``<｜User｜>``, ``[INST]``,
# ``<start_of_turn>``): a fallback search for content never splits one of them
_TOKEN_LITERAL_RE = re.compile(r"<[|｜][^<>\s]{1,40}?[|｜]>|\[/?[A-Z][A-Z_]{1,20}\]|</?[a-z][a-z_]{0,20}>")

# special tokens a template that reads them must be given (else they render as nothing)
_TOKEN_VARIABLES = ("bos_token", "eos_token")
# Jinja's message for a special-token variable the context lacks
_UNDEFINED_TOKEN_RE = re.compile(r"^'((?:bos|eos|unk|pad|sep|cls|mask)_token)' is undefined$")

_FIELD_CONTENT = 0
_FIELD_REASONING = 1
_FIELD_ANCHOR = 2  # a zero-width anchor: where a message with no located content starts its body


# probes for "does this template render the tools / documents it is given?": when every probe
# renders differently with them than without, the template is trusted to render them in any call;
# otherwise each call is rendered once more without them and compared
_PROBE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "probe_lookup",
            "description": "Look a word up.",
            "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
        },
    }
]
_PROBE_DOCUMENTS = [{"title": "Probe", "text": "The probe document.", "doc_id": "0", "source": "probe"}]
_INPUT_PROBES = (
    ([{"role": "user", "content": "Hello!"}], True),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."}], True),
    ([{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}], False),
)

_PLAIN_ROLES = frozenset({"system", "user", "assistant"})
_PLAIN_KEYS = frozenset({"role", "content"})
_PLAIN_PROBES = (
    [{"role": "user", "content": "Hello!"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "  And 3+3?\n"},
    ],
    [{"role": "user", "content": "你好"}, {"role": "assistant", "content": " 我很好 "}, {"role": "user", "content": ""}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
)


def _plain_payload(messages: Any) -> bool:
    """Plain chat: a list of ``{"role": system|user|assistant, "content": str}`` dicts, the system
    message (if any) first -- what a known template's built-in renders identically."""
    if type(messages) is not list or not messages:
        return False
    for k, m in enumerate(messages):
        if type(m) is not dict or not m.keys() <= _PLAIN_KEYS:
            return False
        role = m.get("role")
        if type(role) is not str or role not in _PLAIN_ROLES or type(m.get("content")) is not str:
            return False
        if role == "system" and k != 0:
            return False
    return True


@lru_cache(maxsize=1)
def _official_hashes() -> frozenset[str]:
    """sha256 of every official template shipped in ``formats/builtin/official/`` (what a family's
    pins name): a template that is none of them is rendered without loading the format registry."""
    folder = resources.files("chatfmt.formats.builtin").joinpath("official")
    texts = (e.read_text("utf-8") for e in folder.iterdir() if e.name.endswith(".jinja"))
    return frozenset(hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts)


@dataclass(frozen=True)
class JinjaOptions:
    timeout: float = DEFAULT_TIMEOUT
    max_output: int = DEFAULT_MAX_OUTPUT
    strict: bool = False


def _plain(value: Any) -> Any:
    """Rebuild a value from plain JSON types (a fresh copy; nothing the sandbox does not know)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"


def _alias_reasoning(msg: dict[str, Any]) -> dict[str, Any]:
    reasoning = next((msg[k] for k in _REASONING_FIELDS if msg.get(k) is not None), None)
    if reasoning is not None:
        msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
    return msg


def _open_turn(messages: Any, tools: Any, add_generation_prompt: bool, continue_final_message: bool) -> tuple[Any, Any, bool, bool]:
    """``continue_final_message`` on an empty final answer (:func:`~chatfmt.formats.base.is_empty_answer`):
    the messages before it with the generation prompt, i.e. the open assistant turn (Baichuan2's
    ``build_chat_input`` on a conversation ending in an empty answer). Other arguments pass through."""
    from .base import check_continue_options, is_empty_answer

    if not continue_final_message:
        return messages, tools, add_generation_prompt, continue_final_message
    check_continue_options(continue_final_message, add_generation_prompt)
    msgs, tools = _messages_as_dicts(messages, tools)
    if msgs and is_empty_answer(msgs[-1]):
        return msgs[:-1], tools, True, False
    return messages, tools, add_generation_prompt, continue_final_message


def _nothing_to_continue(index: int, why: str) -> Exception:
    from ..errors import ValidationError

    return ValidationError(
        f"continue_final_message is set but {why} to continue (an empty final assistant message gives the "
        "open assistant turn)",
        index=index,
        rule="continue_final_message",
    )


def _messages_as_dicts(messages: Any, tools: Any) -> tuple[list[dict[str, Any]], Any]:
    if isinstance(messages, Conversation):
        return messages.to_dicts(), (tools if tools is not None else messages.tools)
    if isinstance(messages, dict) and "messages" in messages:
        return list(messages["messages"]), (tools if tools is not None else messages.get("tools"))
    if not isinstance(messages, (list, tuple)):
        raise TypeError(f"messages must be a list of dicts or a Conversation, got {type(messages).__name__}")
    out = []
    for i, m in enumerate(messages):
        if hasattr(m, "to_dict") and not isinstance(m, dict):
            m = m.to_dict()
        if not isinstance(m, dict):
            raise TypeError(f"message {i} must be a dict, got {type(m).__name__}")
        out.append(m)
    return out, tools


def _normalise(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The documented fallback normalisation: tool-call arguments as objects, null content as "",
    text parts joined. Returns the new messages and the names of the normalisations applied."""
    applied: set[str] = set()
    out = []
    for m in messages:
        m = dict(m)
        if "content" not in m or m.get("content") is None:
            if m.get("role") in ("assistant", "tool", "user", "system"):
                m["content"] = ""
                applied.add("null content as empty string")
        elif isinstance(m["content"], list):
            parts = m["content"]
            if all(isinstance(p, dict) and p.get("type", "text") == "text" for p in parts):
                m["content"] = "\n".join(str(p.get("text", "")) for p in parts)
                applied.add("text parts joined with newlines")
        tcs = m.get("tool_calls")
        if isinstance(tcs, list):
            new_tcs = []
            for tc in tcs:
                if isinstance(tc, dict):
                    tc = dict(tc)
                    fn = tc.get("function")
                    if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                        fn = dict(fn)
                        try:
                            fn["arguments"] = json.loads(fn["arguments"]) if fn["arguments"].strip() else {}
                            applied.add("tool-call arguments parsed from JSON string")
                        except json.JSONDecodeError:
                            pass
                        tc["function"] = fn
                new_tcs.append(tc)
            m["tool_calls"] = new_tcs
        out.append(m)
    return out, sorted(applied)


class _Markers:
    """Three private-use characters (open, separator, close) that do not occur in the plain render,
    so that any of them in a marked render was put there by :func:`_mark`."""

    def __init__(self, text: str) -> None:
        free = (b for b in range(0xF0000, 0xFFFF0, 3) if not any(chr(b + k) in text for k in range(3)))
        base = next(free, 0xF0000)  # (if every triple is taken, unmarking fails and the search takes over)
        self.open, self.mid, self.close = chr(base), chr(base + 1), chr(base + 2)
        self.mark_re = re.compile(f"([{self.open}{self.close}])(\\d+){self.mid}")
        self.any_re = re.compile(f"[{self.open}{self.mid}{self.close}]")


def _mark(text: str, idx: int, mk: _Markers) -> str:
    core = text.strip()
    if not core:
        return text
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()) :]
    return f"{lead}{mk.open}{idx}{mk.mid}{core}{mk.close}{idx}{mk.mid}{trail}"


def _mark_message(msg: dict[str, Any], i: int, mk: _Markers) -> dict[str, Any]:
    msg = dict(msg)
    c = msg.get("content")
    if isinstance(c, str):
        msg["content"] = _mark(c, i * 4 + _FIELD_CONTENT, mk)
    elif isinstance(c, list):
        parts = []
        for p in c:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                p = dict(p)
                p["text"] = _mark(p["text"], i * 4 + _FIELD_CONTENT, mk)
            parts.append(p)
        msg["content"] = parts
    for f in _REASONING_FIELDS:
        if isinstance(msg.get(f), str):
            msg[f] = _mark(msg[f], i * 4 + _FIELD_REASONING, mk)
    return msg


def _unmark(marked: str, mk: _Markers) -> tuple[str, list[tuple[int, int, int]]] | None:
    """Strip markers; return the plain text and ``(marker_id, start, end)`` spans, or ``None`` if
    the markers are not well formed (unpaired, nested or mangled)."""
    out: list[str] = []
    spans: list[tuple[int, int, int]] = []
    pos = 0
    length = 0
    open_id: int | None = None
    open_at = 0
    for m in mk.mark_re.finditer(marked):
        seg = marked[pos : m.start()]
        out.append(seg)
        length += len(seg)
        pos = m.end()
        kind, ident = m.group(1), int(m.group(2))
        if kind == mk.open:
            if open_id is not None:
                return None
            open_id, open_at = ident, length
        else:
            if open_id != ident:
                return None
            spans.append((ident, open_at, length))
            open_id = None
    if open_id is not None:
        return None
    out.append(marked[pos:])
    text = "".join(out)
    if mk.any_re.search(text):
        return None
    return text, spans


class JinjaFormat(ChatFormat):
    """A format defined by a Hugging Face-style Jinja chat template."""

    def __init__(
        self,
        template: str,
        *,
        name: str = "jinja",
        bos_token: str | None = None,
        eos_token: str | None = None,
        special_tokens: dict[str, str] | None = None,
        source: str | None = None,
        strict: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        max_output: int = DEFAULT_MAX_OUTPUT,
        info: FormatInfo | None = None,
        tool_use_template: str | None = None,
    ) -> None:
        if not isinstance(template, str):
            raise TypeError("template must be a string")
        self.template = template
        # transformers picks a model's named "tool_use" template whenever tools are given
        self._tool_use: JinjaFormat | None = None
        if tool_use_template is not None and tool_use_template != template:
            self._tool_use = JinjaFormat(
                tool_use_template,
                name=f"{name}:tool_use",
                special_tokens={**(special_tokens or {}), **({"bos_token": bos_token} if bos_token else {}), **({"eos_token": eos_token} if eos_token else {})},
                source=source,
                strict=strict,
                timeout=timeout,
                max_output=max_output,
            )
        self.options = JinjaOptions(timeout=timeout, max_output=max_output, strict=strict)
        tokens = dict(special_tokens or {})
        if bos_token is not None:
            tokens["bos_token"] = bos_token
        if eos_token is not None:
            tokens["eos_token"] = eos_token
        self.special_tokens = {k: v for k, v in tokens.items() if v is not None}
        ends = tuple(t for t in KNOWN_TURN_ENDS if t in template)
        eos = self.special_tokens.get("eos_token")
        if eos and eos not in ends and ("eos_token" in template or eos in template):
            ends = (eos, *ends)
        self.info = info or FormatInfo(
            name=name,
            family="jinja",
            description=f"Jinja chat template{f' from {source}' if source else ''}",
            stop=ends,
            end_of_turn=ends,
            bos_token=self.special_tokens.get("bos_token"),
            eos_token=eos,
            supports_system=True,
            supports_tools="tools" in template,
            supports_reasoning="reasoning_content" in template or "<think>" in template,
            source=source,
            special_tokens=dict(self.special_tokens),
        )
        self._compiled = compile_template(template, max_output)
        self._native: ChatFormat | Literal[False] | None = False  # False = not looked up yet

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (worker processes, ``datasets.map``): the compiled template and the caches stay
        behind and are rebuilt on the other side."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_compiled", "_renders_cache", "_warned_absent_tokens")}
        state["_native"] = False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._compiled = compile_template(self.template, self.options.max_output)

    # -- known templates -------------------------------------------------------------------------

    def _known_native(self) -> ChatFormat | None:
        """The family pinned against this exact template (``Family.pins``, by sha256), which renders
        it the same for plain conversations (with or without ``Pin.tools``: tool rendering never
        takes this path) -- confirmed on probe conversations with this format's own special tokens
        before it is trusted -- or ``None``."""
        known = self._native
        if known is False:
            self._native = known = None
            digest = hashlib.sha256(self.template.encode("utf-8")).hexdigest()
            if not self.options.strict and digest in _official_hashes():
                from . import registry

                try:
                    family = registry.pinned_family(self.template)
                    native = family.create() if family is not None else None
                except Exception:  # noqa: BLE001 - a broken module or plugin: render with Jinja
                    native = None
                if native is not None and self._agrees_with(native):
                    self._native = known = native
        return known

    def _native_for(
        self, messages: Any, tools: Any, documents: Any, template_kwargs: dict[str, Any], continue_final_message: bool
    ) -> ChatFormat | None:
        """The pinned built-in, when this render is one it takes: a plain conversation with nothing
        else (no tools, documents, template keywords or continuation)."""
        plain = tools is None and documents is None and not template_kwargs and not continue_final_message
        return self._known_native() if plain and _plain_payload(messages) else None

    def _agrees_with(self, native: ChatFormat) -> bool:
        for msgs in _PLAIN_PROBES:
            for agp in (False, True):
                try:
                    want = self._render_text(msgs, None, agp, False, None, {})[0]
                except Exception:
                    want = None
                try:
                    got = native.render(msgs, add_generation_prompt=agp)
                except Exception:
                    got = None
                if want != got:
                    return False
        return True

    # -- configuration ---------------------------------------------------------------------------

    def _variant(self, messages: Any, tools: Any) -> JinjaFormat:
        if self._tool_use is None:
            return self
        if tools is None:
            if isinstance(messages, Conversation):
                tools = messages.tools
            elif isinstance(messages, dict):
                tools = messages.get("tools")
        return self._tool_use if tools is not None else self

    def with_special_tokens(self, tokens: dict[str, str]) -> JinjaFormat:
        """A copy whose template variables include ``tokens`` (``bos_token``, ``eos_token``, ...) where
        this format has none of its own (its own win); ``self`` when nothing is added."""
        added = {k: v for k, v in tokens.items() if v is not None and k not in self.special_tokens}
        if not added:
            return self
        return JinjaFormat(
            self.template,
            name=self.info.name,
            special_tokens={**self.special_tokens, **added},
            source=self.info.source,
            strict=self.options.strict,
            timeout=self.options.timeout,
            max_output=self.options.max_output,
            tool_use_template=self._tool_use.template if self._tool_use is not None else None,
        )

    def with_options(self, **changes: Any) -> JinjaFormat:
        """A copy with other limits or strictness (``timeout``, ``max_output``, ``strict``)."""
        clone = object.__new__(JinjaFormat)
        clone.__dict__.update(self.__dict__)
        clone.options = replace(self.options, **changes)
        if "max_output" in changes:
            clone._compiled = compile_template(self.template, clone.options.max_output)
        return clone

    # -- rendering -------------------------------------------------------------------------------

    def _context(self, messages: list[dict[str, Any]], tools: Any, documents: Any, add_generation_prompt: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
        if tools is not None:
            tools = [t if isinstance(t, dict) else _tool_schema(t) for t in tools]
        ctx = {**self.special_tokens, **_plain(kwargs)}
        ctx["messages"] = messages
        ctx["tools"] = _plain(tools)
        ctx["documents"] = _plain(documents)
        ctx["add_generation_prompt"] = add_generation_prompt
        return ctx

    def _run(self, messages: list[dict[str, Any]], ctx_args: _CtxArgs) -> tuple[str, list[tuple[int, int]]]:
        tools, documents, agp, kwargs = ctx_args
        ctx = self._context(messages, tools, documents, agp, kwargs)
        return render_template(self._compiled, ctx, timeout=self.options.timeout, max_output=self.options.max_output)

    def _prepare(self, messages: Any, tools: Any) -> tuple[list[dict[str, Any]], Any]:
        msgs, tools = _messages_as_dicts(messages, tools)
        prepared = []
        for m in msgs:
            m = {k: v for k, v in m.items() if v is not None}
            prepared.append(_alias_reasoning(_plain(m)))
        return prepared, tools

    def render(
        self,
        messages: Any,
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        documents: list[dict[str, Any]] | None = None,
        **template_kwargs: Any,
    ) -> str:
        """Render exactly as ``apply_chat_template(..., tokenize=False)`` would
        (``continue_final_message`` on an empty final answer: the open assistant turn, the generation
        prompt after the messages before it)."""
        if tools is None and documents is None and not template_kwargs and not continue_final_message:
            # a plain conversation of a pinned template: parsed, checked and rendered in one pass
            known = self._known_native()
            if isinstance(known, NativeFormat):
                text = known._plain_text(messages, add_generation_prompt)
                if text is not None:
                    return text
        template_kwargs = merge_template_kwargs(template_kwargs)
        messages, tools, add_generation_prompt, continue_final_message = _open_turn(
            messages, tools, add_generation_prompt, continue_final_message
        )
        native = self._native_for(messages, tools, documents, template_kwargs, continue_final_message)
        if native is not None:
            return native.render(messages, add_generation_prompt=add_generation_prompt)
        variant = self._variant(messages, tools)
        if variant is not self:
            return variant.render(
                messages,
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message,
                documents=documents,
                **template_kwargs,
            )
        text, msgs, ctx_args, _ = self._render_text(
            messages, tools, add_generation_prompt, continue_final_message, documents, template_kwargs
        )
        if not not_rendered_quiet():
            missing = self._not_rendered(text, msgs, ctx_args, continue_final_message)
            if missing:
                warn_not_rendered(self.info.name, missing)
            self._warn_absent_tokens(template_kwargs)
        return text

    def _render_text(
        self,
        messages: Any,
        tools: Any,
        add_generation_prompt: bool,
        continue_final_message: bool,
        documents: Any,
        kwargs: dict[str, Any],
    ) -> tuple[str, list[dict[str, Any]], _CtxArgs, list[tuple[int, int]]]:
        if continue_final_message and add_generation_prompt:
            from .base import check_continue_options

            check_continue_options(continue_final_message, add_generation_prompt)
        msgs, tools = self._prepare(messages, tools)
        if not msgs:
            raise TemplateError("cannot render an empty conversation")
        ctx_args = (tools, documents, add_generation_prompt, kwargs)
        try:
            text, gen = self._render_with_continue(msgs, ctx_args, continue_final_message)
            return text, msgs, ctx_args, gen
        except TemplateError as first:
            self._explain_undefined_token(first, kwargs)
            if self.options.strict:
                raise
            normalised, applied = _normalise(msgs)
            if not applied:
                raise
            try:
                text, gen = self._render_with_continue(normalised, ctx_args, continue_final_message)
            except TemplateError:
                raise first from None
            warnings.warn(
                f"chat template {self.info.name!r} failed on the payload as given ({first.message}); "
                f"rendered after normalising: {', '.join(applied)}",
                ChatfmtWarning,
                stacklevel=3,
            )
            return text, normalised, ctx_args, gen

    def _explain_undefined_token(self, error: TemplateError, kwargs: dict[str, Any]) -> None:
        """A template that reads a special token (``bos_token``) this format was not given: say where
        the tokens come from instead of Jinja's bare "'bos_token' is undefined"."""
        m = _UNDEFINED_TOKEN_RE.match(error.message)
        if m is None or m.group(1) in self.special_tokens or m.group(1) in kwargs:
            return
        error.message = (
            f"the template uses {m.group(1)!r}, which this format was not given: load the format from the model "
            "directory or its tokenizer_config.json, put a tokenizer_config.json beside the .jinja, or pass the "
            "tokenizer (--tokenizer; in Python fmt.with_special_tokens({...}))"
        )

    def _render_with_continue(
        self, msgs: list[dict[str, Any]], ctx_args: _CtxArgs, continue_final_message: bool
    ) -> tuple[str, list[tuple[int, int]]]:
        if not continue_final_message:
            return self._run(msgs, ctx_args)
        last = dict(msgs[-1])
        content = last.get("content")
        if content is None:
            raise _nothing_to_continue(len(msgs) - 1, 'the final message has no "content"')
        if isinstance(content, list):
            parts = [dict(p) if isinstance(p, dict) else p for p in content]
            for p in reversed(parts):
                if isinstance(p, dict) and "text" in p:
                    final = p["text"]
                    p["text"] = p["text"] + _CONTINUE_TAG
                    break
            else:
                raise _nothing_to_continue(len(msgs) - 1, "the final message has no text part")
            last["content"] = parts
        else:
            final = content
            last["content"] = content + _CONTINUE_TAG
        text, gen = self._run([*msgs[:-1], last], ctx_args)
        tag = _CONTINUE_TAG.strip()
        if final.strip() not in text or tag not in text:
            raise TemplateError(
                "continue_final_message is set but the template dropped part of the final message"
            )
        at = text.rindex(tag)
        if text[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
            text = text[:at]
        else:
            text = text[:at].rstrip()
        return text, gen

    # -- segments --------------------------------------------------------------------------------

    def render_segments(
        self,
        messages: Any,
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        documents: list[dict[str, Any]] | None = None,
        **template_kwargs: Any,
    ) -> Rendered:
        template_kwargs = merge_template_kwargs(template_kwargs)
        messages, tools, add_generation_prompt, continue_final_message = _open_turn(
            messages, tools, add_generation_prompt, continue_final_message
        )
        quiet = not_rendered_quiet()
        rendered, missing = self._render_segments(
            messages, tools, add_generation_prompt, continue_final_message, documents, template_kwargs,
            check=not quiet,
        )
        if missing:
            warn_not_rendered(self.info.name, missing)
        if not quiet:
            self._warn_absent_tokens(template_kwargs)
        return rendered

    def render_checked(
        self,
        messages: Any,
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        documents: list[dict[str, Any]] | None = None,
        **template_kwargs: Any,
    ) -> CheckedRender:
        """:meth:`render_segments` without a warning, and what of the given inputs it leaves out:
        ``"tools"`` / ``"documents"`` when the template never reads them or renders the same without
        them, and the keyword arguments the template never reads."""
        template_kwargs = merge_template_kwargs(template_kwargs)
        messages, tools, add_generation_prompt, continue_final_message = _open_turn(
            messages, tools, add_generation_prompt, continue_final_message
        )
        return CheckedRender(*self._render_segments(
            messages, tools, add_generation_prompt, continue_final_message, documents, template_kwargs, check=True
        ))

    def _render_segments(
        self,
        messages: Any,
        tools: Any,
        add_generation_prompt: bool,
        continue_final_message: bool,
        documents: Any,
        template_kwargs: dict[str, Any],
        *,
        check: bool,
    ) -> tuple[Rendered, tuple[str, ...]]:
        if tools is None and documents is None and not template_kwargs and not continue_final_message:
            known = self._known_native()
            if isinstance(known, NativeFormat):
                plain = known._plain_rendered(messages, add_generation_prompt)
                if plain is not None:
                    return plain, ()
        native = self._native_for(messages, tools, documents, template_kwargs, continue_final_message)
        if native is not None:
            return native.render_segments(messages, add_generation_prompt=add_generation_prompt), ()
        variant = self._variant(messages, tools)
        if variant is not self:
            return variant._render_segments(
                messages, tools, add_generation_prompt, continue_final_message, documents, template_kwargs, check=check
            )
        text, msgs, ctx_args, gen_spans = self._render_text(
            messages, tools, add_generation_prompt, continue_final_message, documents, template_kwargs
        )
        spans = self._locate(text, msgs, ctx_args, continue_final_message)
        trained_flags = [_trained(m, i) for i, m in enumerate(msgs)]
        rendered = self._segment(text, spans, trained_flags, gen_spans if gen_spans else None)
        rendered.source = DataSource(msgs, ctx_args[0])
        missing = self._not_rendered(text, msgs, ctx_args, continue_final_message) if check else ()
        return rendered, missing

    # -- inputs the template leaves out ----------------------------------------------------------

    @property
    def template_variables(self) -> frozenset[str]:
        """The variables the template reads (``messages``, ``tools``, ``bos_token``, keyword
        arguments, ...): a keyword argument not among them has no effect."""
        return template_variables(self.template)

    def renders(self, name: str) -> bool | None:
        fmt = self._tool_use if name == TOOLS and self._tool_use is not None else self
        if name not in fmt.template_variables:
            return False
        if name in (TOOLS, DOCUMENTS):
            return True if fmt._always_renders(name) else None
        return True

    def _not_rendered(self, text: str, msgs: list[dict[str, Any]], ctx_args: _CtxArgs, cont: bool) -> tuple[str, ...]:
        """What of ``ctx_args`` (tools, documents, keyword arguments) the render ``text`` left out."""
        tools, documents, agp, kwargs = ctx_args
        reads = self.template_variables
        missing: list[str] = []
        for name, value in ((TOOLS, tools), (DOCUMENTS, documents)):
            if not given(value):
                continue
            if name not in reads:
                missing.append(name)
            elif not self._always_renders(name):
                without = (None, documents, agp, kwargs) if name == TOOLS else (tools, None, agp, kwargs)
                try:
                    other, _ = self._render_with_continue(msgs, without, cont)
                except (TemplateError, ValueError):
                    continue  # it raises without them: they matter
                if other == text:
                    missing.append(name)
        missing += [k for k, v in kwargs.items() if k not in reads and given(v)]
        return tuple(missing)

    def _warn_absent_tokens(self, kwargs: dict[str, Any]) -> None:
        """A template that reads ``bos_token`` / ``eos_token`` without being given them renders them
        as nothing: say so (once per format) rather than hand back a prompt without its BOS."""
        absent = [t for t in _TOKEN_VARIABLES if t in self.template_variables and t not in self.special_tokens and t not in kwargs]
        if absent and not self.__dict__.get("_warned_absent_tokens"):
            self.__dict__["_warned_absent_tokens"] = True
            names = " and ".join(repr(t) for t in absent)
            warnings.warn(
                f"chat template {self.info.name!r} reads {names}, which it was not given: rendered as nothing "
                "(give the tokenizer: --tokenizer, fmt.with_special_tokens({...}); or load the model directory "
                "or its tokenizer_config.json, or put one beside the .jinja)",
                ChatfmtWarning,
                stacklevel=3,
            )

    def _always_renders(self, name: str) -> bool:
        """Whether every probe conversation renders differently with probe tools (or documents)
        than without: then any call is trusted to render them (cached per format)."""
        cache: dict[str, bool] = self.__dict__.setdefault("_renders_cache", {})
        if name not in cache:
            probe = _PROBE_TOOLS if name == TOOLS else _PROBE_DOCUMENTS
            verdict = True
            for msgs, agp in _INPUT_PROBES:
                with_args: _CtxArgs = (probe, None, agp, {}) if name == TOOLS else (None, probe, agp, {})
                try:
                    a, _ = self._run(msgs, with_args)
                    b, _ = self._run(msgs, (None, None, agp, {}))
                except (TemplateError, ValueError):
                    verdict = False
                    break
                if a == b:
                    verdict = False
                    break
            cache[name] = verdict
        return cache[name]

    def _marked_render(
        self, msgs: list[dict[str, Any]], which: set[int], ctx_args: _CtxArgs, cont: bool, mk: _Markers
    ) -> tuple[str, list[tuple[int, int, int]]] | None:
        marked_msgs = [_mark_message(m, i, mk) if i in which else m for i, m in enumerate(msgs)]
        try:
            text, _ = self._render_with_continue(marked_msgs, ctx_args, cont)
        except (TemplateError, ValueError):
            return None
        return _unmark(text, mk)

    def _locate(self, text: str, msgs: list[dict[str, Any]], ctx_args: _CtxArgs, cont: bool) -> dict[int, list[tuple[int, int, int]]]:
        """Content spans by message index: lists of ``(field, start, end)``."""
        n = len(msgs)
        found: dict[int, list[tuple[int, int, int]]] = {}
        mk = _Markers(text)
        result = self._marked_render(msgs, set(range(n)), ctx_args, cont, mk)
        if result is not None and result[0] == text:
            for ident, s, e in result[1]:
                found.setdefault(ident // 4, []).append((ident % 4, s, e))
            missing = []
        else:
            missing = list(range(n))
            if n > 1:
                still = []
                for i in missing:
                    r = self._marked_render(msgs, {i}, ctx_args, cont, mk)
                    if r is not None and r[0] == text:
                        for ident, s, e in r[1]:
                            found.setdefault(ident // 4, []).append((ident % 4, s, e))
                    else:
                        still.append(i)
                missing = still
        # ordered search for the rest: after the previous located message, never splitting a token
        tokens = self._token_spans(text) if missing else []
        for i in missing:
            content = msgs[i].get("content")
            if isinstance(content, str):
                parts = [content]
            elif isinstance(content, list):
                # each text part on its own, in order (templates join them with separators or not at all)
                parts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
            else:
                continue
            prev_end = max((e for j in range(i) for _, _, e in found.get(j, [])), default=0)
            next_start = min((s for j in range(i + 1, n) for _, s, _ in found.get(j, [])), default=len(text))
            spans = []
            for part in parts:
                if not part.strip():
                    continue
                for needle in (part, part.strip()):
                    at = _find_outside_tokens(text, needle, prev_end, next_start, tokens)
                    if at >= 0:
                        spans.append((_FIELD_CONTENT, at, at + len(needle)))
                        prev_end = at + len(needle)
                        break
            if spans:
                found[i] = spans
        # a message with no located content (an assistant turn with only tool calls, empty or null
        # content) would otherwise be swallowed by the next message's header. Anchor it with a render of
        # the conversation before it, when that render is a prefix of the text: a trained turn's body
        # starts where the generation prompt after the earlier messages ends; any other message ends
        # at the last end-of-turn token in a render that stops with it
        tools, documents, _, kwargs = ctx_args
        for i in range(n):
            if i in found or (cont and i == n - 1):
                continue
            trained = _trained(msgs[i], i)
            head = msgs[:i] if trained else msgs[: i + 1]
            if not head:
                continue
            try:
                prefix, _ = self._render_with_continue(head, (tools, documents, trained, kwargs), False)
            except (TemplateError, ValueError):
                continue
            prev_end = max((e for j in range(i) for _, _, e in found.get(j, [])), default=0)
            next_start = min((s for j in range(i + 1, n) for _, s, _ in found.get(j, [])), default=len(text))
            at = len(prefix)
            if not (text.startswith(prefix) and prev_end <= at <= next_start):
                continue
            if not trained:
                ends = [text.rfind(t, prev_end, at) + len(t) for t in self._turn_ends() if text.rfind(t, prev_end, at) >= 0]
                if not ends:
                    continue
                at = max(ends)
            found[i] = [(_FIELD_ANCHOR, at, at)]
        # extend each span over edge whitespace that belongs to the content: only when both edges are
        # there, i.e. the content was inserted verbatim (a template that strips it adds its own spacing)
        for i, lst in found.items():
            content = msgs[i].get("content")
            new = []
            for f, s, e in lst:
                src = content if f == _FIELD_CONTENT and isinstance(content, str) else None
                if src is not None and text[s:e] == src.strip():
                    lead = src[: len(src) - len(src.lstrip())]
                    trail = src[len(src.rstrip()) :]
                    if text[max(0, s - len(lead)) : s] == lead and text[e : e + len(trail)] == trail:
                        s, e = s - len(lead), e + len(trail)
                new.append((f, s, e))
            found[i] = sorted(new, key=lambda t: t[1])
        return found

    def _turn_ends(self) -> tuple[str, ...]:
        return self.info.end_of_turn

    def _token_spans(self, text: str) -> list[tuple[int, int]]:
        """Where control-token-like strings (special tokens, turn ends, token-like template literals)
        occur in ``text``."""
        literals = set(_TOKEN_LITERAL_RE.findall(self.template)) | set(self.special_tokens.values())
        literals |= set(self._turn_ends())
        pattern = "|".join(re.escape(t) for t in sorted(literals, key=len, reverse=True) if t)
        return [m.span() for m in re.finditer(pattern, text)] if pattern else []

    def _segment(
        self,
        text: str,
        spans: dict[int, list[tuple[int, int, int]]],
        trained: list[bool],
        generation: list[tuple[int, int]] | None,
    ) -> Rendered:
        # one label per character range: (start, end, kind, message, trained)
        pieces: list[_Piece] = []
        order = sorted((s, e, i) for i, lst in spans.items() for _, s, e in lst)
        # message regions: from the end of the previous message's last span (+ its turn end) to the
        # end of this message's last span (+ its turn end)
        firsts: dict[int, int] = {}
        lasts: dict[int, int] = {}
        for s, e, i in order:
            firsts.setdefault(i, s)
            lasts[i] = max(lasts.get(i, e), e)
        ends = self._turn_ends()
        region_end: dict[int, int] = {}
        located = sorted(firsts, key=lambda i: firsts[i])
        for k, i in enumerate(located):
            stop = firsts[located[k + 1]] if k + 1 < len(located) else len(text)
            end = lasts[i]
            best = None
            for tok in ends:
                at = text.find(tok, end, stop)
                if at >= 0 and (best is None or at < best[0]):
                    best = (at, at + len(tok))
            region_end[i] = best[1] if best else end
        cursor = 0
        prev_region_end = 0
        for i in located:
            flag = trained[i] if i < len(trained) else False
            start_header = prev_region_end
            if firsts[i] > start_header:
                # header text before the first span: control, this message, not trained
                pieces.append((start_header, firsts[i], CONTROL, i, False))
            cursor = firsts[i]
            for s, e, j in order:
                if j != i:
                    continue
                if s > cursor:
                    pieces.append((cursor, s, CONTROL, i, flag))
                if e > s:
                    pieces.append((s, e, CONTENT, i, flag))
                cursor = max(cursor, e)
            if region_end[i] > cursor:
                pieces.append((cursor, region_end[i], CONTROL, i, flag))
            cursor = max(cursor, region_end[i])
            prev_region_end = cursor
        if cursor < len(text):
            pieces.append((cursor, len(text), CONTROL, None, False))
        if not located and text:
            pieces = [(0, len(text), CONTROL, None, False)]
        if generation is not None:
            # a block belongs to the message whose content it holds, else to a trained message anchored in it
            owners: list[int | None] = []
            for gs, ge in generation:
                owner = next((i for s, e, i in order if gs <= s < e <= ge), None)
                if owner is None:
                    owner = next((i for s, _, i in order if gs <= s <= ge and i < len(trained) and trained[i]), None)
                owners.append(owner)
            pieces = _apply_generation(pieces, generation, owners)
        segs: list[Segment] = []
        for s, e, kind, msg, tr in pieces:
            if e <= s:
                continue
            piece = text[s:e]
            if segs and segs[-1].kind == kind and segs[-1].message == msg and segs[-1].trained == tr:
                last = segs[-1]
                segs[-1] = Segment(last.text + piece, kind, msg, tr)
            else:
                segs.append(Segment(piece, kind, msg, tr))
        return Rendered(segs)


def _apply_generation(
    pieces: list[_Piece], generation: list[tuple[int, int]], owners: list[int | None]
) -> list[_Piece]:
    """With ``{% generation %}`` blocks, they alone decide what is trained, and the control text in a
    block belongs to the block's owner (a message index or ``None``), not to the next message's header."""
    cuts = sorted({p for s, e in generation for p in (s, e)})
    out: list[_Piece] = []
    for s, e, kind, msg, _ in pieces:
        points = [s] + [c for c in cuts if s < c < e] + [e]
        for a, b in zip(points, points[1:]):
            block = next((k for k, (gs, ge) in enumerate(generation) if gs <= a and b <= ge), None)
            owner = owners[block] if block is not None else None
            if kind == CONTROL and owner is not None:
                out.append((a, b, kind, owner, True))
            else:
                out.append((a, b, kind, msg, block is not None))
    return out


def _find_outside_tokens(text: str, needle: str, start: int, end: int, tokens: list[tuple[int, int]]) -> int:
    """``text.find(needle, start, end)``, skipping matches that cut through a token occurrence."""
    at = text.find(needle, start, end)
    while at >= 0:
        stop = at + len(needle)
        if not any(s < stop and at < e and not (at <= s and e <= stop) for s, e in tokens):
            return at
        at = text.find(needle, at + 1, end)
    return -1


def _trained(msg: dict[str, Any], index: int = 0) -> bool:
    """Whether a message's tokens are trained: its own loss flag, from any loss key (``loss``,
    OpenAI's ``weight``, axolotl's ``training``/``train``, LLaMA-Factory's ``loss_weight``, read as
    :func:`~chatfmt.messages.parse_message` reads them, as the built-in formats do), else whether it
    is an assistant message."""
    loss = msg.get("loss")
    if isinstance(loss, bool):
        return loss
    from ..messages import LOSS_KEYS, parse_message

    if any(msg.get(k) is not None for k in LOSS_KEYS):
        flag = parse_message(msg, index).loss
        if flag is not None:
            return flag
    return msg.get("role") == "assistant"


def _tool_schema(fn: Any) -> dict[str, Any]:
    from ..toolschema import function_schema

    return function_schema(fn)
