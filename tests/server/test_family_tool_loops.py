"""A tool loop through the real server for every built-in family with a tool-call parser: the model's
output is the family's own rendering of an assistant tool-call turn (the part after the generation
prompt: what its model is trained to emit), replayed token by token by the scripted engine. The
official ``openai`` client must get the same call back (name, arguments, ``finish_reason ==
"tool_calls"``), streamed and not; sending the tool result back, the server's prompt for the next
turn must be the family's own rendering of the whole conversation, the tool result in it.

The families are read from the registry, so a new family with a parser is in this test without an
edit. The scripted engine uses the real SmolLM2 tokenizer; a family's control tokens that it lacks
are encoded as text (``allow_missing_tokens``), which the parsers read as they read a model's text.
The same loop runs through :class:`chatfmt.Chat` (what ``chatfmt chat`` drives) on a scripted
backend: the call, then the family's rendering of a final answer; the registered Python function must
be called with the call's arguments, and the second prompt must be the family's rendering of the
question, the call and its result.

And through the ``chatfmt chat`` command (``-p``, with a backend registered in the test process that
replays the script): ``--json`` gives the call back with ``finish_reason`` ``tool_calls``, the plain
output a ``tool call: NAME(ARGS)`` line (the command shows calls; it runs no tools).

The default run takes every third family (one call; the CLI every twentieth); ``slow`` the others
(the CLI with ``--json`` only: each run of the command loads the GGUF's tokenizer),
and every family again with two parallel calls where it renders them (a family that cannot is skipped
with its reason)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import openai
import pytest

from chatfmt.errors import ValidationError
from chatfmt.formats import registry
from chatfmt.inference import Backend, Chat
from chatfmt.inference.backends.base import GenerationParams, GenerationResult
from chatfmt.server import create_app

from .conftest import ScriptedEngine, post_json, uvicorn_thread

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "The unit."},
            },
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the local time in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city."}},
            "required": ["city"],
        },
    },
}
TOOLS = [WEATHER, TIME]
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
ONE_CALL = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]
TWO_CALLS = [*ONE_CALL, {"name": "get_time", "arguments": {"city": "Paris"}}]
RESULTS = ['{"temperature": 22, "sky": "clear"}', '{"time": "14:05"}']


def _families(part: str) -> list[Any]:
    """Every built-in family whose parser reads tool calls (it declares a parser and renders tools):
    ``sample`` every third of them (the default run), ``rest`` the others (slow), ``all``; the CLI
    (which loads the model's tokenizer per run): ``cli-sample`` every twentieth, ``cli-rest`` the others."""
    names = [
        n
        for n in registry.names()
        if registry.FAMILIES.origin(n).builtin
        and registry.family(n).parser
        and registry.family(n).info.supports_tools
    ]
    chosen = {
        "sample": names[::3],
        "rest": [n for i, n in enumerate(names) if i % 3],
        "all": names,
        "cli-sample": names[::20],
        "cli-rest": [n for i, n in enumerate(names) if i % 20],
    }[part]
    return [pytest.param(n, id=n) for n in chosen]


REASONING = "The user wants the weather; I call the tool."


def _call_id(style: str, name: str, i: int) -> str:
    # "plain": 9 letters and digits (what mistral-common accepts, and every other family);
    # "named": Kimi-K2's functions.NAME:INDEX, for a family that writes a call by its id alone
    return f"functions.{name}:{i}" if style == "named" else f"Call{i}xYz9"[:9]


def _assistant(fmt: Any, calls: list[dict[str, Any]], style: str, reasoning: bool) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": _call_id(style, c["name"], i),
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for i, c in enumerate(calls)
        ],
    }
    if reasoning:  # a reasoning model thinks before it calls
        msg["reasoning_content"] = REASONING
    return msg


def _think_markers(name: str) -> tuple[str | None, str | None]:
    """The reasoning block's markers in the family's output grammar (what its parser reads)."""
    from chatfmt.toolcalls.families import OUTPUT_PARSERS

    parser = registry.family(name).parser
    markers = OUTPUT_PARSERS.get(parser).factory(TOOLS).markers if parser else {}
    return markers.get("think_start"), markers.get("think_end")


