"""Constrained decoding: structured outputs (``response_format``) and forced tool calls
(``tool_choice="required"`` or a named function), enforced token by token with llguidance.

A request becomes a *grammar* (llguidance's Lark dialect or its JSON-schema compiler), the grammar
becomes a :class:`GrammarConstraint` (one per generation) that the backends apply through the
:class:`~chatfmt.inference.backends.base.TokenConstraint` hook: before each sampled token the scores
of every token the grammar does not allow are set to ``-inf``; the constraint is told each token
generated and says when the grammar is complete (generation then ends with ``finish_reason`` "stop").

The tool-call syntax is not written per family: it is read from the chat format itself. An assistant
turn holding one sentinel call is rendered after the generation prompt, the end-of-turn marker is cut
off, and the sentinel name and arguments are found in what is left: either inside one JSON value
(Hermes/Qwen ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, Llama-3.x
``{"name": ..., "parameters": {...}}``, Command-R7B's list, Mistral's ``[TOOL_CALLS][{...}]``) or as
the name in text followed by a JSON object of arguments (Mistral's ``[TOOL_CALLS]name[ARGS]{...}``,
Functionary, gpt-oss, DeepSeek-V3). The text around them becomes literal grammar (a control token as
that token id), the name a choice among the tools, the arguments each tool's ``parameters`` schema.
A sample call is then fed to the format's own output parser, which must return it as a tool call; a
format where any of this fails is refused with :class:`~chatfmt.errors.ConstraintError` naming it.

llguidance needs the tokenizer's vocabulary as bytes: it is read from the ``tokenizers`` object
behind chatfmt's Hugging Face and GGUF tokenizers (or a transformers fast tokenizer).
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ChatfmtError, ConstraintError

if TYPE_CHECKING:
    import llguidance

    from ..tokenizers.base import Tokenizer
    from ..types import FormatLike

#: JSON the grammar generates: no free whitespace (a small model may otherwise pad forever), the
#: separators chat formats render tool calls with
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}

#: the sentinel call rendered to find a format's call syntax (names no real tool would have; the id
#: is 9 letters and digits, which Mistral's validator requires)
_SENTINEL_NAME = "zqxsentinelfn"
_SENTINEL_ARG = "zqxsentinelarg"
_SENTINEL_VALUE = "zqxsentinelvalue"
_SENTINEL_ID = "zQx7k2Ld9"

#: what an object of the tool's arguments may be when a tool declares no parameters
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _llg() -> Any:
    try:
        import llguidance
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConstraintError(
            f"structured outputs need llguidance (pip install 'chatfmt[chat]' or 'chatfmt[serve]'): {e}"
        ) from e
    return llguidance


# -- the vocabulary ------------------------------------------------------------------------------


_LLTOK_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple[int, ...], Any]] = weakref.WeakKeyDictionary()
_LLTOK_LOCK = threading.Lock()


def _tokenizers_json(tokenizer: Any) -> str | None:
    """The ``tokenizers`` JSON of a chatfmt tokenizer (HF JSON, GGUF) or a transformers fast one."""
    for obj in (tokenizer, getattr(tokenizer, "backend", None)):
        if obj is None:
            continue
        inner = getattr(obj, "backend_tokenizer", obj)  # a transformers fast tokenizer
        to_str = getattr(inner, "to_str", None)
        if callable(to_str) and type(inner).__module__.startswith("tokenizers"):
            text = to_str()
            return text if isinstance(text, str) else None
    return None


def ll_tokenizer(tokenizer: Tokenizer, eos_ids: Iterable[int]) -> llguidance.LLTokenizer:
    """llguidance's view of ``tokenizer`` whose end-of-sequence tokens are ``eos_ids`` (the ids that
    end the assistant turn: a grammar that is complete allows exactly these). Cached per tokenizer."""
    eos = tuple(sorted(set(eos_ids)))
    if not eos:
        raise ConstraintError("constrained decoding needs a stop token (the format's end of turn)")
    with _LLTOK_LOCK:
        per = _LLTOK_CACHE.setdefault(tokenizer, {})
        if eos in per:
            cached: llguidance.LLTokenizer = per[eos]
            return cached
        doc = _tokenizers_json(tokenizer)
        if doc is None:
            raise ConstraintError(
                f"constrained decoding needs a tokenizer backed by the `tokenizers` library (a Hugging Face "
                f"tokenizer.json or a GGUF vocabulary); this one is {getattr(tokenizer, 'kind', type(tokenizer).__name__)!r}"
            )
        llg = _llg()
        try:
            lt: llguidance.LLTokenizer = llg.LLTokenizer(
                doc, n_vocab=int(tokenizer.vocab_size), eos_token=list(eos)
            )
        except (ValueError, RuntimeError) as e:
            raise ConstraintError(f"llguidance cannot read this tokenizer: {e}") from e
        per[eos] = lt
        return lt


# -- grammars ------------------------------------------------------------------------------------


def _unsupported(message: str) -> str:
    """llguidance's "Unimplemented keys: ["not"]" as "not"; other messages as they are."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else message
    if (
        len(lines) > 1
    ):  # "regex parse error:" / the pattern / "^^^" / "error: look-around ... is not supported"
        said = [ln.removeprefix("error:").strip() for ln in lines if ln.startswith("error:")]
        return f"{first} {'; '.join(said) or ' '.join(lines[1:])}"[:500]
    if first.startswith("Unimplemented keys:"):
        try:
            keys = json.loads(first.partition(":")[2])
        except ValueError:
            return first
        if isinstance(keys, list):
            return ", ".join(str(k) for k in keys)
    return first


