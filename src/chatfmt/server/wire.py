"""The OpenAI wire format: pydantic request models (validated, 400 on anything malformed) and the
response/chunk builders of ``chat.completion``, ``chat.completion.chunk`` and ``text_completion``.

A completion request's fields are each either passed to the engine, accepted as a no-op by design
(:data:`NO_OP_FIELDS`: bookkeeping such as ``user`` and ``metadata`` that changes no output), or
refused with a 400 that names them (:data:`REFUSED_FIELDS`, and any field OpenAI's API does not
define: a misspelt ``temprature`` is an error, as on OpenAI's own server, not a silent default).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic_core import PydanticCustomError


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _not_utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


#: a surrogate code point: what a string that does not encode to UTF-8 holds (and nothing else does)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _holds_surrogate(value: Any) -> bool:
    """Whether any string, key or value, in ``value`` holds a surrogate code point: the walk of
    :func:`lone_surrogate_at` without building the path of every value (an ASCII string is told in
    constant time, others by one regex scan, not an encoded copy): 68 us instead of 163 us on a
    130-message chat request, whose whole body parse took 358 us."""
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        v = pop()
        if isinstance(v, str):
            if not v.isascii() and _SURROGATE.search(v):
                return True
        elif isinstance(v, dict):
            for k, x in v.items():
                if isinstance(k, str) and not k.isascii() and _SURROGATE.search(k):
                    return True
                push(x)
        elif isinstance(v, list):
            extend(v)
    return False


def lone_surrogate_at(value: Any) -> str | None:
    """Where (``messages[0].content``) the first string, key or value, holds a lone surrogate (JSON
    allows the escape ``"\\ud800"``; it is not Unicode and no tokenizer takes it), else None.
    Iterative: the value may be nested as deep as the JSON decoder allows."""
    if not _holds_surrogate(value):
        return None
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        v, path = stack.pop()
        if isinstance(v, str):
            if _not_utf8(v):
                return path or "body"
        elif isinstance(v, dict):
            for k, x in v.items():
                sub = f"{path}.{k}" if path else str(k)
                if isinstance(k, str) and _not_utf8(k):
                    return path or "body"
                stack.append((x, sub))
        elif isinstance(v, list):
            stack.extend((x, f"{path}[{i}]") for i, x in enumerate(v))
    return None


class _Request(_Wire):
    """A request body: refused (400) when a string in it is not valid Unicode."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = lone_surrogate_at(data)
        if where is not None:
            raise PydanticCustomError(
                "lone_surrogate",
                "{where}: a lone surrogate escape (\\ud800-\\udfff) is not valid Unicode",
                {"where": where},
            )
        return data


class TextPart(_Wire):
    type: Literal["text"]
    text: StrictStr


class ImagePart(_Wire):
    type: Literal["image_url", "input_audio", "file", "image", "audio"]


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(_Wire):
    name: StrictStr
    arguments: StrictStr | dict[str, Any] = ""


class ToolCall(_Wire):
    id: StrictStr | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message. ``content`` may be a string, a list of text parts, or null (assistant with tool
    calls); other fields (``reasoning_content``, ``name``, ...) pass through to the format."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function", "ipython"]
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: StrictStr | None = None
    reasoning_content: StrictStr | None = None


class FunctionDef(_Wire):
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class Tool(_Wire):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(_Wire):
    name: StrictStr


class NamedToolChoice(_Wire):
    type: Literal["function"] = "function"
    function: NamedFunction


class StreamOptions(_Wire):
    include_usage: StrictBool = False


Stop = StrictStr | Annotated[list[StrictStr], Field(max_length=16)] | None
#: the most choices one request may ask for
MAX_N = 16
NonNegInt = Annotated[StrictInt, Field(ge=0)]


#: chat completion fields accepted and deliberately without effect (they change no output)
NO_OP_FIELDS: tuple[str, ...] = (
    "user",
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "prediction",
)

#: OpenAI fields chatfmt cannot honour: a 400 naming the field (value, when the field is set at all)
REFUSED_FIELDS: dict[str, str] = {
    "audio": "audio output is not supported (text only)",
    "functions": "the legacy field is not supported: send tools",
    "function_call": "the legacy field is not supported: send tool_choice",
    "reasoning_effort": "not supported: pass the format's own switch in chat_template_kwargs",
    "verbosity": "not supported",
    "web_search_options": "web search is not supported",
}