def continuation(fmt: Any, history: list[dict[str, Any]], reply: Callable[[bool], dict[str, Any]]) -> str:
    """What the family's model emits after ``history``: its rendering of ``history`` plus the reply
    (``reply(reasoning)``: with reasoning first for a reasoning family) after the rendering of the
    prompt (generation prompt included). Where the prompt is not a prefix of that rendering (the
    generation prompt opens a reasoning block that the history drops, or the family writes a turn
    differently once another follows), the reply's own trained segments, after a reasoning block
    closed with the family's own end marker when the prompt leaves one open."""
    prompt = fmt.render(history, tools=TOOLS, add_generation_prompt=True)
    fulls = []
    for reasoning in dict.fromkeys((fmt.info.supports_reasoning, False)):
        try:
            fulls.append(fmt.render([*history, reply(reasoning)], tools=TOOLS))
        except ValidationError as e:  # a family whose template cannot write this reply
            pytest.skip(f"{fmt.name} cannot render the reply: {e}")
    generated = next((f[len(prompt) :] for f in fulls if f.startswith(prompt)), None)
    if generated is not None:
        # a reply header the generation prompt did not write (diffusiongemma after a tool response
        # continues the model's turn, its history opens a new one) is not the model's to emit
        segments = fmt.render_segments([*history, reply(fmt.info.supports_reasoning)], tools=TOOLS)
        header = "".join(
            seg.text
            for seg in itertools.takewhile(
                lambda seg: not seg.trained, (g for g in segments if g.message == len(history))
            )
        )
        return generated.removeprefix(header) if header else generated
    segments = fmt.render_segments([*history, reply(False)], tools=TOOLS)
    generated = "".join(seg.text for seg in segments if seg.message == len(history) and seg.trained)
    start, end = _think_markers(fmt.name)
    if start and end and prompt.rfind(start) > prompt.rfind(end):
        generated = f"{REASONING}\n{end}\n\n{generated}"
    return generated


def generated_part(fmt: Any, calls: list[dict[str, Any]]) -> tuple[str, str]:
    """What the family's model emits for ``calls`` after the question, and the id style it was
    rendered with (``named`` for a family that writes a call by its id alone)."""
    for style in ("plain", "named"):
        generated = continuation(
            fmt, [QUESTION], lambda reasoning, style=style: _assistant(fmt, calls, style, reasoning)
        )
        if all(c["name"] in generated for c in calls):
            return generated, style
    pytest.fail(f"{fmt.name}: the rendered call turn does not name the tool: {generated!r}")


def _server(name: str, script: str, smol_tokenizer: Any):
    fmt = registry.get(name)
    return fmt, uvicorn_thread(
        create_app(ScriptedEngine(smol_tokenizer, fmt, script), allow_missing_tokens=True)
    )


def _check_calls(got: list[Any], calls: list[dict[str, Any]]) -> None:
    assert [(c.function.name, json.loads(c.function.arguments)) for c in got] == [
        (c["name"], c["arguments"]) for c in calls
    ]
    assert all(c.type == "function" and c.id for c in got)
    assert len({c.id for c in got}) == len(got)