def _schema_error(message: str, param: str) -> ConstraintError:
    what = _unsupported(message)
    if message.strip().startswith("Unimplemented keys:"):
        return ConstraintError(
            f"{param}: the JSON schema uses a feature structured outputs do not support: {what}", param=param
        )
    return ConstraintError(f"{param}: the JSON schema cannot be enforced: {what}", param=param)


def json_schema_grammar(schema: Mapping[str, Any] | bool, *, param: str = "response_format") -> str:
    """A grammar for JSON valid against ``schema`` (unsupported features are found when the grammar is
    checked, :func:`check_grammar`)."""
    llg = _llg()
    if schema is True:
        schema = {}
    if not isinstance(schema, Mapping):
        raise ConstraintError(f"{param}: the JSON schema must be an object", param=param)
    try:
        grammar: str = llg.LLMatcher.grammar_from_json_schema(dict(schema), defaults=dict(JSON_OPTIONS))
    except (ValueError, TypeError) as e:
        raise ConstraintError(f"{param}: the JSON schema cannot be read: {e}", param=param) from e
    return grammar


def close_objects(schema: Any) -> Any:
    """``schema`` with ``"additionalProperties": false`` on every object schema that does not say
    (OpenAI's strict mode, where it is required): what ``strict: true`` enforces. Branches of ``allOf``
    are left as they are (closing each would refuse the properties of the others)."""
    if isinstance(schema, list):
        return [close_objects(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions", "patternProperties"):
            out[key] = {k: close_objects(v) for k, v in value.items()} if isinstance(value, dict) else value
        elif key in ("items", "additionalProperties", "prefixItems", "anyOf", "oneOf"):
            out[key] = close_objects(value)
        else:
            out[key] = value
    is_object = (
        out.get("type") == "object"
        or (isinstance(out.get("type"), list) and "object" in out["type"])
        or "properties" in out
    )
    if is_object and "additionalProperties" not in out and "patternProperties" not in out:
        out["additionalProperties"] = False
    return out


def response_format_grammar(response_format: Mapping[str, Any] | None) -> str | None:
    """The grammar of an OpenAI ``response_format`` (``None`` for ``text`` or no format):
    ``{"type": "json_object"}`` is any JSON object, ``{"type": "json_schema", "json_schema": {"name",
    "schema", "strict"}}`` JSON valid against ``schema``, enforced whether ``strict`` is true or not;
    ``strict: true`` also closes every object that does not say ``additionalProperties``
    (:func:`close_objects`, OpenAI's strict semantics)."""
    if not response_format:
        return None
    if not isinstance(response_format, Mapping):
        raise ConstraintError("response_format must be an object", param="response_format")
    kind = response_format.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return json_schema_grammar(_ANY_OBJECT)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping):
            raise ConstraintError(
                "response_format.json_schema must be an object with a schema",
                param="response_format.json_schema",
            )
        if "schema" not in spec:
            raise ConstraintError(
                "response_format.json_schema.schema is missing", param="response_format.json_schema.schema"
            )
        schema = spec["schema"]
        if spec.get("strict") is True:
            schema = close_objects(schema)
        return json_schema_grammar(schema, param="response_format.json_schema.schema")
    raise ConstraintError(
        f"response_format type {kind!r} is not supported (text, json_object, json_schema)",
        param="response_format",
    )


def check_response_format(response_format: Mapping[str, Any] | None) -> None:
    """Raise :class:`ConstraintError` when ``response_format`` cannot be enforced (checked without a
    vocabulary: before a model is loaded)."""
    grammar = response_format_grammar(response_format)
    if grammar is not None:
        kind = str((response_format or {}).get("type"))
        check_grammar(
            grammar,
            None,
            param="response_format.json_schema.schema" if kind == "json_schema" else "response_format",
        )


def check_grammar(grammar: str, tokenizer: llguidance.LLTokenizer | None, *, param: str) -> None:
    """Raise :class:`ConstraintError` when llguidance rejects ``grammar`` (naming what it does not
    implement)."""
    llg = _llg()
    is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
    if is_error:
        raise _schema_error(messages[0] if messages else "invalid grammar", param)


# -- the constraint --------------------------------------------------------------------------------


class GrammarConstraint:
    """One generation's constraint (a :class:`~chatfmt.inference.backends.base.TokenConstraint`)."""

    def __init__(self, grammar: str, tokenizer: llguidance.LLTokenizer) -> None:
        import numpy as np

        llg = _llg()
        self._np = np
        self.tokenizer = tokenizer
        self.matcher = llg.LLMatcher(tokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise ConstraintError(f"the grammar cannot be enforced: {self.matcher.get_error()}")
        self.vocab = int(tokenizer.vocab_size)
        self._words = np.zeros((self.vocab + 31) // 32, dtype=np.int32)
        self._allowed: Any = None  # the boolean mask of the next step, when computed
        self._eos = frozenset(tokenizer.eos_tokens)
        #: tokens accepted so far
        self.tokens: list[int] = []

    def _mask(self) -> Any:
        if self._allowed is None:
            np = self._np
            w = self._words
            self.matcher.unsafe_compute_mask_ptr(w.ctypes.data, w.size * w.itemsize)
            bits = np.unpackbits(w.view(np.uint8), bitorder="little")[: self.vocab]
            self._allowed = bits.astype(bool)
        return self._allowed

    def mask_logits(self, logits: Any) -> None:
        allowed = self._mask()
        n = self.vocab
        if type(logits).__module__.startswith("torch"):
            try:  # a CPU tensor: its numpy view (torch's masked_fill_ is ~100x slower here on a busy CPU)
                array = logits.detach().numpy()
            except (RuntimeError, TypeError):  # on a GPU, or a dtype numpy lacks (bfloat16)
                import torch

                keep = torch.from_numpy(allowed).to(device=logits.device)
                logits[:n].masked_fill_(~keep, float("-inf"))
                if logits.shape[0] > n:
                    logits[n:] = float("-inf")
                return
            logits = array
        logits[:n][~allowed] = -self._np.inf
        if logits.shape[0] > n:
            logits[n:] = -self._np.inf

    def advance(self, token_id: int) -> None:
        self._allowed = None
        self.tokens.append(int(token_id))
        if not self.matcher.consume_token(int(token_id)):
            raise ConstraintError(
                f"token {token_id} does not fit the grammar: {self.matcher.get_error() or 'rejected'}"
            )

    def done(self) -> bool:
        """Complete: the grammar has stopped, or it accepts and allows nothing but the end of turn."""
        m = self.matcher
        if m.is_stopped():
            return True
        if not m.is_accepting():
            return False
        allowed = self._mask()
        ids = self._np.flatnonzero(allowed)
        return all(int(i) in self._eos for i in ids)


@dataclass(frozen=True)
class ConstraintFactory:
    """A checked grammar for one vocabulary: :meth:`new` makes each generation's constraint."""

    grammar: str
    tokenizer: Any
    #: "json_object", "json_schema" or "tool_call"
    kind: str

    def new(self) -> GrammarConstraint:
        return GrammarConstraint(self.grammar, self.tokenizer)


# -- tool calls in the format's own syntax -------------------------------------------------------------


@dataclass(frozen=True)
class CallSyntax:
    """Where a format's call goes, read from a rendered sentinel call: text before the call, the
    call itself, text after it (the end-of-turn marker cut off).

    ``json_template`` is set when name and arguments sit in one JSON value (a template with the
    sentinels in place); otherwise ``between`` is the text between the name and the JSON object of
    the arguments."""

    before: str
    after: str
    json_template: Any = None
    between: str | None = None


def _raw_values(text: str) -> Iterable[tuple[int, int, Any]]:
    """Every JSON object or array that starts somewhere in ``text``: ``(start, end, value)``."""
    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                value, end = dec.raw_decode(text, i)
            except ValueError:
                continue
            yield i, end, value


def _contains(value: Any, needle: Any) -> bool:
    if value == needle:
        return True
    if isinstance(value, dict):
        return any(_contains(v, needle) for v in value.values())
    if isinstance(value, list):
        return any(_contains(v, needle) for v in value)
    return False


def _end_of_turn(fmt: Any) -> tuple[str, ...]:
    info = getattr(fmt, "info", None)
    return tuple(
        s
        for s in dict.fromkeys(
            [*(getattr(info, "stop", ()) or ()), *(getattr(info, "end_of_turn", ()) or ())]
        )
        if s
    )


def call_syntax(fmt: FormatLike, *, template_kwargs: Mapping[str, Any] | None = None) -> CallSyntax:
    """The call syntax of ``fmt``, read from how it renders one assistant call (see the module)."""
    name = getattr(getattr(fmt, "info", None), "name", "?")
    tools = [
        {
            "type": "function",
            "function": {
                "name": _SENTINEL_NAME,
                "description": "sentinel",
                "parameters": {"type": "object", "properties": {_SENTINEL_ARG: {"type": "string"}}},
            },
        }
    ]
    user = [{"role": "user", "content": "sentinel question"}]
    args = {_SENTINEL_ARG: _SENTINEL_VALUE}
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": _SENTINEL_ID,
                "type": "function",
                "function": {"name": _SENTINEL_NAME, "arguments": json.dumps(args)},
            }
        ],
    }
    kwargs = dict(template_kwargs or {})

    def refuse(why: str) -> ConstraintError:
        return ConstraintError(
            f"tool_choice cannot be enforced for the chat format {name!r}: {why}", param="tool_choice"
        )

    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prompt = fmt.render(user, tools=tools, add_generation_prompt=True, **kwargs)
            full = fmt.render([*user, call], tools=tools, **kwargs)
    except (ChatfmtError, TypeError, ValueError) as e:
        raise refuse(f"it cannot render an assistant tool call ({e})") from e
    if not full.startswith(prompt):
        raise refuse("the rendered assistant turn does not continue the generation prompt")
    turn = full[len(prompt) :]
    cut = [k for k in (turn.find(s) for s in _end_of_turn(fmt)) if k >= 0]
    if cut:
        turn = turn[: min(cut)]
    if _SENTINEL_NAME not in turn:
        raise refuse("its rendered call does not contain the tool's name")
    # one JSON value holding name and arguments (the outermost such value)
    for start, end, value in _raw_values(turn):  # the first (outermost) value holding both
        if _contains(value, _SENTINEL_NAME) and _contains(value, args):
            return CallSyntax(turn[:start], turn[end:], json_template=value)
    # the name as text, then a JSON object of arguments
    k = turn.find(_SENTINEL_NAME)
    rest = turn[k + len(_SENTINEL_NAME) :]
    for start, end, value in _raw_values(rest):
        if value == args:
            return CallSyntax(turn[:k], rest[end:], between=rest[:start])
        break
    raise refuse("its call arguments are not a JSON object (a call syntax that cannot be constrained)")