def _token_bias(v: Any) -> Any:
    """``logit_bias`` keys are token ids as strings (OpenAI's JSON object); values -100..100."""
    if not isinstance(v, dict):
        return v
    out: dict[int, float] = {}
    for k, b in v.items():
        try:
            tid = int(k)
        except (TypeError, ValueError):
            raise PydanticCustomError(
                "logit_bias_key", "logit_bias keys must be token ids, got {key}", {"key": repr(k)}
            ) from None
        if tid < 0:
            raise PydanticCustomError(
                "logit_bias_key", "logit_bias keys must be token ids, got {key}", {"key": repr(k)}
            )
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not -100 <= b <= 100:
            raise PydanticCustomError(
                "logit_bias_value",
                "logit_bias values must be numbers from -100 to 100, got {value} for {key}",
                {"value": repr(b), "key": repr(k)},
            )
        out[tid] = float(b)
    return out


LogitBias = Annotated[dict[int, float], BeforeValidator(_token_bias)]


class _Sampling(_Request):
    # every field of a completion request is known: a field chatfmt would otherwise ignore is a 400
    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: NonNegInt | None = None
    seed: StrictInt | None = None
    stop: Stop = None
    #: choices generated one after another (each with seed + index when a seed is given)
    n: Annotated[StrictInt, Field(ge=1, le=MAX_N)] = 1
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0, le=10)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    logit_bias: LogitBias | None = None
    #: a no-op by design (OpenAI's end-user id)
    user: StrictStr | None = None

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatRequestBase(_Request):
    """What a chat prompt is made of (shared by chat completions and ``/v1/render``)."""

    model: StrictStr | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    chat_template_kwargs: dict[str, Any] | None = None


class ChatCompletionRequest(_Sampling, ChatRequestBase):
    model_config = ConfigDict(extra="forbid")

    max_tokens: NonNegInt | None = None
    max_completion_tokens: NonNegInt | None = None
    parallel_tool_calls: StrictBool | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[StrictStr] | None = None
    # no-ops by design (NO_OP_FIELDS)
    metadata: dict[str, Any] | None = None
    store: StrictBool | None = None
    service_tier: StrictStr | None = None
    prompt_cache_key: StrictStr | None = None
    safety_identifier: StrictStr | None = None
    prediction: dict[str, Any] | None = None
    # refused when set (REFUSED_FIELDS)
    audio: Any = None
    functions: Any = None
    function_call: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None
    web_search_options: Any = None

    def refused(self) -> tuple[str, str] | None:
        """``(field, message)`` of the first field set that chatfmt cannot honour, else None."""
        for name, why in REFUSED_FIELDS.items():
            if getattr(self, name) is not None:
                return name, f"{name}: {why}"
        if self.modalities is not None and any(m != "text" for m in self.modalities):
            return "modalities", "modalities: only the text modality is supported"
        if self.parallel_tool_calls is False:
            return (
                "parallel_tool_calls",
                "parallel_tool_calls=false is not supported: the format's parser returns every call the model makes",
            )
        if self.top_logprobs and not self.logprobs:
            return "top_logprobs", "top_logprobs needs logprobs=true"
        return None


class RenderRequest(ChatRequestBase):
    add_generation_prompt: StrictBool = True


class CompletionRequest(_Sampling):
    model_config = ConfigDict(extra="forbid")

    prompt: (
        StrictStr | Annotated[list[NonNegInt], Field(min_length=1)] | list[StrictStr] | list[list[NonNegInt]]
    )
    max_tokens: NonNegInt | None = 16
    echo: StrictBool = False
    #: how many alternatives to return with each token's log-probability (0-20)
    logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None
    suffix: StrictStr | None = None
    best_of: StrictInt | None = None
    #: vLLM's extension: the generated token ids in each choice (``token_ids``)
    return_token_ids: StrictBool = False


class TokenizeRequest(_Request):
    model: StrictStr | None = None
    prompt: StrictStr
    #: recognise control-token text (``<|im_start|>``) as the control token; false: plain text only
    special: StrictBool = True


class DetokenizeRequest(_Request):
    model: StrictStr | None = None
    tokens: list[NonNegInt]