def _loop(name: str, calls: list[dict[str, Any]], smol_tokenizer: Any) -> None:
    fmt = registry.get(name)
    script, _ = generated_part(fmt, calls)
    fmt, server = _server(name, script, smol_tokenizer)
    with server as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="none")
        # not streamed
        r = client.chat.completions.create(model="scripted", messages=[QUESTION], tools=TOOLS)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls", (script, choice)
        _check_calls(choice.message.tool_calls, calls)
        if REASONING in script:  # the reasoning comes apart from the content, not in it
            assert REASONING not in (choice.message.content or "")
            assert (choice.message.model_extra or {}).get("reasoning_content", "").strip() == REASONING, (
                choice.message
            )
        # streamed: the call's deltas add up to the same call
        chunks = list(
            client.chat.completions.create(model="scripted", messages=[QUESTION], tools=TOOLS, stream=True)
        )
        deltas = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or []]
        merged: dict[int, dict[str, str]] = {}
        for tc in deltas:
            slot = merged.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] = slot["id"] or (tc.id or "")
            slot["name"] += (tc.function.name or "") if tc.function else ""
            slot["arguments"] += (tc.function.arguments or "") if tc.function else ""
        assert [(m["name"], json.loads(m["arguments"])) for _, m in sorted(merged.items())] == [
            (c["name"], c["arguments"]) for c in calls
        ], script
        assert all(m["id"] for m in merged.values())
        finishes = [
            ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason
        ]
        assert finishes == ["tool_calls"]
        # the tool results go back: the next prompt is the family's rendering of the whole conversation
        # (content as the server reads it: null when the reply had none)
        assistant = {
            "role": "assistant",
            "content": choice.message.content,
            "tool_calls": [tc.model_dump() for tc in choice.message.tool_calls],
        }
        results = [
            {"role": "tool", "tool_call_id": tc.id, "name": tc.function.name, "content": RESULTS[i]}
            for i, tc in enumerate(choice.message.tool_calls)
        ]
        messages = [QUESTION, assistant, *results]
        status, body = post_json(
            base, "/v1/render", {"model": "scripted", "messages": messages, "tools": TOOLS}
        )
        try:
            expected = fmt.render(messages, tools=TOOLS, add_generation_prompt=True)
        except ValidationError as e:  # the family refuses these results (mistral-v2: no ids to pair two)
            assert status == 400 and body["error"]["message"] == str(e), body
            return
        assert status == 200, body
        assert body["prompt"] == expected
        # (a family may re-serialise a JSON result: its values are there, however it spells them)
        assert all(v in body["prompt"] for v in ("22", "clear", "14:05")[: 2 * len(calls)])
        # and the server takes that conversation as the next chat request (the script replays its call)
        nxt = client.chat.completions.create(model="scripted", messages=messages, tools=TOOLS)
        assert nxt.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("name", _families("sample"))
def test_a_family_tool_call_goes_round_the_real_server(name, smol_tokenizer):
    _loop(name, ONE_CALL, smol_tokenizer)


@pytest.mark.slow
@pytest.mark.parametrize("name", _families("rest"))
def test_a_family_tool_call_goes_round_the_real_server_every_family(name, smol_tokenizer):
    _loop(name, ONE_CALL, smol_tokenizer)


@pytest.mark.slow
@pytest.mark.parametrize("name", _families("all"))
def test_a_family_parallel_tool_calls_go_round_the_real_server(name, smol_tokenizer):
    _loop(name, TWO_CALLS, smol_tokenizer)


# -- the same loop through chatfmt.Chat (what `chatfmt chat` runs), its tools called in between ----------

ANSWER = "It is 22 °C and clear in Paris."


class ScriptedBackend(Backend):
    """Replays one script per generation (the last one again after that) with a real tokenizer, and
    keeps the prompt text each generation was asked for."""

    name = "scripted"

    def __init__(self, tokenizer: Any, scripts: list[str]) -> None:
        from chatfmt.encode import encode_rendered
        from chatfmt.segments import Rendered, Segment

        self._tokenizer = tokenizer
        self.scripts = [encode_rendered(Rendered([Segment(s)]), tokenizer)[0] for s in scripts]
        self.prompts: list[str] = []
        self.chat: Chat | None = None

    @property
    def n_ctx(self) -> int:
        return 32_768

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def default_format(self) -> Any:
        raise NotImplementedError("the test gives the format")

    def generate(
        self,
        prompt_ids: Sequence[int],
        params: GenerationParams,
        *,
        result: GenerationResult | None = None,
        cancel: Any = None,
    ) -> Iterator[int]:
        self.prompts.append(self.chat.encoder.last_text if self.chat is not None else "")
        script = self.scripts[min(len(self.prompts), len(self.scripts)) - 1]
        result = result if result is not None else GenerationResult()
        result.prompt_tokens = len(prompt_ids)
        for tid in script:
            if tid in params.stop_ids:
                result.finish_reason, result.stop_id = "stop", tid
                return
            result.completion_tokens += 1
            yield tid
        result.finish_reason = "stop"


