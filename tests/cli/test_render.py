import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatfmt.cli import app

runner = CliRunner()
TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"


def _write(tmp_path: Path, obj, name="conv.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return str(p)


def test_render_prints_exactly_the_rendered_text_with_nothing_added(tmp_path):
    path = _write(tmp_path, [{"role": "user", "content": "hi"}])
    res = runner.invoke(app, ["render", path, "--format", "chatml", "--generation-prompt"])
    assert res.exit_code == 0
    assert res.stdout == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_render_json_wraps_the_text(tmp_path):
    path = _write(tmp_path, {"messages": [{"role": "user", "content": "你好"}]})
    res = runner.invoke(app, ["render", path, "-f", "chatml", "--json"])
    assert json.loads(res.stdout) == {"text": "<|im_start|>user\n你好<|im_end|>\n"}


def test_render_json_segments_show_literal_ids_for_baichuan2(tmp_path):
    path = _write(tmp_path, [{"role": "user", "content": "hi"}])
    res = runner.invoke(app, ["render", path, "-f", "baichuan2", "--json", "--segments", "-g"])
    assert res.exit_code == 0, res.output
    segs = json.loads(res.stdout)["segments"]
    assert segs[0]["token_ids"] == [195]
    assert segs[-1]["token_ids"] == [196]


def test_render_reads_every_record_kind(tmp_path):
    records = [
        {"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"prompt": "q", "response": "a"},
        {"instruction": "q", "input": "", "output": "a"},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
    ]
    outs = set()
    for k, rec in enumerate(records):
        res = runner.invoke(app, ["render", _write(tmp_path, rec, f"r{k}.json"), "-f", "chatml"])
        assert res.exit_code == 0, res.output
        outs.add(res.stdout)
    assert outs == {"<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n"}


def test_render_takes_tools_from_a_file(tmp_path):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    path = _write(tmp_path, [{"role": "user", "content": "hi"}])
    tpath = _write(tmp_path, tools, "tools.json")
    res = runner.invoke(app, ["render", path, "-f", "qwen2.5", "--tools", tpath])
    assert res.exit_code == 0
    assert '{"type": "function", "function": {"name": "f"' in res.stdout


def test_render_reads_stdin():
    res = runner.invoke(app, ["render", "-", "-f", "chatml"], input='[{"role": "user", "content": "x"}]')
    assert res.stdout == "<|im_start|>user\nx<|im_end|>\n"


def test_render_bundled_example_with_every_builtin():
    for name in ("chatml", "qwen2.5", "llama-2", "alpaca", "baichuan2", "chatglm3"):
        res = runner.invoke(app, ["render", "--example", "-f", name, "-g"])
        assert res.exit_code == 0, (name, res.output)
        assert "What is the capital of France?" in res.stdout


USER_ERRORS = [
    ('[{"role": "user", "content": "x"}, {"role": "system", "content": "s"}]', "message 1"),
    ('[{"role": "wizard", "content": "x"}]', "unknown role"),
    ("[]", "empty"),
    ('{"messages": [', "<stdin>:1: invalid JSON"),
]


@pytest.mark.parametrize(("payload", "needle"), USER_ERRORS)
def test_user_errors_are_one_line_on_stderr_with_exit_code_2(payload, needle):
    # the CLI in this process; the test below runs one of them through a real ``python -m``
    res = runner.invoke(app, ["render", "-", "-f", "chatml"], input=payload)
    assert res.exit_code == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert needle in lines[0]


def test_a_user_error_in_a_real_process_is_one_line_on_stderr_with_exit_code_2():
    payload, needle = USER_ERRORS[0]
    proc = subprocess.run(
        [sys.executable, "-m", "chatfmt.cli", "render", "-", "-f", "chatml"],
        input=payload,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_unknown_format_suggests_close_names(tmp_path):
    res = runner.invoke(app, ["render", "--example", "-f", "qwen25"])
    assert res.exit_code == 2
    assert "qwen2.5" in res.output


def test_missing_file_is_a_user_error():
    res = runner.invoke(app, ["render", "/nonexistent/conv.json", "-f", "chatml"])
    assert res.exit_code == 2
    assert "no such file" in res.output


@pytest.mark.skipif(not (TESTDATA / "qwen2.5" / "tokenizer_config.json").is_file(), reason="../shared/testdata/qwen2.5 is absent")
def test_render_with_a_tokenizer_config_template_equals_the_builtin(tmp_path):
    path = _write(tmp_path, [{"role": "user", "content": "hi"}])
    a = runner.invoke(app, ["render", path, "-f", str(TESTDATA / "qwen2.5" / "tokenizer_config.json"), "-g"])
    b = runner.invoke(app, ["render", path, "-f", "qwen2.5", "-g"])
    assert a.exit_code == 0 and a.stdout == b.stdout


def test_formats_lists_the_builtins():
    res = runner.invoke(app, ["formats", "--json"])
    names = {f["name"] for f in json.loads(res.stdout)}
    assert {"chatml", "qwen2.5", "llama-2", "alpaca", "baichuan2", "chatglm3"} <= names
