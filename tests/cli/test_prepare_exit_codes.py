"""``chatfmt prepare`` exit codes: 0 when something was written, 1 when nothing was (every record
rejected, or no records), 2 for a usage or input error; ``--help`` lists them; ``--ignore-key``
lets a key that means something else through."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatfmt.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def qwen(testdata) -> Path:
    return testdata("qwen2.5")


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def run(qwen: Path, *args: str):
    return runner.invoke(app, ["prepare", *args, "-f", "qwen2.5", "-t", str(qwen)])


GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
NO_CONTENT = {"messages": [{"role": "user"}, {"role": "assistant", "content": "hello"}]}
MASKED = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "mask": 1}]}


def test_prepare_exits_0_when_some_records_are_written_even_with_rejections(qwen, tmp_path):
    res = run(qwen, str(write_jsonl(tmp_path / "in.jsonl", [GOOD, NO_CONTENT])), "-o", str(tmp_path / "o.jsonl"))
    assert res.exit_code == 0, res.output
    assert "written 1, rejected 1 (content: 1)" in res.stdout


def test_prepare_exits_1_when_every_record_is_rejected_and_still_writes_the_rejects(qwen, tmp_path):
    out = tmp_path / "o.jsonl"
    res = run(qwen, str(write_jsonl(tmp_path / "in.jsonl", [NO_CONTENT, MASKED])), "-o", str(out))
    assert res.exit_code == 1, res.output
    assert "prepare wrote nothing: every record was rejected" in res.stderr
    rules = [json.loads(x)["rule"] for x in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
    assert rules == ["content", "loss_key"] and out.read_text() == ""


def test_prepare_exits_1_for_inputs_without_records(qwen, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    res = run(qwen, str(empty), "-o", str(tmp_path / "o.jsonl"))
    assert res.exit_code == 1 and "the inputs hold no records" in res.stderr


def test_prepare_exits_2_for_a_usage_error(qwen, tmp_path):
    res = run(qwen, str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o.jsonl"))
    assert res.exit_code == 2 and not (tmp_path / "o.jsonl").exists()


def test_prepare_help_documents_the_exit_codes_and_ignore_key():
    res = runner.invoke(app, ["prepare", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    text = " ".join(res.stdout.split())
    for needle in ("Exit codes", "0 = at least one example written", "1 = nothing written", "2 = a usage or input error", "--ignore-key"):
        assert needle in text, needle


def test_ignore_key_lets_a_key_that_means_something_else_through(qwen, tmp_path):
    res = run(qwen, str(write_jsonl(tmp_path / "in.jsonl", [MASKED])), "-o", str(tmp_path / "o.jsonl"), "--ignore-key", "mask")
    assert res.exit_code == 0, res.output
    assert "written 1, rejected 0" in res.stdout
