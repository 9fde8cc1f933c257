"""``prepare`` keeps its resident memory flat as the input grows: records that are encoded and written
(render, tokenize, label, Parquet row groups), not only read. The bound is a ratio between two runs in
fresh processes, one on five times the input of the other; no time is measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QWEN = REPO.parent / "shared" / "testdata" / "qwen2.5"

CHILD = """
import json, resource, sys
from chatfmt.train import prepare
r = prepare(sys.argv[1], "qwen2.5", sys.argv[2], sys.argv[3], workers=1)
print(json.dumps({"written": r.written, "tokens": r.tokens_total,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def write_records(path: Path, n: int) -> None:
    """``n`` multi-turn conversations of ~2 KB, English and Chinese, all encoded (none rejected)."""
    with path.open("w", encoding="utf-8") as f:
        for k in range(n):
            msgs = [{"role": "system", "content": f"You are assistant number {k % 7}."}]
            for t in range(1 + k % 5):
                msgs.append(
                    {
                        "role": "user",
                        "content": f"Question {k}.{t}: how do tokenizers split 中文文本 and code? " * 3,
                    }
                )
                msgs.append(
                    {
                        "role": "assistant",
                        "content": f"Answer {k}.{t}: by merges learned from bytes; 按字节合并。 " * 4,
                    }
                )
            f.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")


def run_child(src: Path, out: Path) -> dict[str, int]:
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(QWEN), str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_peak_rss_of_prepare_is_flat_in_the_input_size(tmp_path: Path) -> None:
    if not QWEN.is_dir():
        pytest.skip(f"{QWEN} is absent (the reference data lives in <repo>/../shared/testdata)")
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    write_records(small, 4_000)
    write_records(large, 20_000)
    a = run_child(small, tmp_path / "a.parquet")
    b = run_child(large, tmp_path / "b.parquet")
    assert (a["written"], b["written"]) == (4_000, 20_000)
    assert b["tokens"] > 4.9 * a["tokens"]
    # five times the records and tokens; the peak may differ by the size of one batch's encodings and
    # the allocator's slack, not by the input: holding the rows (or the encodings) until the end would
    # show as more than twice the small run's peak here
    assert b["maxrss_kb"] < 1.25 * a["maxrss_kb"], (a, b)
