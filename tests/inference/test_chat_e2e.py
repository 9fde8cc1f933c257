"""End to end with the real default model (SmolLM2-135M-Instruct, Q4_1 GGUF): ``Chat`` on the
transformers backend, and on llama.cpp when llama-cpp-python is installed and works here (chatfmt's
probe: a child process loads the model and generates; skipped with the reason otherwise).

The model is loaded once per backend (module-scoped fixture) with a 1024-token context; generations
are short and greedy unless a test is about sampling. The llama.cpp runs are marked ``slow`` (its
build does not fit CI's time): ``pytest -m slow tests/inference/test_chat_e2e.py``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

import chatfmt
from chatfmt.errors import ChatfmtWarning
from chatfmt.inference import Chat, Reply, stop_tokens

N_CTX = 1024
QUESTION = "What is the capital of France?"


def _llama_cpp_or_skip(model: Path) -> None:
    """Skip unless llama-cpp-python is installed and works here: chatfmt's own probe (a child process
    loads the model and evaluates a batch and a token; a build with the wrong CPU flags dies there by
    a signal, which cannot take pytest down)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'chatfmt[llama]')")
    from chatfmt.inference.backends import probe_backend

    result = probe_backend("llama.cpp", model)
    if not result.ok:
        pytest.skip(f"{result.build} {result.what()} in a test run on this machine")


