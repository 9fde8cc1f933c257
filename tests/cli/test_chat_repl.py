"""``chatfmt chat``: the REPL driven through a real pseudo-terminal as a person would use it, ``-p``
and a question on stdin answered once (plain and ``--json``), all against the real default model
(SmolLM2-135M-Instruct, transformers backend, greedy); option errors as one line, exit 2."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import chatfmt
from chatfmt.cli import app
from chatfmt.cli.chat import _DeltaPrinter, reply_json, safe_text
from chatfmt.inference.stream import Reply, Usage
from chatfmt.toolcalls import Delta, ToolCallDelta

runner = CliRunner()
CHATFMT = Path(sys.executable).with_name("chatfmt")
GREEDY = ["--backend", "transformers", "--temperature", "0", "--max-new-tokens", "24"]
QUESTION = "What is the capital of France?"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: the REPL's prompt as prompt_toolkit draws it (colour codes around "you"; the space after ">" is
#: drawn as a cursor move)
PROMPT = r"you(?:\x1b\[[0-9;]*m)*>"
LOAD_TIMEOUT = 300
#: the end of /tokens' id lines (Rich closes the dim style after the last id)
PROMPT_IDS = r"prompt ids:[0-9 ]*\x1b\[0m"
GENERATED_IDS = r"generated ids:[0-9 ]*\x1b\[0m"


def plain(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "")


def run_chat(args: list[str], *, input: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHATFMT), "chat", *args], input=input, capture_output=True, text=True, timeout=LOAD_TIMEOUT,
        env={**os.environ, **(env or {})},
    )


# -- one question ---------------------------------------------------------------------------------


@pytest.mark.slow  # a third load of the real model; -p in the default run: test_template_kwargs.py's
# test_cli_chat_says_a_keyword_the_format_does_not_read (in-process), one question: the stdin test below
def test_p_prints_only_the_answer_and_exits_0(smollm2_gguf):
    proc = run_chat(["--model", str(smollm2_gguf), *GREEDY, "-p", QUESTION])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "The capital of France is Paris.\n"


def test_stdin_question_with_json_gives_the_whole_message_and_the_exact_prompt_length(smollm2_gguf):
    # stdin that is not a terminal, no -p: all of it is one question (the final newline dropped)
    proc = run_chat(["--model", str(smollm2_gguf), *GREEDY, "--json"], input=QUESTION + "\n")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"role", "content", "reasoning_content", "tool_calls", "finish_reason", "usage", "warnings"}
    assert out["role"] == "assistant"
    assert "Paris" in out["content"]
    assert out["reasoning_content"] is None and out["tool_calls"] == [] and out["warnings"] == []
    assert out["finish_reason"] == "stop"
    # the model saw exactly chatfmt's encoding of the question in the GGUF's own format
    fmt, tok = chatfmt.load_format(smollm2_gguf), chatfmt.load_tokenizer(smollm2_gguf)
    expected = fmt.encode([{"role": "user", "content": QUESTION}], tok, add_generation_prompt=True).input_ids
    usage = out["usage"]
    assert usage["prompt_tokens"] == len(expected)
    assert 0 < usage["completion_tokens"] <= 24
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["-p", "hi", "--model", "/nonexistent/model.gguf"], None, "/nonexistent/model.gguf: no such model"),
        (["-p", "hi", "--max-new-tokens", "0"], None, "--max-new-tokens must be at least 1"),
        (["-p", "hi", "--temperature", "-1"], None, "--temperature must be >= 0"),
        (["-p", "hi", "--ctx", "1"], None, "--ctx must be at least 2"),
        ([], "  \n", "stdin is empty"),
        (["-p", "hi", "--tools", "/nonexistent/tools.json"], None, "/nonexistent/tools.json: no such file"),
    ],
)
def test_option_errors_are_one_line_on_stderr_exit_2(args, stdin, message):
    res = runner.invoke(app, ["chat", *args], input=stdin)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chatfmt: error: ")
    assert message in lines[0]
    assert res.stdout == ""


def test_tools_file_must_be_a_list_of_definitions(tmp_path):
    bad = tmp_path / "tools.json"
    bad.write_text('{"name": "x"}')
    res = runner.invoke(app, ["chat", "-p", "hi", "--tools", str(bad)])
    assert res.exit_code == 2
    assert "expected a JSON list of tool definitions" in res.stderr


# -- pieces of the terminal view (no model) ------------------------------------------------------


def test_terminal_escapes_from_the_model_are_made_visible():
    assert safe_text("a\x1b[31mb\n\tc\u200bd") == "a<U+001B>[31mb\n\tc<U+200B>d"
    assert safe_text("héllo 😀\n") == "héllo 😀\n"


def test_streamed_reasoning_content_and_tool_calls_each_start_a_line():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200, soft_wrap=True)
    p = _DeltaPrinter(console)
    p.label()
    for d in [
        Delta(reasoning_content="think"),
        Delta(reasoning_content="ing"),
        Delta(content="Hel"),
        Delta(content="lo"),
        Delta(tool_calls=[ToolCallDelta(0, "c0", "get_weather", '{"city": ')]),
        Delta(tool_calls=[ToolCallDelta(0, None, None, '"Paris"}')]),
        Delta(tool_calls=[ToolCallDelta(1, "c1", "now", "{}")]),
    ]:
        p.show(d)
    p.end()
    assert buf.getvalue() == (
        'assistant> thinking\nHello\ntool call: get_weather({"city": "Paris"})\ntool call: now({})\n'
    )


def test_json_reply_keeps_every_field():
    reply = Reply(
        content="",
        reasoning_content="r",
        tool_calls=[{"id": "c0", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        finish_reason="tool_calls",
        usage=Usage(10, 3, 4),
    )
    out = reply_json(reply)
    assert out["content"] == "" and out["reasoning_content"] == "r"
    assert out["tool_calls"][0]["function"]["name"] == "f"
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13, "prompt_tokens_details": {"cached_tokens": 4}}


# -- the REPL through a pseudo-terminal ----------------------------------------------------------

LONG_QUESTION = (
    "Please name three colours that you like, separated by commas, and say nothing else at all: "
    "no greeting, no explanation and no other words."
)


class Session:
    """One ``chatfmt chat`` in a pseudo-terminal; ``step`` types a line and waits for the markers
    (regexes) in the output and then the next prompt, returning the output without ANSI codes."""

    def __init__(self, child):
        self.child = child
        self.raw = ""  # the last step's output as the terminal got it

    def step(self, line: str, *markers: str, timeout: float = 120) -> str:
        self.child.sendline(line)
        return self.wait(*markers, timeout=timeout)

    def wait(self, *markers: str, timeout: float = 120) -> str:
        seen = []
        for m in (*markers, PROMPT):
            self.child.expect(m, timeout=timeout)
            seen.append(self.child.before + self.child.after)
        self.raw = "".join(seen)
        return plain(self.raw)


def test_repl_in_a_terminal(smollm2_gguf, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    fmt, tok = chatfmt.load_format(smollm2_gguf), chatfmt.load_tokenizer(smollm2_gguf)
    first_prompt = fmt.encode([{"role": "user", "content": QUESTION}], tok, add_generation_prompt=True).input_ids
    cache = tmp_path / "cache"  # the input history goes here (the model is given by path)
    env = {**os.environ, "CHATFMT_CACHE": str(cache), "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    # context 80, 24 new tokens: 56 for the prompt; the first round (37 tokens) fits alone, not
    # with the long second question (71 tokens), so the second reply drops the first round
    child = pexpect.spawn(
        str(CHATFMT), ["chat", "--model", str(smollm2_gguf), *GREEDY, "--ctx", "80"],
        env=env, encoding="utf-8", dimensions=(50, 250), timeout=LOAD_TIMEOUT,
    )
    child.logfile_read = sys.stdout  # the transcript, shown when the test fails
    s = Session(child)
    try:
        out = s.wait("chatfmt chat", "context 80 tokens", timeout=LOAD_TIMEOUT)
        assert "/help" in out

        out = s.step("/help", "/tokens")
        assert all(c in out for c in ("/reset", "/system", "/save FILE", "/format", "/quit"))
        s.step("/tokens", "nothing to show yet")

        # a question: the answer streams after the coloured role label
        s.child.sendline(QUESTION)
        s.child.expect(r"\x1b\[[0-9;]*m" + "assistant" + r"\x1b\[0m> ")
        out = s.wait("Paris")
        assert "The capital of France is Paris." in out

        # what the model saw for that reply and what it generated: control tokens marked (bold
        # underlined magenta), counts, ids; the prompt ids are chatfmt's encoding of the question
        out = s.step("/tokens", GENERATED_IDS)
        assert "\x1b[1;4;35m<|im_start|>\x1b[0m" in s.raw
        assert f"user\n{QUESTION}<|im_end|>" in out and "Paris.<|im_end|>" in out
        counts = re.search(r"(\d+) prompt tokens \(\d+ control, marked\) \+ (\d+) generated", out)
        prompt_ids = [int(x) for x in re.search(r"prompt ids:([0-9 ]+)", out).group(1).split()]
        generated_ids = [int(x) for x in re.search(r"generated ids:([0-9 ]+)", out).group(1).split()]
        assert prompt_ids == first_prompt
        assert int(counts.group(1)) == len(prompt_ids) and int(counts.group(2)) == len(generated_ids)
        assert tok.decode(generated_ids[:-1]) == "The capital of France is Paris."
        assert generated_ids[-1] == tok.special_tokens["<|im_end|>"]

        out = s.step("/system Answer briefly.", "system prompt set")
        out = s.step("/system", "Answer briefly.")

        # formats: a built-in, a bad name (an error, nothing changes), the GGUF's own back
        s.step("/format chatml", "format: chatml")
        out = s.step("/format no-such-format-xyz", "error: ")
        out = s.step("/format baichuan2", "error: ")  # ids 195/196 mean something else in this vocabulary
        assert "format 'baichuan2' does not fit the tokenizer" in " ".join(out.split())
        s.step("/format", "format: chatml")
        s.step(f"/format {smollm2_gguf}", "format: SmolLM2-135M-Instruct")

        # the second round does not fit with the first: the first is left out, and we are told
        s.child.sendline(LONG_QUESTION)
        s.child.expect("assistant")
        out = s.wait(r"oldest message\(s\) after the system prompt were left out")
        assert "2 oldest message(s)" in out
        out = s.step("/tokens", GENERATED_IDS)
        assert "Paris" not in out and "Answer briefly." in out and "left out to fit" in out

        # /save keeps the whole conversation (fitting only shortens the prompt)
        saved = tmp_path / "conv.json"
        s.step(f"/save {saved}", r"saved 5 message\(s\)")
        data = json.loads(saved.read_text())
        assert set(data) == {"messages"}
        assert [m["role"] for m in data["messages"]] == ["system", "user", "assistant", "user", "assistant"]
        assert data["messages"][0]["content"] == "Answer briefly."
        assert data["messages"][2]["content"] == "The capital of France is Paris."
        assert data["messages"][3]["content"] == LONG_QUESTION

        # input history: Up recalls the last line; Ctrl-C drops it and gives a fresh prompt
        child.send("\x1b[A")
        child.expect(re.escape(f"/save {saved}"))
        child.send("\x03")
        s.wait()

        out = s.step("/bogus", "unknown command /bogus")
        out = s.step("/reset", "conversation cleared")
        assert "system prompt kept" in out
        out = s.step("/tokens", PROMPT_IDS)
        assert "generated" not in out
        ids = [int(x) for x in re.search(r"prompt ids:([0-9 ]+)", out).group(1).split()]

        child.sendline("/quit")
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0

    # after /reset the model would see the system prompt and the generation prompt, as chatfmt encodes them
    expected = fmt.encode([{"role": "system", "content": "Answer briefly."}], tok, add_generation_prompt=True).input_ids
    assert ids == expected

    # the saved conversation is what every other command reads
    res = runner.invoke(app, ["render", str(saved), "--format", str(smollm2_gguf)])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>\n")
    assert "<|im_start|>assistant\nThe capital of France is Paris.<|im_end|>" in res.stdout

    history = (cache / "chat_history").read_text()
    assert QUESTION in history and "/format chatml" in history
