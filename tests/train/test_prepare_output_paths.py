"""Where ``prepare`` writes (issue 18): an unusable output or rejects path is refused before any work,
temporaries of dead runs are collected by the next run into the same place, the new output and
rejects are moved into place together, and every write error names the file it was writing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatfmt.cli import app
from chatfmt.train import prepare
from chatfmt.train.pipeline import OutputError

TD = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
QWEN = TD / "qwen2.5"
pytestmark = pytest.mark.skipif(not QWEN.is_dir(), reason="../shared/testdata/qwen2.5 is absent")

GOOD = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}'


@pytest.fixture(scope="module")
def qwen(shared_tokenizer):
    """The format and tokenizer (the tokenizer loaded once for the session; prepare takes objects too)."""
    import chatfmt

    return chatfmt.load_format("qwen2.5"), shared_tokenizer(QWEN)


def corpus(tmp_path: Path, lines: list[str]) -> Path:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(x + "\n" for x in lines))
    return src


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# -- refused before any work ----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["output", "rejects"])
def test_a_directory_where_the_output_or_rejects_goes_is_refused_before_the_tokenizer_or_input_is_read(tmp_path, which):
    out = tmp_path / "o.jsonl"
    blocked = out if which == "output" else tmp_path / "o.jsonl.rejects.jsonl"
    blocked.mkdir()
    what = "the output" if which == "output" else "the rejects file"
    # neither the input nor the tokenizer exists: the output is checked first
    with pytest.raises(OutputError, match=f"^cannot write {what} {blocked}: it is a directory$"):
        prepare(tmp_path / "missing.jsonl", "qwen2.5", tmp_path / "no-tokenizer", out)
    assert names(tmp_path) == [blocked.name]


def test_a_fifo_or_device_as_the_output_is_refused_rather_than_renamed_over(tmp_path, qwen):
    fifo = tmp_path / "o.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="it is not a regular file"):
        prepare(corpus(tmp_path, [GOOD]), *qwen, fifo)
    assert names(tmp_path) == ["in.jsonl", "o.jsonl"]
    with pytest.raises(OutputError, match="^cannot write the output /dev/null: it is not a regular file"):
        prepare(tmp_path / "in.jsonl", *qwen, "/dev/null")
    assert Path("/dev/null").is_char_device()


@contextmanager
def unwritable(path: Path) -> Iterator[str]:
    """``path`` made unwritable for this process: ``chmod a-w`` for a user, ``chattr +i`` (immutable)
    for root, who writes anywhere else; yields the error the system gives."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield "Permission denied"
        finally:
            path.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("running as root, and chattr +i does not work here")
    try:
        yield "Operation not permitted"
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_directory_this_user_cannot_write_is_one_line_and_exit_2_before_any_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    out = locked / "o.jsonl"
    # the input and the tokenizer do not exist: the output is checked before either is opened
    cmd = [sys.executable, "-m", "chatfmt.cli", "prepare", "missing.jsonl", "-f", "qwen2.5", "-t", "/nonexistent",
           "-q", "-w", "1", "-o", str(out)]
    with unwritable(locked) as error:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [f"chatfmt: error: cannot write the output {out}: {error} (in {locked})"]
    assert names(locked) == []


