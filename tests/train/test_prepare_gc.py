"""``prepare`` raises the garbage collector's first threshold while it runs
(``pipeline.fewer_collections``) and puts back what was there: after a run, a failed run, and the
last of overlapping runs; a threshold of 0 (automatic collection off) or a higher one is left alone."""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import chatfmt
from chatfmt.train import pipeline, prepare

TD = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"


@pytest.fixture(autouse=True)
def thresholds() -> Iterator[tuple[int, int, int]]:
    old = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*old)


def test_nested_runs_restore_at_the_last_exit() -> None:
    a, b = pipeline.fewer_collections(), pipeline.fewer_collections()
    a.__enter__()
    assert gc.get_threshold() == (pipeline.GC_THRESHOLD, 10, 10)
    b.__enter__()
    a.__exit__(None, None, None)
    assert gc.get_threshold() == (pipeline.GC_THRESHOLD, 10, 10)  # b still runs
    b.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_after_an_error() -> None:
    with pytest.raises(KeyError), pipeline.fewer_collections():
        raise KeyError("x")
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.parametrize("first", [0, pipeline.GC_THRESHOLD * 2])
def test_off_or_higher_left_alone(first: int) -> None:
    gc.set_threshold(first, 5, 5)
    with pipeline.fewer_collections():
        assert gc.get_threshold() == (first, 5, 5)
    assert gc.get_threshold() == (first, 5, 5)


def test_a_change_made_meanwhile_is_kept() -> None:
    with pipeline.fewer_collections():
        gc.set_threshold(1234, 10, 10)
    assert gc.get_threshold() == (1234, 10, 10)


def _corpus(tmp_path: Path, n: int = 3) -> Path:
    src = tmp_path / "in.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"q{k}"}, {"role": "assistant", "content": f"a{k}"}]}
        for k in range(n)
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return src


@pytest.fixture(scope="module")
def tok():
    if not (TD / "qwen2.5").exists():
        pytest.skip(f"{TD / 'qwen2.5'} is absent (the shared test data)")
    return chatfmt.load_tokenizer(TD / "qwen2.5")


def test_prepare_runs_with_the_raised_threshold_and_restores_it(tmp_path: Path, tok) -> None:
    seen: list[tuple[int, int, int]] = []
    report = prepare(
        _corpus(tmp_path),
        "qwen2.5",
        tok,
        tmp_path / "out.parquet",
        batch_size=1,
        on_record=lambda n: seen.append(gc.get_threshold()),
    )
    assert report.written == 3
    assert seen == [(pipeline.GC_THRESHOLD, 10, 10)] * 3
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.isenabled()


def test_prepare_that_fails_restores_it(tmp_path: Path, tok) -> None:
    def stop(n: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        prepare(_corpus(tmp_path), "qwen2.5", tok, tmp_path / "out.parquet", batch_size=1, on_record=stop)
    assert gc.get_threshold() == (700, 10, 10)
    assert not (tmp_path / "out.parquet").exists()


def test_overlapping_prepares_restore_at_the_end(tmp_path: Path, tok) -> None:
    """Two runs in threads, the first ending while the second runs: the threshold stays raised
    until the second ends."""
    second_started, first_done = threading.Event(), threading.Event()
    during_second: list[tuple[int, int, int]] = []

    def first(n: int) -> None:
        assert second_started.wait(30)

    def second(n: int) -> None:
        second_started.set()
        if first_done.wait(30):
            during_second.append(gc.get_threshold())

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    t = threading.Thread(
        target=prepare,
        args=(_corpus(tmp_path / "b", 1), "qwen2.5", tok, tmp_path / "b" / "o.parquet"),
        kwargs={"on_record": second},
    )
    t.start()
    prepare(_corpus(tmp_path / "a", 1), "qwen2.5", tok, tmp_path / "a" / "o.parquet", on_record=first)
    first_done.set()
    t.join(60)
    assert during_second == [(pipeline.GC_THRESHOLD, 10, 10)]
    assert gc.get_threshold() == (700, 10, 10)
