"""Texts already in a tokenizer's Unicode normal form are encoded without its normalizer: the same ids
and offsets as the tokenizer itself gives, for every text (chatfmt.tokenizers.normal_form)."""

from __future__ import annotations

import json
import pickle
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatfmt.tokenizers import HFTokenizer
from chatfmt.tokenizers.normal_form import FORMS, NormalFormSkip, normal_form, tables_agree

from ..conftest import byte_level_doc
from .conftest import data

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import normalizers  # noqa: E402


def _byte_level_doc(normalizer: dict | None) -> dict:
    return byte_level_doc(normalizer, merges=[["h", "e"], ["l", "l"], ["he", "ll"], ["Ã", "©"], ["Ġ", "w"]])


#: texts in NFC (ASCII and not), and texts that are not (a combining acute after "e"; a Hangul
#: syllable spelled in jamo; a singleton that NFC replaces: the Kelvin sign; marks out of order)
TEXTS = [
    "<|im_start|>user\nhello world<|im_end|>\n",
    "<|im_start|>assistant\ncafé, naïve, Ñandú<|im_end|>\n",
    "<|im_start|>user\n你好，世界！🦙<|im_end|>\n",
    "<|im_start|>user\ncafe\u0301<|im_end|>\n",
    "<|im_start|>user\n\u1100\u1161 is \uac00<|im_end|>\n",
    "<|im_start|>user\n5 \u212a<|im_end|>\n",
    "<|im_start|>user\na\u0301\u0323<|im_end|>\n",
    "",
]


def _encodings(encoder, texts):
    return [(e.ids, e.offsets) for e in encoder.encode_batch(texts, add_special_tokens=False)]