@pytest.fixture(scope="module", params=["transformers", pytest.param("llama.cpp", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest, smollm2_path: Path) -> Any:
    from chatfmt.inference import load_backend

    if request.param == "llama.cpp":
        _llama_cpp_or_skip(smollm2_path)
        b = load_backend(smollm2_path, "llama.cpp", n_ctx=N_CTX)
        yield b
        b.close()
        return
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    # a 135M model gains nothing from a second thread, and on a shared machine torch's spinning
    # threads make generation ~10x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        b = load_backend(smollm2_path, "transformers", n_ctx=N_CTX)
        yield b
        b.close()
    finally:
        torch.set_num_threads(threads)


def _chat(backend: Any, **kw: Any) -> Chat:
    kw.setdefault("temperature", 0.0)
    kw.setdefault("max_new_tokens", 24)
    return Chat(backend=backend, **kw)


def _check_reply(chat: Chat, reply: Reply, prompt_messages: list[dict], max_new: int) -> None:
    """What every reply must satisfy: the prompt is fmt.encode of the conversation, the counts add up,
    the completion ids decode to the raw text."""
    tok, fmt = chat.tokenizer, chat.format
    prompt = fmt.encode(prompt_messages, tok, tools=chat.tools or None, add_generation_prompt=True).input_ids
    assert chat.last_fit is not None and chat.last_fit.ids == prompt
    assert reply.usage.prompt_tokens == len(prompt)
    assert reply.finish_reason in ("stop", "length", "tool_calls")
    stop_ids, _ = stop_tokens(fmt, tok)
    ids = reply.completion_ids
    if reply.finish_reason == "length":
        assert reply.usage.completion_tokens == len(ids) == max_new
        generated = ids
    else:
        assert ids[-1] in stop_ids
        assert reply.usage.completion_tokens == len(ids) - 1
        generated = ids[:-1]
    assert tok.decode(generated) == reply.raw_text
    assert reply.elapsed > 0 and reply.time_to_first_token is not None


def test_greedy_send_answers_and_the_second_turn_reuses_the_prefix(backend: Any) -> None:
    chat = _chat(backend)
    r1 = chat.send(QUESTION)
    assert r1.content.strip()
    prompt1 = chat.encoder.last_text
    if backend.name != "llama.cpp":
        assert "Paris" in r1.content
    assert chat.messages == [{"role": "user", "content": QUESTION}, r1.message()]
    _check_reply(chat, r1, chat.messages[:1], 24)
    r2 = chat.send("And of Italy?")
    assert r2.content.strip()
    _check_reply(chat, r2, chat.messages[:3], 24)
    # the whole first prompt (and more: the first reply) is reused, the new turn is evaluated
    assert r1.usage.prompt_tokens <= r2.usage.cached_tokens < r2.usage.prompt_tokens
    # prompt_ids() for the next turn is what fmt.encode gives
    fmt, tok = chat.format, chat.tokenizer
    assert chat.prompt_ids() == fmt.encode(chat.messages, tok, add_generation_prompt=True).input_ids
    if backend.name == "llama.cpp":
        # llama.cpp's Q4_1 x Q8 dot products and transformers' dequantized float32 weights disagree
        # on a near tie for this question ("The" 25.33 / "L" 25.24 vs "L" 24.91 / "The" 24.56), so
        # instead of "Paris": the same as llama.cpp's own completion of the rendered prompt (its own
        # tokenizer, no chatfmt ids)
        own = backend.llm.create_completion(prompt1, max_tokens=24, temperature=0.0)
        assert own["choices"][0]["text"] == r1.raw_text


def test_streamed_deltas_concatenate_to_the_reply(backend: Any) -> None:
    chat = _chat(backend)
    deltas = list(chat.stream("Name three colours."))
    reply = chat.last_reply
    assert reply is not None and reply.content.strip()
    assert "".join(d.content or "" for d in deltas) == reply.content
    assert not any(d.tool_calls for d in deltas)
    _check_reply(chat, reply, chat.messages[:1], 24)


def test_a_seed_makes_sampling_reproducible(backend: Any) -> None:
    chat = _chat(backend)
    msgs = [{"role": "user", "content": "Write a short poem about the sea."}]

    def sample(seed: int) -> list[int]:
        return chat.generate(msgs, temperature=1.0, top_p=0.95, seed=seed, max_new_tokens=12).completion_ids

    first = sample(7)
    assert sample(7) == first
    assert sample(8) != first or sample(9) != first
    assert chat.messages == []  # generate() does not touch the session's history


def test_max_new_tokens_ends_with_length(backend: Any) -> None:
    chat = _chat(backend, max_new_tokens=3)
    reply = chat.send("Tell me a long story about a dragon.")
    assert reply.finish_reason == "length"
    assert reply.usage.completion_tokens == 3 == len(reply.completion_ids)
    _check_reply(chat, reply, chat.messages[:1], 3)


def test_history_fitting_drops_old_rounds_and_says_so(backend: Any) -> None:
    chat = _chat(backend, max_new_tokens=16, system="You are brief.")
    filler = "This is an old message that takes room in the context. " * 6
    for k in range(12):
        chat.messages += [
            {"role": "user", "content": f"Old question {k}. {filler}"},
            {"role": "assistant", "content": f"Old answer {k}. {filler}"},
        ]
    before = list(chat.messages)
    assert len(chat.format.encode(before, chat.tokenizer).input_ids) > N_CTX
    with pytest.warns(ChatfmtWarning, match="oldest message"):
        reply = chat.send(QUESTION)
    fit = chat.last_fit
    assert fit is not None and fit.dropped_messages > 0 and fit.dropped_messages % 2 == 0
    assert fit.messages[0] == {"role": "system", "content": "You are brief."}
    assert fit.messages[-1] == {"role": "user", "content": QUESTION}
    assert reply.usage.prompt_tokens == len(fit.ids) <= N_CTX - 16
    assert fit.ids == chat.format.encode(fit.messages, chat.tokenizer, add_generation_prompt=True).input_ids
    # the session keeps the whole conversation; only the prompt was fitted
    assert chat.messages[: len(before)] == before


# -- tools ----------------------------------------------------------------------------------------

CALLS: list[str] = []


def get_weather(city: str) -> dict:
    """Get the current weather in a city.

    Args:
        city: The city name.
    """
    CALLS.append(city)
    return {"city": city, "temp_c": 21}


def _example_round(i: int, city: str, temp: int) -> list[dict]:
    call_id = f"call_{i}"
    return [
        {"role": "user", "content": f"What is the weather in {city}?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}],
        },
        {"role": "tool", "tool_call_id": call_id, "name": "get_weather", "content": json.dumps({"city": city, "temp_c": temp})},
        {"role": "assistant", "content": f"It is {temp} degrees in {city}."},
    ]


def test_tool_loop_calls_a_python_function(backend: Any, tmp_path: Path) -> None:
    """SmolLM2 has no tool syntax of its own; rendered with Qwen2.5's format (hermes ``<tool_call>``)
    and three worked examples, greedy decoding makes it call the tool; the loop runs the function,
    feeds the result back, and the model answers with it."""
    chat = _chat(backend, format="qwen2.5", tools=[get_weather], max_new_tokens=40, system="You are a weather assistant. Use the get_weather tool.")
    for i, (city, temp) in enumerate([("Berlin", 18), ("Madrid", 27), ("Oslo", 9)]):
        chat.messages += _example_round(i, city, temp)
    n = len(chat.messages)
    CALLS.clear()
    reply = chat.send("What is the weather in Paris?")
    assert CALLS == ["Paris"]
    call_msg, tool_msg, answer = chat.messages[n + 1 :]
    assert call_msg["tool_calls"][0]["function"]["name"] == "get_weather"
    assert json.loads(call_msg["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert tool_msg == {"role": "tool", "tool_call_id": call_msg["tool_calls"][0]["id"], "name": "get_weather", "content": '{"city": "Paris", "temp_c": 21}'}
    assert reply is chat.last_reply and answer == reply.message() and not reply.tool_calls
    assert "21" in reply.content
    _check_reply(chat, reply, chat.messages[:-1], 40)

    # the saved conversation renders with the format it was made with, as the next prompt
    path = tmp_path / "conv.json"
    chat.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["tools"] == chat.tools and data["messages"] == chat.messages
    fmt = chatfmt.load_format("qwen2.5")
    assert fmt.render(data["messages"], tools=data["tools"], add_generation_prompt=True) == chat.prompt_text()
    from typer.testing import CliRunner

    from chatfmt.cli import app

    res = CliRunner().invoke(app, ["render", str(path), "--format", "qwen2.5", "--generation-prompt"])
    assert res.exit_code == 0, res.output
    assert res.output == chat.prompt_text()


def test_tool_results_fed_back_without_the_model_asking(backend: Any) -> None:
    """The loop's second half on its own: a conversation whose last assistant turn is a tool call;
    ``_run_tools`` runs the function (errors go back to the model as the result), then the model
    answers the conversation as it is."""

    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        return a / b

    chat = _chat(backend, format="qwen2.5", tools=[divide], max_new_tokens=16)
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "divide", "arguments": '{"a": 6, "b": 3}'}},
        {"id": "c2", "type": "function", "function": {"name": "divide", "arguments": '{"a": 1, "b": 0}'}},
        {"id": "c3", "type": "function", "function": {"name": "divide", "arguments": '{"a": 1}'}},
    ]
    chat.messages = [{"role": "user", "content": "Compute 6/3, 1/0 and 1/?"}, {"role": "assistant", "content": None, "tool_calls": calls}]
    assert chat._run_tools(Reply(content="", tool_calls=calls)) is True
    results = [m["content"] for m in chat.messages[2:]]
    assert results[0] == "2.0"
    assert results[1].startswith("error: ZeroDivisionError")
    assert results[2].startswith("error: TypeError")
    assert [m["tool_call_id"] for m in chat.messages[2:]] == ["c1", "c2", "c3"]
    # a tool without a Python function is left to the caller
    other = [{"id": "c4", "type": "function", "function": {"name": "unknown", "arguments": "{}"}}]
    assert chat._run_tools(Reply(content="", tool_calls=other)) is False
    n = len(chat.messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChatfmtWarning)  # nothing is dropped
        reply = chat.send(None)
    assert chat.messages[n:] == [reply.message()] and reply.content.strip()
    _check_reply(chat, reply, chat.messages[:n], 16)


def test_an_empty_chat_refuses_every_prompt_in_one_line(backend: Any, tmp_path: Path) -> None:
    from chatfmt.errors import EmptyConversationError

    chat = _chat(backend)
    calls = {
        "prompt_text": chat.prompt_text,
        "prompt_ids": chat.prompt_ids,
        "send()": lambda: chat.send(),
        "stream()": lambda: list(chat.stream()),
        "generate([])": lambda: chat.generate([]),
    }
    for name, call in calls.items():
        with pytest.raises(EmptyConversationError) as info:
            call()
        text = str(info.value)
        assert "\n" not in text and "empty" in text, name
        assert info.value.rule == "empty-conversation"
    assert chat.messages == [] and chat.last_reply is None
    # what an empty chat can do: be saved, take a system prompt (then it has a prompt), be reset
    chat.save(tmp_path / "empty.json")
    assert json.loads((tmp_path / "empty.json").read_text()) == {"messages": []}
    chat.system = "You are brief."
    assert chat.prompt_text().startswith("<|im_start|>system\nYou are brief.<|im_end|>\n")
    chat.reset()
    assert chat.messages == [{"role": "system", "content": "You are brief."}]


def test_generating_shows_no_dependency_warning(backend: Any, capfd: pytest.CaptureFixture[str]) -> None:
    """transformers 5 renamed ``generate``'s ``past_key_values`` to ``cache``; passing the old name
    warned on every reply. Every warning is let through here (``always``), none comes."""
    chat = _chat(backend, max_new_tokens=3)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chat.send("Hi!")
        chat.send("And again?")  # the second turn continues the kept KV cache
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert capfd.readouterr().err == ""