def _chat_loop(name: str, smol_tokenizer: Any) -> None:
    fmt = registry.get(name)
    call, style = generated_part(fmt, ONE_CALL)
    history = [
        QUESTION,
        _assistant(fmt, ONE_CALL, style, False),
        {
            "role": "tool",
            "tool_call_id": _call_id(style, "get_weather", 0),
            "name": "get_weather",
            "content": RESULTS[0],
        },
    ]
    answer = continuation(
        fmt,
        history,
        lambda reasoning: {
            "role": "assistant",
            "content": ANSWER,
            **({"reasoning_content": REASONING} if reasoning else {}),
        },
    )
    backend = ScriptedBackend(smol_tokenizer, [call, answer])
    called: list[dict[str, Any]] = []

    def get_weather(city: str, unit: str = "celsius") -> str:
        called.append({"city": city, "unit": unit})
        return RESULTS[0]

    chat = Chat(backend=backend, format=fmt, temperature=0, allow_missing_tokens=True, max_tool_rounds=2)
    chat.add_tool(WEATHER, get_weather)
    chat.add_tool(TIME, lambda city: RESULTS[1])
    backend.chat = chat
    reply = chat.send(QUESTION["content"])
    assert called == [ONE_CALL[0]["arguments"]], (call, chat.messages)
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "tool", "assistant"]
    (tc,) = chat.messages[1]["tool_calls"]
    assert (
        tc["function"]["name"] == "get_weather"
        and json.loads(tc["function"]["arguments"]) == ONE_CALL[0]["arguments"]
    )
    assert reply.content.strip() == ANSWER and reply.finish_reason == "stop", (answer, reply)
    # the second prompt: the family's rendering of the question, the call and its result
    assert len(backend.prompts) == 2
    assert backend.prompts[1] == fmt.render(chat.messages[:3], tools=chat.tools, add_generation_prompt=True)


@pytest.mark.parametrize("name", _families("sample"))
def test_a_family_tool_call_goes_round_chat(name, smol_tokenizer):
    _chat_loop(name, smol_tokenizer)


@pytest.mark.slow
@pytest.mark.parametrize("name", _families("rest"))
def test_a_family_tool_call_goes_round_chat_every_family(name, smol_tokenizer):
    _chat_loop(name, smol_tokenizer)


# -- and through the `chatfmt chat` command (it shows the calls; it runs no tools) ---------------------

_CLI_SCRIPTS: list[str] = []


@pytest.fixture(scope="module")
def cli_backend(smol_tokenizer: Any) -> Iterator[str]:
    """A backend registered in this process for the CLI: it replays ``_CLI_SCRIPTS`` with the real
    SmolLM2 tokenizer (whatever model path it is given)."""
    from chatfmt.inference.backends import base

    name = "test-family-scripted"
    base.register_backend(name)(lambda path, **options: ScriptedBackend(smol_tokenizer, list(_CLI_SCRIPTS)))
    try:
        yield name
    finally:
        base.BACKENDS.pop(name)
        base._DECLARED.pop(name, None)


def _cli_loop(name: str, backend: str, model: Any, tmp_path: Any, *, plain: bool = True) -> None:
    """``chatfmt chat -p ... --json`` gives the family's call back; with ``plain``, the command without
    ``--json`` too (each run loads the GGUF's tokenizer: the slow every-family run checks ``--json``
    only, the plain line is the same code for every family and the sample checks it)."""
    from typer.testing import CliRunner

    from chatfmt.cli import app

    fmt = registry.get(name)
    script, _ = generated_part(fmt, ONE_CALL)
    _CLI_SCRIPTS[:] = [script]
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOLS), encoding="utf-8")
    args = ["chat", "--model", str(model), "--backend", backend, "--format", name, "--allow-missing-tokens"]
    args += ["--tools", str(tools), "--temperature", "0", "-p", QUESTION["content"], "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    reply = json.loads(res.stdout.strip().splitlines()[-1])
    assert reply["finish_reason"] == "tool_calls", (script, reply)
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in reply["tool_calls"]] == [
        (c["name"], c["arguments"]) for c in ONE_CALL
    ]
    if not plain:
        return
    # without --json: the call is shown as a line
    res = CliRunner().invoke(app, args[:-1])
    assert res.exit_code == 0, res.output
    assert "tool call: get_weather(" in res.stdout


@pytest.mark.parametrize("name", _families("cli-sample"))
def test_a_family_tool_call_comes_out_of_chatfmt_chat(name, cli_backend, smollm2_gguf, tmp_path):
    _cli_loop(name, cli_backend, smollm2_gguf, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", _families("cli-rest"))
def test_a_family_tool_call_comes_out_of_chatfmt_chat_every_family(name, cli_backend, smollm2_gguf, tmp_path):
    _cli_loop(name, cli_backend, smollm2_gguf, tmp_path, plain=False)
