"""``chatfmt prepare`` on a disk that fills up mid-run: one clean error line, exit 2, and no output
or temporary file left. The full disk is simulated with ``RLIMIT_FSIZE`` in a child process (writes
past the limit fail with EFBIG, through the same ``OSError`` path as ENOSPC); SIGXFSZ is ignored so
the write fails instead of killing the process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

GOOD = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}'

CHILD = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    from chatfmt.cli import app
    sys.argv = ["chatfmt", "prepare", "in.jsonl", "-f", "qwen2.5", "-t", sys.argv[1], "-o", sys.argv[2], "-q", "--workers", "1"]
    app()
""")


@pytest.mark.parametrize("out", ["o.jsonl", "o.parquet"])
def test_a_full_disk_midway_is_one_clean_error_and_leaves_nothing(tmp_path, testdata, out):
    if out.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    (tmp_path / "in.jsonl").write_text((GOOD + "\n") * 20_000)  # ~2 MB of rows out, limit 200 kB
    res = subprocess.run([sys.executable, "-c", CHILD, str(testdata("qwen2.5")), out], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"chatfmt: error: cannot write the output {out}: "), res.stderr[-2000:]
    assert "File too large" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_the_rejects_file_filling_the_disk_is_named_as_such(tmp_path, testdata):
    (tmp_path / "in.jsonl").write_text((GOOD + "\n") + "{not json\n" * 4_000)  # ~500 kB of rejects, limit 200 kB
    res = subprocess.run([sys.executable, "-c", CHILD, str(testdata("qwen2.5")), "o.jsonl"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines() == ["chatfmt: error: cannot write the rejects file o.jsonl.rejects.jsonl: File too large"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
