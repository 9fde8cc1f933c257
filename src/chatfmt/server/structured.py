"""Structured outputs and forced tool calls for ``/v1/chat/completions``: a request's
``response_format`` (``json_object``, ``json_schema``) or ``tool_choice`` (``"required"``, a named
function) becomes the constraint of its sampling (see :mod:`chatfmt.inference.constrain`); what
cannot be enforced is a 400 naming the field and the reason."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ..errors import ConstraintError
from .errors import bad_request

if TYPE_CHECKING:
    from .app import RenderedPrompt, ServerState
    from .engines import Sampling
    from .wire import ChatCompletionRequest

#: checked grammars kept per server (a tool list or a schema is usually sent again and again)
CACHE_SIZE = 64
_LOCK = threading.Lock()


def forced_tool_choice(choice: Any) -> bool:
    """``"required"`` or a named function."""
    return choice is not None and choice not in ("auto", "none")


def _cache(state: ServerState) -> OrderedDict[str, Any]:
    cache: OrderedDict[str, Any] | None = getattr(state, "_constraint_cache", None)
    if cache is None:
        cache = OrderedDict()
        state._constraint_cache = cache  # type: ignore[attr-defined]
    return cache


def constrain(
    state: ServerState, req: ChatCompletionRequest, r: RenderedPrompt, sampling: Sampling
) -> Sampling:
    """``sampling`` with the request's constraint (unchanged for plain text and ``tool_choice``
    ``auto``/``none``); a 400 naming ``response_format``/``tool_choice`` when it cannot be enforced,
    by the library (an unsupported schema feature), the chat format (a call syntax that cannot be
    constrained) or the engine (proxy mode)."""
    rf = req.response_format or None
    wants_format = bool(rf) and (rf or {}).get("type", "text") != "text"
    forced = forced_tool_choice(r.tool_choice)
    if not wants_format and not forced:
        return sampling
    from ..inference import constrain as C
    if wants_format and forced:
        raise bad_request(
            "response_format and a forced tool_choice cannot be combined (the reply is either a JSON document or a tool call)",
            param="response_format",
        )
    engine = state.engine
    fmt, tok = engine.format, engine.tokenizer
    eot = C.stop_ids_for(fmt, tok)
    kwargs = {**state.config.template_kwargs, **(req.chat_template_kwargs or {})}
    if forced:
        key = json.dumps(["tools", r.tools, sorted(eot), kwargs], sort_keys=True, default=str)
    else:
        key = json.dumps(["format", rf, sorted(eot)], sort_keys=True, default=str)
    cache = _cache(state)
    with _LOCK:
        factory = cache.get(key)
        if factory is not None:
            cache.move_to_end(key)
    if factory is None:
        try:
            if forced:
                factory = C.tool_choice_constraint(fmt, tok, r.tools or [], eot, template_kwargs=kwargs)
            else:
                factory = C.response_format_constraint(rf, tok, eot)
        except ConstraintError as e:
            code = "unsupported_tool_choice" if forced else "unsupported_response_format"
            raise bad_request(
                str(e), param=e.param or ("tool_choice" if forced else "response_format"), code=code
            ) from e
        with _LOCK:
            cache[key] = factory
            while len(cache) > CACHE_SIZE:
                cache.popitem(last=False)
    out = dataclasses.replace(sampling, constraint=factory)
    engine.check_sampling(out)
    return out