def tool_parameters(tool: Mapping[str, Any]) -> Any:
    """The schema a forced call's arguments must match: the tool's ``parameters`` as written (any
    object when it has none); with ``"strict": true`` on the function, objects that do not say
    ``additionalProperties`` are closed, as OpenAI's strict function calling does."""
    fn = tool.get("function") or {}
    params = fn.get("parameters") or _ANY_OBJECT
    if not isinstance(params, Mapping):
        raise ConstraintError(
            f"the parameters of tool {fn.get('name')!r} must be a JSON schema object", param="tools"
        )
    return close_objects(dict(params)) if fn.get("strict") is True else dict(params)


def _schema_for_template(value: Any, tool: Mapping[str, Any]) -> Any:
    """The template JSON value with the sentinels replaced: the name by the tool's name, the arguments
    by its parameters schema, the sentinel id by any 9 letters and digits, all else constant."""
    fn = tool["function"]
    params = tool_parameters(tool)
    if value == {_SENTINEL_ARG: _SENTINEL_VALUE}:
        return dict(params)
    if value == _SENTINEL_NAME:
        return {"const": fn["name"]}
    if value == _SENTINEL_ID:
        return {"type": "string", "pattern": "^[A-Za-z0-9]{9}$"}
    if isinstance(value, dict):
        props = {k: _schema_for_template(v, tool) for k, v in value.items()}
        return {"type": "object", "properties": props, "required": list(value), "additionalProperties": False}
    if isinstance(value, list):
        items = [_schema_for_template(v, tool) for v in value]
        return {"type": "array", "prefixItems": items, "items": False, "minItems": len(items)}
    return {"const": value}


