"""What a person reads from the CLI: tools a template leaves out said on stderr (render, encode,
prepare, chat), no user or template text ever read as Rich markup (a fuzz over every command that
prints through Rich), one token view for encode and inspect, JSON errors at their line and column,
special tokens for a bare .jinja, and ``chatfmt formats`` that fits a terminal or prints plain rows."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from chatfmt.cli import app
from chatfmt.formats import registry
from chatfmt.train.pipeline import rejects_path

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ASK = [{"role": "user", "content": "Weather in Paris?"}]
NOT_RENDERED = "chatfmt: warning: chat format"


def write(path: Path, value) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


# -- tools a template leaves out: one line on stderr -------------------------------------------------


def test_render_says_on_stderr_that_llama2_leaves_the_tools_out(tmp_path, testdata):
    conv = write(tmp_path / "c.json", {"messages": ASK, "tools": TOOLS})
    res = runner.invoke(app, ["render", str(conv), "-f", str(testdata("llama2")), "-g"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "<s>[INST] Weather in Paris? [/INST]"  # exactly the text, nothing added
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(NOT_RENDERED) and "does not render tools" in lines[0]


def test_render_with_a_tools_file_and_a_template_that_renders_them_says_nothing(tmp_path, testdata):
    conv = write(tmp_path / "c.json", ASK)
    tools = write(tmp_path / "t.json", TOOLS)
    res = runner.invoke(
        app, ["render", str(conv), "-f", str(testdata("qwen2.5")), "--tools", str(tools), "-g"]
    )
    assert res.exit_code == 0, res.output
    assert "get_weather" in res.stdout and res.stderr == ""


def test_encode_says_that_smollm2_leaves_the_tools_out(tmp_path, smollm2_gguf):
    conv = write(tmp_path / "c.json", {"messages": ASK, "tools": TOOLS})
    res = runner.invoke(
        app, ["encode", str(conv), "-f", str(smollm2_gguf), "-t", str(smollm2_gguf), "-g", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["input_ids"]
    assert "does not render tools" in res.stderr


def test_prepare_counts_records_whose_tools_were_left_out(tmp_path, testdata):
    records = [
        {"messages": [*ASK, {"role": "assistant", "content": "Sunny."}], "tools": TOOLS},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    llama2 = str(testdata("llama2"))
    res = runner.invoke(
        app,
        [
            "prepare",
            str(src),
            "-f",
            llama2,
            "-t",
            llama2,
            "-o",
            str(out),
            "-q",
            "-w",
            "1",
            "--report",
            str(report),
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(report.read_text())["not_rendered"] == {"tools": 1}
    assert "1 record(s) were written with their tools left out of the prompt" in res.stderr
    qwen = str(testdata("qwen2.5"))
    res = runner.invoke(
        app,
        [
            "prepare",
            str(src),
            "-f",
            qwen,
            "-t",
            qwen,
            "-o",
            str(tmp_path / "q.jsonl"),
            "-q",
            "-w",
            "1",
            "--report",
            str(report),
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(report.read_text())["not_rendered"] == {}
    assert "does not render" not in res.stderr


def test_prepare_can_reject_records_whose_tools_would_be_left_out(tmp_path, testdata):
    records = [
        {"messages": [*ASK, {"role": "assistant", "content": "Sunny."}], "tools": TOOLS},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    llama2 = str(testdata("llama2"))
    res = runner.invoke(
        app,
        [
            "prepare",
            str(src),
            "-f",
            llama2,
            "-t",
            llama2,
            "-o",
            str(out),
            "-q",
            "-w",
            "1",
            "--report",
            str(report),
            "--reject-unrendered-tools",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text())
    assert (data["written"], data["rejected_by_rule"], data["not_rendered"]) == (
        1,
        {"tools_not_rendered": 1},
        {},
    )
    (rej,) = [json.loads(x) for x in rejects_path(out).read_text().splitlines()]
    assert (rej["record"], rej["rule"]) == (1, "tools_not_rendered")
    assert "1 tool(s) would be left out of the prompt" in rej["message"]


@pytest.mark.slow
def test_chat_says_that_the_default_model_leaves_the_tools_out(tmp_path, smollm2_gguf):
    # the warning comes from rendering the prompt, whatever the backend: llama.cpp reads the GGUF as it
    # is (transformers dequantizes it first, most of this file's slow run)
    pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (pip install 'chatfmt[llama]')"
    )
    tools = write(tmp_path / "t.json", TOOLS)
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("chatfmt")),
            "chat",
            "--model",
            str(smollm2_gguf),
            "--backend",
            "llama.cpp",
            "--temperature",
            "0",
            "--max-new-tokens",
            "4",
            "--tools",
            str(tools),
            "-p",
            "Hi",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "does not render tools" in proc.stderr


# -- Rich markup: user and template text is text ---------------------------------------------------


def test_detect_prints_llama2s_inst_tags(testdata):
    res = runner.invoke(app, ["detect", str(testdata("llama2"))])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 0, res.output
    assert "llama-2" in res.stdout


def test_diff_prints_bracketed_template_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("x[bold].jinja").write_text("{% for m in messages %}[/INST][bold]{{ m.content }}[/]{% endfor %}")
    res = runner.invoke(app, ["diff", "chatml", "x[bold].jinja"])
    assert res.exit_code == 1, res.output
    assert "[/INST][bold]" in res.stdout and "x[bold].jinja" in res.stdout


BRACKETS = (
    st.lists(
        st.sampled_from(
            [
                *"[]/INSTboldred=#:x ",
                "[/INST]",
                "[bold]",
                "[/]",
                "[/bold]",
                "[link=x]",
                ":smile:",
                "[[",
                "\\[",
            ]
        ),
        min_size=1,
        max_size=12,
    )
    .map("".join)
    .filter(lambda s: s.strip())
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=BRACKETS, literal=BRACKETS)
def test_no_command_reads_user_or_template_text_as_markup(tmp_path_factory, content, literal):
    """Bracket-heavy contents and template literals through render, diff and lint: every command
    finishes (no MarkupError), and what the user wrote is printed as written."""
    d = tmp_path_factory.mktemp("fuzz")
    squeezed = content.replace(" ", "") or "x"
    conv = write(
        d / "c.json", [{"role": "user", "content": content}, {"role": "assistant", "content": squeezed}]
    )
    template = d / "t.jinja"
    template.write_text(
        "{% for m in messages %}{{ " + json.dumps(literal) + " }}{{ m.content }}\n{% endfor %}"
    )
    results = {
        "render": runner.invoke(app, ["render", str(conv), "-f", str(template)]),
        "diff": runner.invoke(app, ["diff", "chatml", str(template)]),
        "lint": runner.invoke(app, ["lint", str(template), "--no-reference"]),
    }
    for name, res in results.items():
        assert res.exception is None or isinstance(res.exception, SystemExit), (name, repr(res.exception))
        assert res.exit_code in (0, 1), (name, res.output)
    assert results["render"].stdout == "".join(f"{literal}{m}\n" for m in (content, squeezed))
    assert literal.replace(" ", "·")[:20] in results["diff"].stdout.replace("\n", "").replace(
        "│", ""
    ).replace(" ", "")


MARKUP_SAMPLES = [
    "[/INST]",
    "[bold]x[/bold]",
    "[/]",
    "[link=https://x]y",
    ":smile:[[",
    "\\[red]z",
    "[b]你好[/b]",
]


def test_detect_and_lint_print_bracketed_templates_as_written(tmp_path):
    # ChatML but for a bracket-heavy line before the messages when tools are given: detect calls it
    # equivalent to chatml except the tool probes and prints those probes' excerpts
    template = tmp_path / "t.jinja"
    template.write_text(
        "{% if tools %}" + "".join(MARKUP_SAMPLES[:4]) + "{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    results = {
        cmd: runner.invoke(app, [cmd, str(template)], env={"COLUMNS": "400"}) for cmd in ("detect", "lint")
    }
    for cmd, res in results.items():
        assert res.exception is None or isinstance(res.exception, SystemExit), (cmd, repr(res.exception))
        assert res.exit_code in (0, 1), res.output
    assert "equivalent to chatml" in results["detect"].stdout
    assert "".join(MARKUP_SAMPLES[:3]) in results["detect"].stdout


def test_encode_and_inspect_print_bracketed_contents_as_written(tmp_path, testdata):
    qwen = str(testdata("qwen2.5"))
    messages = [
        m
        for text in MARKUP_SAMPLES
        for m in ({"role": "user", "content": text}, {"role": "assistant", "content": text})
    ]
    conv = write(tmp_path / "c.json", messages)
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    out = tmp_path / "p.jsonl"
    assert (
        runner.invoke(
            app, ["prepare", str(src), "-f", "qwen2.5", "-t", qwen, "-o", str(out), "-q", "-w", "1"]
        ).exit_code
        == 0
    )
    for args in (["encode", str(conv), "-f", "qwen2.5", "-t", qwen], ["inspect", str(out), "-t", qwen]):
        res = runner.invoke(app, args)
        assert res.exception is None or isinstance(res.exception, SystemExit), (args, repr(res.exception))
        assert res.exit_code == 0, res.output
        shown = ANSI.sub("", res.stdout).replace("\n", "").replace("…", "")
        for text in MARKUP_SAMPLES:
            assert text in shown, (args[0], text)


# -- one token view: encode shows what inspect shows --------------------------------------------------


CHINESE = "龘靐齉，𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🤖 你好"


def test_encode_shows_characters_split_over_byte_tokens_whole(tmp_path, testdata, shared_tokenizer):
    tok = shared_tokenizer(testdata("qwen2.5"))
    ids = tok.encode_text(CHINESE)
    assert any("\ufffd" in tok.decode([i]) for i in ids), "the sample no longer splits a character"
    messages = [{"role": "user", "content": CHINESE}, {"role": "assistant", "content": CHINESE}]
    conv = write(tmp_path / "c.json", messages)
    res = runner.invoke(app, ["encode", str(conv), "-f", "qwen2.5", "-t", str(testdata("qwen2.5"))])
    assert res.exit_code == 0, res.output
    shown = ANSI.sub("", res.stdout)
    assert "\ufffd" not in shown
    # each character whole, on the token that completes it ("…" marks the byte tokens before it)
    assert CHINESE.replace(" ", "·") in shown.replace("\n", "").replace("…", "")
    # and it is the very view inspect gives for the same ids
    out, src = tmp_path / "p.jsonl", tmp_path / "in.jsonl"
    src.write_text(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    assert (
        runner.invoke(
            app,
            [
                "prepare",
                str(src),
                "-f",
                "qwen2.5",
                "-t",
                str(testdata("qwen2.5")),
                "-o",
                str(out),
                "-q",
                "-w",
                "1",
            ],
        ).exit_code
        == 0
    )
    inspected = ANSI.sub("", runner.invoke(app, ["inspect", str(out), "-t", str(testdata("qwen2.5"))]).stdout)
    tokens_part = shown.split("\n\n")[0].split("\n", 1)[1]  # after the legend, before the counts
    assert tokens_part.strip() in inspected


# -- JSON errors at their line and column -------------------------------------------------------------


def test_prepare_reports_bad_json_in_a_json_array_at_line_and_column(tmp_path, testdata):
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    lines = ["["] + [json.dumps(good) + "," for _ in range(13)] + ['{"messages": [', "       oops]}", "]"]
    src = tmp_path / "in.json"
    src.write_text("\n".join(lines) + "\n")
    assert src.read_text().splitlines()[15] == "       oops]}"  # line 16, column 8
    out = tmp_path / "out.jsonl"
    qwen = str(testdata("qwen2.5"))
    runner.invoke(app, ["prepare", str(src), "-f", "qwen2.5", "-t", qwen, "-o", str(out), "-q", "-w", "1"])
    rejects = [json.loads(x) for x in rejects_path(out).read_text().splitlines()]
    assert any("line 16, column 8" in r["message"] for r in rejects), rejects


def test_a_json_file_read_in_small_chunks_still_reports_the_right_line(tmp_path, monkeypatch):
    from chatfmt.train import readers

    monkeypatch.setattr(readers, "JSON_CHUNK", 7)  # lines cross chunk boundaries many times
    src = tmp_path / "in.json"
    text = '[\n  {"a": 1},\n  {"b": 2},\n\n  {"c": 3,, "d": 4}\n]\n'
    src.write_text(text)
    with pytest.raises(json.JSONDecodeError) as where:
        json.loads(text)
    errors = [r.error for r in readers.read_json(src) if r.error]
    assert errors and f"line {where.value.lineno}, column {where.value.colno}" in errors[0], errors


def test_render_reports_bad_json_at_line_and_column(tmp_path):
    src = tmp_path / "c.json"
    src.write_text('[\n  {"role": "user",\n   "content": "x"}\n  {"role": "assistant", "content": "y"}\n]')
    res = runner.invoke(app, ["render", str(src), "-f", "chatml"])
    assert res.exit_code == 2
    assert f"{src}:4: invalid JSON: Expecting ',' delimiter (column 3)" in res.stderr


def test_tool_call_arguments_report_line_and_column(tmp_path):
    from chatfmt.messages import ValidationError, parse_record

    record = {
        "messages": [
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"type": "function", "function": {"name": "f", "arguments": '{\n  "a": 1,\n  "b": }'}}
                ],
            },
        ]
    }
    with pytest.raises(ValidationError, match=r"line 3, column 8"):
        parse_record(record)


def test_a_broken_tokenizer_config_names_line_and_column(tmp_path):
    from chatfmt import load_format
    from chatfmt.errors import FormatError

    cfg = tmp_path / "tokenizer_config.json"
    cfg.write_text('{\n  "chat_template": "{{ messages }}",\n  "bos_token": <s>\n}')
    with pytest.raises(FormatError, match=r"tokenizer_config.json:3: invalid JSON: .*\(column 16\)"):
        load_format(cfg)


# -- special tokens of a bare .jinja --------------------------------------------------------------------


@pytest.fixture()
def bare_llama2(tmp_path, testdata) -> Path:
    path = tmp_path / "bare" / "llama2.jinja"
    path.parent.mkdir()
    shutil.copy(testdata("llama2", "chat_template.jinja"), path)
    return path


def test_a_bare_jinja_without_tokens_says_which_flag_gives_them(tmp_path, bare_llama2):
    conv = write(tmp_path / "c.json", [{"role": "user", "content": "Hi"}])
    res = runner.invoke(app, ["render", str(conv), "-f", str(bare_llama2)])
    assert res.exit_code == 2
    assert len(res.stderr.splitlines()) == 1
    assert "'bos_token'" in res.stderr and "--tokenizer" in res.stderr and "is undefined" not in res.stderr


def test_a_bare_jinja_takes_the_tokens_from_the_tokenizer_flag(tmp_path, bare_llama2, testdata):
    conv = write(tmp_path / "c.json", [{"role": "user", "content": "Hi"}])
    res = runner.invoke(app, ["render", str(conv), "-f", str(bare_llama2), "-t", str(testdata("llama2"))])
    assert res.exit_code == 0, res.output
    assert res.stdout == "<s>[INST] Hi [/INST]"
    res = runner.invoke(
        app, ["encode", str(conv), "-f", str(bare_llama2), "-t", str(testdata("llama2")), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["input_ids"][:2] == [1, 518]  # Meta's <s> then ▁[


def test_a_bare_jinja_takes_the_tokens_from_a_sibling_tokenizer_config(tmp_path, bare_llama2, testdata):
    from chatfmt import load_format

    shutil.copy(testdata("llama2", "tokenizer_config.json"), bare_llama2.parent / "tokenizer_config.json")
    fmt = load_format(bare_llama2)
    assert fmt.render([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]) == (
        "<s>[INST] Hi [/INST] Yo </s>"
    )


def test_prepare_with_a_bare_jinja_takes_the_tokens_from_the_tokenizer(tmp_path, bare_llama2, testdata):
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    for workers in ("1", "2"):
        res = runner.invoke(
            app,
            [
                "prepare",
                str(src),
                "-f",
                str(bare_llama2),
                "-t",
                str(testdata("llama2")),
                "-o",
                str(out),
                "-q",
                "-w",
                workers,
            ],
        )
        assert res.exit_code == 0, res.output
        row = json.loads(out.read_text().splitlines()[0])
        assert row["input_ids"][0] == 1 and row["input_ids"][-1] == 2


def test_python_encode_of_a_bare_jinja_takes_the_tokens_from_its_tokenizer(bare_llama2, testdata):
    from chatfmt import load_format

    enc = load_format(bare_llama2).encode([{"role": "user", "content": "Hi"}], testdata("llama2"))
    assert enc.input_ids[:2] == [1, 518]


def test_a_format_with_its_own_tokens_is_kept_as_it_is(smollm2_gguf, testdata, shared_tokenizer):
    from chatfmt import load_format
    from chatfmt.formats.loader import with_tokenizer_tokens

    fmt = load_format(smollm2_gguf)
    assert with_tokenizer_tokens(fmt, shared_tokenizer(smollm2_gguf)) is fmt
    qwen = load_format("qwen2.5")  # a built-in has its tokens in its code
    assert with_tokenizer_tokens(qwen, shared_tokenizer(testdata("qwen2.5"))) is qwen


def test_a_bare_jinja_that_prints_bos_token_alone_says_it_rendered_nothing(tmp_path, testdata):
    template = tmp_path / "b.jinja"
    template.write_text(
        "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
    )
    conv = write(tmp_path / "c.json", [{"role": "user", "content": "Hi"}])
    res = runner.invoke(app, ["render", str(conv), "-f", str(template)])
    assert res.exit_code == 0 and res.stdout == "<user>Hi"
    assert res.stderr.count("chatfmt: warning:") == 1
    assert "reads 'bos_token' and 'eos_token', which it was not given: rendered as nothing" in res.stderr
    res = runner.invoke(app, ["render", str(conv), "-f", str(template), "-t", str(testdata("llama2"))])
    assert res.exit_code == 0 and res.stdout == "<s><user>Hi</s>" and res.stderr == ""


# -- chatfmt formats ---------------------------------------------------------------------------------


def test_formats_piped_prints_one_plain_row_a_format():
    res = runner.invoke(app, ["formats"])
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0].split("\t") == ["name", "aliases", "system", "tools", "reasoning", "stop", "description"]
    assert [ln.split("\t")[0] for ln in lines[1:]] == registry.names()
    assert all(len(ln.split("\t")) == 7 for ln in lines)
    assert "\x1b" not in res.stdout


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_formats_in_a_terminal_fits_its_width(width):
    res = runner.invoke(
        app, ["formats"], env={"FORCE_COLOR": "1", "COLUMNS": str(width), "TTY_COMPATIBLE": "1"}
    )
    assert res.exit_code == 0
    text = ANSI.sub("", res.stdout)
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= width
    names = [ln.split()[0] for ln in lines if ln and ln.split()[0] in registry.names()]
    assert names == registry.names()  # one row a format, names whole


def test_formats_piped_through_a_real_pipe_is_not_wrapped():
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("chatfmt")), "formats"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "40"},
        timeout=120,
    )
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == len(registry.names()) + 1
