"""Inspecting prepared rows: token texts decoded as a stream, rows read from JSONL and Parquet (plain
and packed) into views with the right labels, positions and control flags, and an HTML page that
is escaped, self-contained and marks what the labels say."""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.train import prepare
from chatfmt.train.inspect import (
    IGNORE_INDEX,
    InspectError,
    decode_pieces,
    html_page,
    inspect_rows,
    read_rows,
    row_view,
    visible,
)

TD = Path(os.environ.get("CHATFMT_TESTDATA") or Path(__file__).resolve().parents[2].parent / "shared" / "testdata")

RECORDS = [
    {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say <script>alert(1)</script> héllo 😀"},
        {"role": "assistant", "content": "ok\n\tdone"},
    ]},
    {"instruction": "Say yes", "output": "yes"},
    {"prompt": "2+2?", "response": "4"},
]


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the reference data lives in <repo>/../shared/testdata)")
    return path


@pytest.fixture(scope="module")
def qwen_tok():
    return chatfmt.load_tokenizer(need(TD / "qwen2.5"))


@pytest.fixture(scope="module")
def llama2_tok():
    return chatfmt.load_tokenizer(need(TD / "llama2" / "tokenizer.model"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inspect") / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    return path


def expected_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(str(path)).to_pylist()
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- decoding --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_pieces_join_to_the_decoded_text_byte_level_bpe(qwen_tok, text):
    ids = qwen_tok.encode_text(text)
    pieces = decode_pieces(qwen_tok, ids)
    assert "".join(p for p, _ in pieces) == qwen_tok.decode(ids)
    assert all(p == "" for p, partial in pieces if partial)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_pieces_join_to_the_decoded_text_sentencepiece(llama2_tok, text):
    ids = llama2_tok.encode_text(text)
    assert "".join(p for p, _ in decode_pieces(llama2_tok, ids)) == llama2_tok.decode(ids)


def test_a_character_split_over_byte_tokens_shows_on_the_token_that_completes_it(llama2_tok):
    ids = llama2_tok.encode_text("a😀b")  # sentencepiece byte fallback: four <0x..> tokens for the emoji
    pieces = decode_pieces(llama2_tok, ids)
    partial = [k for k, (_, p) in enumerate(pieces) if p]
    assert len(partial) == 3
    assert pieces[partial[-1] + 1][0].endswith("😀")


def test_sentencepiece_word_pieces_keep_their_leading_space(llama2_tok):
    ids = llama2_tok.encode_text("hello big world")
    assert [p for p, _ in decode_pieces(llama2_tok, ids)][1:] == [" big", " world"]


def test_visible_shows_whitespace_and_neutralises_terminal_escapes():
    assert visible("a b\n\tc\r") == "a·b↵→c␍"
    assert visible("\x1b[31mred") == "<U+001B>[31mred"
    assert visible("zero\u200bwidth") == "zero<U+200B>width"


# -- reading rows ----------------------------------------------------------------------------


@pytest.mark.parametrize("out_name", ["out.jsonl", "out.parquet"])
def test_rows_read_back_as_prepare_wrote_them(qwen_tok, inputs, tmp_path, out_name):
    out = tmp_path / out_name
    prepare(inputs, "qwen2.5", qwen_tok, out, batch_size=1)  # Parquet: one row group per record
    rows = expected_rows(out)
    assert list(read_rows(out)) == list(enumerate(rows))
    assert list(read_rows(out, start=1, limit=1)) == [(1, rows[1])]
    assert list(read_rows(out, start=2)) == [(2, rows[2])]
    assert list(read_rows(out, start=5)) == []


@pytest.mark.parametrize("out_name", ["out.jsonl", "out.parquet"])
def test_a_plain_row_view_carries_labels_control_flags_and_source(qwen_tok, inputs, tmp_path, out_name):
    out = tmp_path / out_name
    prepare(inputs, "qwen2.5", qwen_tok, out)
    rows = expected_rows(out)
    views = inspect_rows(out, qwen_tok)
    assert [v.index for v in views] == [0, 1, 2]
    for view, row in zip(views, rows):
        assert not view.packed and len(view.sequences) == 1
        seq = view.sequences[0]
        assert (seq.source, seq.record) == (row["source"], row["record"])
        assert [t.id for t in seq.tokens] == row["input_ids"]
        assert [t.label for t in seq.tokens] == row["labels"]
        assert [t.control for t in seq.tokens] == [i in qwen_tok.control_ids for i in row["input_ids"]]
        assert [t.position for t in seq.tokens] == list(range(len(row["input_ids"])))
        assert view.trained == sum(x != IGNORE_INDEX for x in row["labels"])
        assert "".join(t.text for t in seq.tokens) == qwen_tok.decode(row["input_ids"])
    assert any(t.text == "<|im_end|>" and t.trained and t.control for t in views[1].sequences[0].tokens)


def test_a_packed_row_view_splits_at_the_sequence_boundaries(qwen_tok, inputs, tmp_path):
    out = tmp_path / "packed.parquet"
    prepare(inputs, "qwen2.5", qwen_tok, out, pack=4096)
    (row,) = expected_rows(out)
    (view,) = inspect_rows(out, qwen_tok)
    assert view.packed and [len(s.tokens) for s in view.sequences] == row["seq_lengths"]
    assert [(s.source, s.record) for s in view.sequences] == list(zip(row["sources"], row["records"]))
    assert [t.position_id for s in view.sequences for t in s.tokens] == row["position_ids"]
    assert [t.position for s in view.sequences for t in s.tokens] == list(range(row["length"]))
    assert [t.label for s in view.sequences for t in s.tokens] == row["labels"]


def test_without_a_tokenizer_a_view_has_ids_only():
    view = row_view({"input_ids": [5, 6], "labels": [-100, 6], "source": "f", "record": 1}, 0)
    assert [t.text for t in view.sequences[0].tokens] == [None, None]
    assert view.trained == 1 and not view.decoded


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"labels": [1]}, "'input_ids' must be a list of integers"),
        ({"input_ids": [1, 2], "labels": [1]}, "2 input_ids but 1 labels"),
        ({"input_ids": [1, "x"], "labels": [1, 2]}, "'input_ids' must be a list of integers"),
        ({"input_ids": [1, 2], "labels": [1, 2], "seq_lens": [1, 2]}, "do not add up"),
        ({"input_ids": [1, 2], "labels": [1, 2], "seq_lens": [1, 1], "sources": ["a"], "records": [1, 2]},
         "2 seq_lens but 1 sources"),
    ],
)
def test_a_row_that_is_not_prepare_output_is_an_error_naming_the_row(row, message):
    with pytest.raises(InspectError, match=message) as e:
        row_view(row, 7, source="data.jsonl")
    assert "data.jsonl: row 7" in str(e.value)


