"""Encodings a thread is done with are kept and freed together once enough tokens are held, only in
threads that asked for it (chatfmt.held); prepare's output is the same either way."""

from __future__ import annotations

import gc
import json
import threading
import weakref

import pytest

import chatfmt.encode as encode_module
from chatfmt import held
from chatfmt.held import Hold, hold_in_this_thread, let_go, release_this_thread

from .conftest import byte_level_doc


class _Enc:
    """Stands for a tokenizers Encoding: a length in tokens, and weak references to tell when it is freed."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _batch(*sizes: int) -> tuple[list[_Enc], list[weakref.ref[_Enc]]]:
    encs = [_Enc(n) for n in sizes]
    return encs, [weakref.ref(e) for e in encs]


def _alive(refs: list[weakref.ref[_Enc]]) -> int:
    gc.collect()
    return sum(r() is not None for r in refs)


def test_a_thread_that_did_not_ask_keeps_nothing():
    release_this_thread()
    encs, refs = _batch(10, 20)
    let_go(encs)
    del encs
    assert _alive(refs) == 0


def test_encodings_are_kept_until_the_limit_in_tokens_then_freed_together():
    hold = hold_in_this_thread(100)
    try:
        first, first_refs = _batch(30, 30)
        let_go(first)
        del first
        assert _alive(first_refs) == 2 and hold.tokens == 60
        second, second_refs = _batch(39)
        let_go(second)
        del second
        assert _alive(first_refs + second_refs) == 3 and hold.tokens == 99
        third, third_refs = _batch(1)
        let_go(third)  # 100 tokens: all freed at once
        del third
        assert _alive(first_refs + second_refs + third_refs) == 0 and hold.tokens == 0 and hold.items == []
    finally:
        release_this_thread()


def test_release_frees_what_is_held_and_the_thread_holds_nothing_more():
    hold_in_this_thread(10**9)
    encs, refs = _batch(5)
    let_go(encs)
    del encs
    assert _alive(refs) == 1
    release_this_thread()
    assert _alive(refs) == 0
    again, again_refs = _batch(5)
    let_go(again)
    del again
    assert _alive(again_refs) == 0


def test_each_thread_has_its_own_hold():
    hold_in_this_thread(10**9)
    try:
        seen: list[bool] = []

        def other() -> None:
            encs, refs = _batch(7)
            let_go(encs)  # this thread did not ask: nothing kept
            del encs
            seen.append(_alive(refs) == 0)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert seen == [True]
    finally:
        release_this_thread()


def test_a_hold_without_a_limit_uses_the_module_default(monkeypatch):
    monkeypatch.setattr(held, "HOLD_TOKENS", 3)
    assert Hold().limit == 3 and Hold(8).limit == 8


def test_prepare_writes_the_same_file_with_and_without_holding_encodings(tmp_path, monkeypatch):
    from chatfmt import load_format, prepare
    from chatfmt.tokenizers import HFTokenizer

    pytest.importorskip("pyarrow")
    pytest.importorskip("tokenizers")
    tok = HFTokenizer(byte_level_doc({"type": "NFC"}))
    fmt = load_format("chatml")
    src = tmp_path / "in.jsonl"
    with src.open("w") as f:
        for i in range(700):  # three batches and a bit: the last-batch release runs
            msgs = [
                {"role": "user", "content": f"hello {i} café"},
                {"role": "assistant", "content": "well" * (i % 7)},
            ]
            f.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
    prepare(src, fmt, tok, tmp_path / "held.parquet")
    monkeypatch.setattr(encode_module, "let_go", lambda encs: None)
    prepare(src, fmt, tok, tmp_path / "freed.parquet")
    assert (tmp_path / "held.parquet").read_bytes() == (tmp_path / "freed.parquet").read_bytes()
