"""Probe conversations: a fixed set of small conversations that tell chat formats apart by behaviour.

``detect``, ``diff`` and ``lint`` all render these. A probe is a conversation plus the render options
(tools, generation prompt); :func:`render_probe` renders one with any format under a frozen clock and
returns an :class:`Outcome` (the text, or the error it raised), so that "both raise" compares equal.

The probes cover what distinguishes one serialization from another: system prompt or none, one and
several turns, a generation prompt on and off, non-ASCII text, whitespace at the edges of content,
tools, tool calls and tool results, and reasoning. :data:`PAYLOAD_PROBES` are what OpenAI-compatible
servers send and many templates crash on (``content: null``, text parts, JSON-string arguments).
"""

from __future__ import annotations

import datetime as _dt
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Self

#: the instant every probe render sees as "now" (``strftime_now``, today's date in built-ins)
FROZEN_NOW = _dt.datetime(2025, 1, 15, 12, 0, 0)
#: a second instant, for telling date-dependent output apart (lint's time-variance rule)
OTHER_NOW = _dt.datetime(2026, 7, 4, 9, 30, 0)
#: template keyword arguments every probe render gets, as an OpenAI-compatible server passes them
#: (llama.cpp's server always passes ``enable_thinking``, true by default; templates that test
#: ``not enable_thinking`` would otherwise close the think block). Callers' keywords override them.
PROBE_KWARGS: dict[str, Any] = {"enable_thinking": True}

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name."},
                "unit": {
                    "type": "string",
                    "description": "The temperature unit.",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
            "required": ["city"],
        },
    },
}

SYSTEM = "You are a helpful assistant."
SYSTEM_MARK = "Always answer in haiku; marker S7Q."


def _call(arguments: Any, call_id: str = "call12345") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}


@dataclass(frozen=True)
class Probe:
    """One probe conversation and how to render it.

    ``tags``: ``core`` (plain chat, every format must get these right), ``tools``, ``reasoning``,
    ``payload`` (OpenAI wire shapes), ``generation`` (the generation prompt is what is probed).
    """

    id: str
    description: str
    messages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...] | None = None
    add_generation_prompt: bool = False
    tags: frozenset[str] = field(default_factory=frozenset)

    def message_list(self) -> list[dict[str, Any]]:
        """A fresh deep copy of the messages (formats may not mutate the probe)."""
        import copy

        return copy.deepcopy(list(self.messages))

    def tool_list(self) -> list[dict[str, Any]] | None:
        import copy

        return None if self.tools is None else copy.deepcopy(list(self.tools))


def _p(
    id: str,
    description: str,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    gen: bool = False,
    tags: Iterable[str] = (),
) -> Probe:
    return Probe(
        id, description, tuple(messages), None if tools is None else tuple(tools), gen, frozenset(tags)
    )


U1 = {"role": "user", "content": "What is the capital of France?"}
A1 = {"role": "assistant", "content": "The capital of France is Paris."}
U2 = {"role": "user", "content": "And of Germany?"}
A2 = {"role": "assistant", "content": "Berlin."}
S1 = {"role": "system", "content": SYSTEM}
#: the weather question, the call answering it and the call's result (the tool probes' conversation)
WEATHER_Q = {"role": "user", "content": "What is the weather in Paris?"}
WEATHER_RESULT = {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": '{"temperature": 22}'}
WEATHER_CALL: list[dict[str, Any]] = [
    WEATHER_Q, {"role": "assistant", "tool_calls": [_call({"city": "Paris"})]}, WEATHER_RESULT
]
REASONED: list[dict[str, Any]] = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4", "reasoning_content": "Two plus two is four."},
]
CORE = ("core",)

#: the probes ``detect`` and ``diff`` compare, in order (the first is the cheapest to tell formats apart)
PROBES: tuple[Probe, ...] = (
    _p("user+gen", "one user turn, generation prompt", [U1], gen=True, tags=("core", "generation")),
    _p("user", "one user turn, no generation prompt", [U1], tags=("core", "generation")),
    _p("system+user+gen", "system prompt and one user turn", [S1, U1], gen=True, tags=CORE),
    _p("empty-system", "an empty system message (what a client with no system prompt configured may send)",
       [{"role": "system", "content": ""}, U1], gen=True, tags=("edge",)),
    _p("multi-turn+gen", "user, assistant, user, generation prompt", [U1, A1, U2], gen=True, tags=CORE),
    _p("multi-turn-system", "system and two completed rounds, no generation prompt", [S1, U1, A1, U2, A2], tags=CORE),
    _p("chinese", "Chinese text in every role", [
        {"role": "system", "content": "你是一个乐于助人的助手。"},
        {"role": "user", "content": "你好，世界！"},
        {"role": "assistant", "content": "你好！有什么可以帮你的吗？"},
        {"role": "user", "content": "请用中文回答：天空为什么是蓝色的？"},
    ], gen=True, tags=CORE),
    _p("whitespace", "content with leading/trailing spaces, newlines and tabs", [
        {"role": "user", "content": "  padded question \n"},
        {"role": "assistant", "content": "\n\nan answer between blank lines\n\n"},
        {"role": "user", "content": "\ttab\tand  two  spaces  "},
    ], gen=True, tags=CORE),
    _p("tools", "a tool list and one user turn", [WEATHER_Q], tools=[WEATHER_TOOL], gen=True, tags=("tools",)),
    _p("tool-call", "an assistant tool call (arguments as an object) and its result, generation prompt",
       WEATHER_CALL, tools=[WEATHER_TOOL], gen=True, tags=("tools",)),
    _p("tool-call-answered", "a tool call, its result and the final answer",
       [*WEATHER_CALL, {"role": "assistant", "content": "It is 22 °C in Paris."}], tools=[WEATHER_TOOL], tags=("tools",)),
    _p("reasoning", "an earlier assistant turn with reasoning, then a new user turn",
       [*REASONED, {"role": "user", "content": "And 3+3?"}], gen=True, tags=("reasoning",)),
    _p("reasoning-last", "the final assistant turn has reasoning", REASONED, tags=("reasoning",)),
)