def test_bad_jsonl_is_an_error_naming_the_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"input_ids": [1], "labels": [1]}\n\n{oops\n')
    with pytest.raises(InspectError, match=r"x\.jsonl:3: invalid JSON"):
        list(read_rows(p))
    p.write_text("[1, 2]\n")
    with pytest.raises(InspectError, match=r"x\.jsonl:1: expected a JSON object"):
        list(read_rows(p))
    with pytest.raises(InspectError, match="no such file"):
        list(read_rows(tmp_path / "missing.parquet"))


# -- HTML ------------------------------------------------------------------------------------


class PageParser(HTMLParser):
    """Collects the token boxes (class, title, text), the tags seen and the example blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.boxes: list[dict] = []
        self.seqs = 0
        self.metas: list[dict] = []
        self._box: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "meta":
            self.metas.append(a)
        classes = (a.get("class") or "").split()
        if tag == "div" and "seq" in classes:
            self.seqs += 1
        if tag == "span" and "tok" in classes and "title" in a:
            self._box = {"classes": classes, "title": a["title"], "text": ""}
            self.boxes.append(self._box)

    def handle_endtag(self, tag):
        if tag == "span":
            self._box = None

    def handle_data(self, data):
        if self._box is not None:
            self._box["text"] += data


def parse(page: str) -> PageParser:
    p = PageParser()
    p.feed(page)
    p.close()
    return p


def test_the_page_has_one_box_a_token_marked_as_the_labels_say(qwen_tok, inputs, tmp_path):
    out = tmp_path / "out.jsonl"
    prepare(inputs, "qwen2.5", qwen_tok, out)
    views = inspect_rows(out, qwen_tok)
    page = parse(html_page(views))
    tokens = [t for v in views for s in v.sequences for t in s.tokens]
    assert len(page.boxes) == len(tokens)
    for box, t in zip(page.boxes, tokens):
        assert ("t" in box["classes"]) == t.trained
        assert ("c" in box["classes"]) == t.control
        assert box["title"].startswith(f"id {t.id} · label {t.label} · position {t.position}")
    texts = "".join(b["text"] for b in page.boxes)
    assert "<script>alert(1)</script>" in texts.replace("·", " ")  # shown as text ...
    assert "script" not in page.tags  # ... never as an element


def test_the_page_is_self_contained_and_forbids_scripts(qwen_tok, inputs, tmp_path):
    out = tmp_path / "out.jsonl"
    prepare(inputs, "qwen2.5", qwen_tok, out)
    text = html_page(inspect_rows(out, qwen_tok))
    page = parse(text)
    assert not {"script", "link", "img", "iframe", "object"} & set(page.tags)
    assert "http:" not in text and "https:" not in text and " src=" not in text
    csp = [m["content"] for m in page.metas if m.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]


def test_hostile_sources_and_token_texts_are_escaped():
    row = {"input_ids": [1, 2], "labels": [-100, 2], "source": '"><script>x</script>', "record": 1}

    class Tok:
        control_ids = frozenset({1})

        def decode(self, ids):
            return "".join({1: '<b title="x">', 2: "</span><script>"}[i] for i in ids)

    page = parse(html_page([row_view(row, 0, Tok())], title="<i>t</i>"))
    assert not {"script", "b", "i"} & set(page.tags)
    assert [b["text"] for b in page.boxes] == ['<b·title="x">', "</span><script>"]


def test_a_packed_row_shows_each_example_in_its_own_block(qwen_tok, inputs, tmp_path):
    out = tmp_path / "packed.jsonl"
    prepare(inputs, "qwen2.5", qwen_tok, out, pack=4096)
    views = inspect_rows(out, qwen_tok)
    page = parse(html_page(views))
    assert page.seqs == len(views[0].sequences) == 3
    assert "position id 0" in page.boxes[len(views[0].sequences[0].tokens)]["title"]