def test_an_output_that_cannot_be_replaced_is_refused_before_any_work(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chattr +i needs root")
    out = tmp_path / "o.jsonl"
    out.write_text("old output\n")
    with unwritable(out), pytest.raises(OutputError, match=f"^cannot write the output {out}: it is immutable"):
        prepare(tmp_path / "missing.jsonl", "qwen2.5", tmp_path / "no-tokenizer", out)
    assert out.read_text() == "old output\n"
    assert names(tmp_path) == ["o.jsonl"]


# -- stale temporaries ----------------------------------------------------------------------------


def test_temporaries_of_dead_runs_are_removed_by_the_next_run_and_a_live_runs_are_kept(tmp_path, qwen):
    src = corpus(tmp_path, [GOOD])
    dead, alive = dead_pid(), os.getppid()
    stale = [f".o.jsonl.{dead}.tmp", f".o.jsonl.rejects.jsonl.{dead}.tmp"]
    live = [f".o.jsonl.{alive}.tmp", f".o.jsonl.rejects.jsonl.{alive}.tmp"]
    other = [f".other.jsonl.{dead}.tmp", f".o.jsonl.x{dead}.tmp", f".o.jsonl.{dead}.bak"]
    for name in stale + live + other:
        (tmp_path / name).write_text("left behind")
    prepare(src, *qwen, tmp_path / "o.jsonl", workers=1)
    assert names(tmp_path) == sorted(["in.jsonl", "o.jsonl", "o.jsonl.rejects.jsonl", *live, *other])


def test_a_run_that_died_between_moving_rejects_and_output_gets_the_old_rejects_back_at_the_next_run(tmp_path):
    src = corpus(tmp_path, [GOOD])
    out, rejects = tmp_path / "o.jsonl", tmp_path / "o.jsonl.rejects.jsonl"
    out.write_text("old output\n")
    pid = dead_pid()
    # what a run killed after its new rejects went into place, before its output did, leaves
    (tmp_path / f".o.jsonl.rejects.jsonl.{pid}.bak").write_text("old rejects\n")
    rejects.write_text("new rejects of the dead run\n")
    (tmp_path / f".o.jsonl.{pid}.tmp").write_text("new output of the dead run\n")
    with pytest.raises(Exception, match="no-tokenizer"):  # the next run fails early, after the cleanup
        prepare(src, "qwen2.5", tmp_path / "no-tokenizer", out)
    assert (out.read_text(), rejects.read_text()) == ("old output\n", "old rejects\n")
    assert names(tmp_path) == ["in.jsonl", "o.jsonl", "o.jsonl.rejects.jsonl"]


# -- output and rejects together ------------------------------------------------------------------


def test_an_output_that_cannot_be_replaced_at_the_end_leaves_the_old_output_and_old_rejects(tmp_path, qwen):
    src = corpus(tmp_path, [GOOD, "{nope", GOOD])
    out, rejects = tmp_path / "o.jsonl", tmp_path / "o.jsonl.rejects.jsonl"
    rejects.write_text("old rejects\n")

    def block_the_output(n: int) -> None:  # something takes the output's place during the run
        out.mkdir(exist_ok=True)
        (out / "keep").write_text("x")

    with pytest.raises(OutputError, match=f"^cannot write the output {out}: "):
        prepare(src, *qwen, out, workers=1, on_record=block_the_output)
    assert rejects.read_text() == "old rejects\n"
    assert names(tmp_path) == ["in.jsonl", "o.jsonl", "o.jsonl.rejects.jsonl"]


def test_a_run_without_an_old_rejects_file_leaves_none_when_its_output_cannot_be_replaced(tmp_path, qwen):
    src = corpus(tmp_path, ["{nope", GOOD])
    out = tmp_path / "o.jsonl"
    with pytest.raises(OutputError):
        prepare(src, *qwen, out, workers=1, on_record=lambda n: out.mkdir(exist_ok=True))
    assert names(tmp_path) == ["in.jsonl", "o.jsonl"] and out.is_dir()


def test_a_successful_run_replaces_both_and_leaves_no_backup(tmp_path, qwen):
    src = corpus(tmp_path, [GOOD, "{nope"])
    out, rejects = tmp_path / "o.jsonl", tmp_path / "o.jsonl.rejects.jsonl"
    out.write_text("old output\n")
    rejects.write_text("old rejects\n")
    report = prepare(src, *qwen, out, workers=1)
    assert (report.written, report.rejected) == (1, 1)
    assert [json.loads(x)["rule"] for x in rejects.read_text().splitlines()] == ["json"]
    assert len(out.read_text().splitlines()) == 1
    assert names(tmp_path) == ["in.jsonl", "o.jsonl", "o.jsonl.rejects.jsonl"]


# -- write errors name their file -----------------------------------------------------------------


def test_a_report_that_cannot_be_written_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus(tmp_path, [GOOD])
    res = CliRunner().invoke(app, ["prepare", "in.jsonl", "-f", "qwen2.5", "-t", str(QWEN), "-o", "o.jsonl", "-q",
                                   "--report", "/dev/full"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "chatfmt: error: cannot write the report /dev/full: No space left on device (the output o.jsonl is written)"
    ]