def _payload_call(content: Any, arguments: Any) -> list[dict[str, Any]]:
    """The weather call with ``content`` (``None``: the key is there, as null) and ``arguments`` as given."""
    call = {"role": "assistant", "content": content, "tool_calls": [_call(arguments)]}
    return [WEATHER_Q, call, {"role": "tool", "tool_call_id": "call12345", "content": "sunny"}]


#: what OpenAI-compatible servers send as given (lint: a template should not crash or leak reprs)
PAYLOAD_PROBES: tuple[Probe, ...] = (
    _p("content-parts", "system and user content as lists of text parts, over two rounds", [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
        {"role": "user", "content": [{"type": "text", "text": "Describe Paris."}]},
        {"role": "assistant", "content": "Paris is the capital of France."},
        {"role": "user", "content": [{"type": "text", "text": "And Berlin?"}]},
    ], gen=True, tags=("payload",)),
    _p("null-content", "an assistant tool call with content: null", _payload_call(None, {"city": "Paris"}),
       tools=[WEATHER_TOOL], gen=True, tags=("payload", "tools")),
    _p("string-arguments", "tool-call arguments as a JSON string", _payload_call("", '{"city": "Paris"}'),
       tools=[WEATHER_TOOL], gen=True, tags=("payload", "tools")),
)

ALL_PROBES: tuple[Probe, ...] = PROBES + PAYLOAD_PROBES


def get_probe(probe_id: str) -> Probe:
    for p in ALL_PROBES:
        if p.id == probe_id:
            return p
    raise KeyError(probe_id)


# -- rendering under a frozen clock -----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The result of rendering one probe: ``text`` or, if the format raised, ``error``."""

    text: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.text is not None

    def same_as(self, other: Outcome) -> bool:
        """Equal texts, or both raised (whatever the messages)."""
        return self.text == other.text


_clock_lock = threading.RLock()


def _frozen_datetime(now: _dt.datetime) -> type[_dt.datetime]:
    class FrozenDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz: _dt.tzinfo | None = None) -> Self:  # noqa: D102
            moment = now if tz is None else now.replace(tzinfo=tz)
            return cls.combine(moment.date(), moment.timetz())

        @classmethod
        def today(cls) -> Self:  # noqa: D102
            return cls.combine(now.date(), now.timetz())

    return FrozenDatetime


@contextmanager
def frozen_clock(now: _dt.datetime = FROZEN_NOW) -> Iterator[None]:
    """Make ``datetime.now()`` return ``now`` in the template sandbox (``strftime_now``) and in every
    loaded chatfmt module that imported the ``datetime`` class (built-ins printing today's date)."""
    fake = _frozen_datetime(now)
    with _clock_lock:
        patched = []
        for name, mod in list(sys.modules.items()):
            if not name.startswith("chatfmt.") or mod is None:
                continue
            current = getattr(mod, "datetime", None)
            if current is _dt.datetime or (
                isinstance(current, type) and current.__name__ == "FrozenDatetime"
            ):
                patched.append((mod, current))
                vars(mod)["datetime"] = fake
        try:
            yield
        finally:
            for mod, original in reversed(patched):
                vars(mod)["datetime"] = original


def _import_clock_users() -> None:
    """Import the modules that read the clock, so :func:`frozen_clock` sees them."""
    from . import registry, sandbox  # noqa: F401

    registry.names()


def render_probe(fmt: Any, probe: Probe, *, now: _dt.datetime = FROZEN_NOW, **kwargs: Any) -> Outcome:
    """Render ``probe`` with ``fmt`` (a :class:`~chatfmt.formats.base.ChatFormat`) at the instant ``now``;
    keyword arguments go to the template (e.g. ``bos_token``), over :data:`PROBE_KWARGS`. Warnings are silenced; any exception
    becomes ``Outcome(None, "<Type>: message")``."""
    _import_clock_users()
    with frozen_clock(now), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            text = fmt.render(
                probe.message_list(),
                tools=probe.tool_list(),
                add_generation_prompt=probe.add_generation_prompt,
                **{**PROBE_KWARGS, **kwargs},
            )
        except Exception as e:  # a probe must never take the caller down: any failure is the outcome
            return Outcome(None, f"{type(e).__name__}: {e}".strip())
    return Outcome(text)


def render_messages(
    fmt: Any,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = False,
    now: _dt.datetime = FROZEN_NOW,
    **kwargs: Any,
) -> Outcome:
    """:func:`render_probe` for an ad-hoc conversation."""
    return render_probe(
        fmt,
        Probe("adhoc", "", tuple(messages), None if tools is None else tuple(tools), add_generation_prompt),
        now=now,
        **kwargs,
    )


__all__ = [
    "ALL_PROBES",
    "FROZEN_NOW",
    "OTHER_NOW",
    "PAYLOAD_PROBES",
    "PROBE_KWARGS",
    "PROBES",
    "Outcome",
    "Probe",
    "frozen_clock",
    "get_probe",
    "render_messages",
    "render_probe",
]