@pytest.mark.parametrize(
    ("normalizer", "form"),
    [
        ({"type": "NFC"}, "NFC"),
        ({"type": "NFKC"}, "NFKC"),
        ({"type": "Sequence", "normalizers": [{"type": "NFD"}]}, "NFD"),
        ({"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]}, None),
        ({"type": "Lowercase"}, None),
        (None, None),
    ],
)
def test_only_a_normalizer_that_is_a_unicode_normal_form_alone_is_skipped(normalizer, form):
    assert normal_form({"normalizer": normalizer}) == form
    tok = HFTokenizer(_byte_level_doc(normalizer))
    encoder = tok.whole_text_encoder()
    if form is None:
        assert encoder is tok.whole_text_backend()
    else:
        assert isinstance(encoder, NormalFormSkip) and encoder.form == form


@pytest.mark.parametrize("form", FORMS)
def test_every_text_gets_the_ids_and_offsets_the_tokenizer_itself_gives(form):
    tok = HFTokenizer(_byte_level_doc({"type": form}))
    skip = tok.whole_text_encoder()
    assert isinstance(skip, NormalFormSkip)
    expected = _encodings(tok.whole_text_backend(), TEXTS)
    assert _encodings(skip, TEXTS) == expected
    for text, want in zip(TEXTS, expected):  # one at a time too: all in the form, or none
        assert _encodings(skip, [text]) == [want]
    # the texts that are in the form went to the copy without the normalizer
    assert [skip.in_form(t) for t in TEXTS] == [unicodedata.is_normalized(form, t) for t in TEXTS]  # type: ignore[arg-type]


def test_the_tokenizer_with_its_normalizer_is_built_only_when_a_text_needs_it():
    tok = HFTokenizer(_byte_level_doc({"type": "NFC"}))
    skip = tok.whole_text_encoder()
    skip.encode_batch(TEXTS[:3])
    assert tok._whole is False  # not built: every text was in NFC
    skip.encode_batch(TEXTS[3:4])
    assert tok._whole is not False and tok._whole is not None


def test_a_pickled_tokenizer_carries_none_of_its_copies_and_builds_them_again():
    tok = HFTokenizer(_byte_level_doc({"type": "NFC"}))
    before = _encodings(tok.whole_text_encoder(), TEXTS)
    tok.whole_text_backend()
    state = tok.__getstate__()
    assert state["_whole"] is False and state["_whole_encoder"] is False and state["_noprefix"] is None
    again = pickle.loads(pickle.dumps(tok))
    assert _encodings(again.whole_text_encoder(), TEXTS) == before


def test_tokenizers_treats_every_code_point_python_does_not_know_as_python_does():
    """The condition under which Python's is_normalized may judge any text (else only ASCII text
    skips the normalizer): true for the installed tokenizers, whose tables are older than Python's."""
    for form in FORMS:
        assert tables_agree(form), form


def _disagreeing() -> list[str]:
    """The characters beside which tokenizers' NFC and Python's differ (ones Python's newer tables
    know as combining marks), found over all of Unicode."""
    nfc = normalizers.NFC()
    found = []
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    for i in range(0, len(chars), 4096):
        part = chars[i : i + 4096]
        probe = "".join(f"a{c}\u0323" for c in part)
        if nfc.normalize_str(probe) != unicodedata.normalize("NFC", probe):
            found += [
                c
                for c in part
                if nfc.normalize_str(f"a{c}\u0323") != unicodedata.normalize("NFC", f"a{c}\u0323")
            ]
    return found


@pytest.fixture(scope="module")
def disagreeing() -> list[str]:
    return _disagreeing()


def test_where_the_two_tables_differ_python_never_calls_a_text_normalized_that_tokenizers_changes(
    disagreeing,
):
    assert disagreeing, "the tables agree everywhere: this test no longer exercises anything"
    nfc = normalizers.NFC()
    marks = ["", "\u0301", "\u0323", "\u0316", "\u05b0", "\u0e38"]  # classes 230, 220, 220, 10, 103
    for c in disagreeing:
        for before in marks:
            for after in marks:
                for s in (
                    f"a{before}{c}{after}",
                    f"{c}{before}{after}",
                    f"\u1100{c}\u1161",
                    f"e{c}{c}{after}",
                ):
                    if unicodedata.is_normalized("NFC", s):
                        assert nfc.normalize_str(s) == s, (hex(ord(c)), s)


_ALPHABET = st.sampled_from(
    list("aeiouAZ09 \n<|>")
    + list("éñüÅ你好世界가각")
    + [
        "\u0301",
        "\u0323",
        "\u0316",
        "\u0300",
        "\u05b0",
        "\u1100",
        "\u1161",
        "\u11a8",
        "\u212a",
        "\u2126",
        "\u00c5",
        "\u0041\u030a",
        "🦙",
        "\u0898",
        "\u1ac1",
        "\u09fe",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=12).map("".join))
def test_a_text_python_calls_normalized_is_one_tokenizers_leaves_alone(text):
    for form in FORMS:
        if unicodedata.is_normalized(form, text):  # type: ignore[arg-type]
            assert getattr(normalizers, form)().normalize_str(text) == text


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_ALPHABET, max_size=10).map("".join), min_size=1, max_size=4))
def test_the_encodings_equal_the_tokenizers_own_on_any_text(texts):
    tok = _qwen_like()
    texts = [f"<|im_start|>user\n{t}<|im_end|>\n" for t in texts]
    assert _encodings(tok.whole_text_encoder(), texts) == _encodings(tok.whole_text_backend(), texts)


_QWEN_LIKE: list[HFTokenizer] = []


def _qwen_like() -> HFTokenizer:
    if not _QWEN_LIKE:
        _QWEN_LIKE.append(HFTokenizer(_byte_level_doc({"type": "NFC"})))
    return _QWEN_LIKE[0]


def test_qwen_encodes_a_corpus_the_same_with_and_without_its_nfc_normalizer():
    from chatfmt.tokenizers import load_tokenizer

    tok = load_tokenizer(data("qwen2.5"))
    assert json.loads(tok.backend.to_str())["normalizer"] == {"type": "NFC"}
    skip = tok.whole_text_encoder()
    assert isinstance(skip, NormalFormSkip)
    texts = TEXTS + [t * 20 for t in TEXTS]
    assert _encodings(skip, texts) == _encodings(tok.whole_text_backend(), texts)