def _lark_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _literal(text: str, tokenizer: Tokenizer) -> str:
    """Lark for ``text`` exactly as the format renders it: its control tokens as those token ids
    (``<[id]>``), the rest as text (any tokenization)."""
    if not text:
        return '""'
    from ..encode import encode_rendered
    from ..segments import Rendered, Segment

    ids, _, _ = encode_rendered(Rendered([Segment(text)]), tokenizer)
    control = set(getattr(tokenizer, "control_ids", ()) or ()) | set(
        (getattr(tokenizer, "added_tokens", {}) or {}).values()
    )
    parts: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            parts.append(_lark_string(tokenizer.decode(run)))
            run.clear()

    for i in ids:
        if i in control:
            flush()
            parts.append(f"<[{i}]>")
        else:
            run.append(i)
    flush()
    return " ".join(parts)


def _json_rule(schema: Any) -> str:
    return "%json " + json.dumps({**schema, "x-guidance": dict(JSON_OPTIONS)}, ensure_ascii=False)


def tool_call_grammar(
    fmt: FormatLike,
    tokenizer: Tokenizer,
    tools: Sequence[Mapping[str, Any]],
    *,
    template_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """A Lark grammar for exactly one call of one of ``tools`` in ``fmt``'s own call syntax, its
    arguments valid against the tool's ``parameters``."""
    if not tools:
        raise ConstraintError("tool_choice needs tools", param="tool_choice")
    syntax = call_syntax(fmt, template_kwargs=template_kwargs)
    rules: list[str] = []
    alts: list[str] = []
    for k, tool in enumerate(tools):
        fn = tool.get("function") or {}
        if not fn.get("name"):
            raise ConstraintError(f"tools[{k}] has no function name", param="tools")
        if syntax.json_template is not None:
            body = _json_rule(_schema_for_template(syntax.json_template, tool))
        else:
            params = tool_parameters(tool)
            body = f"{_literal(fn['name'], tokenizer)} {_literal(syntax.between or '', tokenizer)} {_json_rule(params)}"
        rules.append(f"call_{k}: {body}")
        alts.append(f"call_{k}")
    head = f"start: {_literal(syntax.before, tokenizer)} ({' | '.join(alts)}) {_literal(syntax.after, tokenizer)}"
    return "\n".join([head, *rules]) + "\n"


def sample_call(
    fmt: FormatLike,
    tool: Mapping[str, Any],
    arguments: Mapping[str, Any],
    *,
    template_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """The text of one call of ``tool`` with ``arguments`` in ``fmt``'s syntax (what the grammar of
    :func:`tool_call_grammar` allows, with the JSON as rendered by ``json.dumps``)."""
    syntax = call_syntax(fmt, template_kwargs=template_kwargs)
    name = tool["function"]["name"]
    if syntax.json_template is not None:

        def fill(v: Any) -> Any:
            if v == {_SENTINEL_ARG: _SENTINEL_VALUE}:
                return dict(arguments)
            if v == _SENTINEL_NAME:
                return name
            if isinstance(v, dict):
                return {k: fill(x) for k, x in v.items()}
            if isinstance(v, list):
                return [fill(x) for x in v]
            return v

        body = json.dumps(fill(syntax.json_template), ensure_ascii=False)
    else:
        body = f"{name}{syntax.between}{json.dumps(dict(arguments), ensure_ascii=False)}"
    return syntax.before + body + syntax.after


# -- the entry points ----------------------------------------------------------------------------------


def stop_ids_for(fmt: FormatLike, tokenizer: Tokenizer) -> frozenset[int]:
    """The ids that end the assistant turn (what a complete grammar allows next)."""
    from .chat import stop_tokens

    ids, _ = stop_tokens(fmt, tokenizer, [])
    return ids


def response_format_constraint(
    response_format: Mapping[str, Any] | None, tokenizer: Tokenizer, stop_ids: Iterable[int]
) -> ConstraintFactory | None:
    """A checked constraint for ``response_format`` (None for text), or :class:`ConstraintError`."""
    grammar = response_format_grammar(response_format)
    if grammar is None:
        return None
    lt = ll_tokenizer(tokenizer, stop_ids)
    kind = str((response_format or {}).get("type"))
    param = "response_format.json_schema.schema" if kind == "json_schema" else "response_format"
    check_grammar(grammar, lt, param=param)
    return ConstraintFactory(grammar, lt, kind)


def tool_choice_constraint(
    fmt: FormatLike,
    tokenizer: Tokenizer,
    tools: Sequence[Mapping[str, Any]],
    stop_ids: Iterable[int],
    *,
    template_kwargs: Mapping[str, Any] | None = None,
) -> ConstraintFactory:
    """A checked constraint forcing one call of one of ``tools`` (pass one tool for a named choice),
    verified against the format's own parser; :class:`ConstraintError` naming the format when its
    syntax cannot be enforced."""
    from ..toolcalls import parser_for_format

    grammar = tool_call_grammar(fmt, tokenizer, tools, template_kwargs=template_kwargs)
    lt = ll_tokenizer(tokenizer, stop_ids)
    check_grammar(grammar, lt, param="tools")
    # the format's parser must read the syntax back as a call of that tool
    name = getattr(getattr(fmt, "info", None), "name", "?")
    tool = tools[0]
    text = sample_call(fmt, tool, {}, template_kwargs=template_kwargs)
    parser = parser_for_format(fmt, tokenizer, tools=list(tools), warn=False)
    ids, _, _ = _encode(text, tokenizer)
    for i in ids:
        parser.feed(tokenizer.decode([i]), i)
    _, out = parser.finish()
    calls = out.tool_calls or []
    if len(calls) != 1 or (calls[0].get("function") or {}).get("name") != tool["function"]["name"]:
        raise ConstraintError(
            f"tool_choice cannot be enforced for the chat format {name!r}: its output parser does not read "
            f"back the call syntax its template renders",
            param="tool_choice",
        )
    return ConstraintFactory(grammar, lt, "tool_call")


def _encode(text: str, tokenizer: Tokenizer) -> tuple[list[int], Any, Any]:
    from ..encode import encode_rendered
    from ..segments import Rendered, Segment

    return encode_rendered(Rendered([Segment(text)]), tokenizer)
