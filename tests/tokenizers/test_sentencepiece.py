"""sentencepiece adapter: the library's own encoding (what Meta, mistral-common, Baichuan2 and ChatGLM3
call), with control pieces kept out of plain text."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from chatfmt.tokenizers import _spm_proto as proto
from chatfmt.tokenizers import load_sentencepiece, load_tokenizer

from .conftest import CORPUS, baichuan_vendor_tokenizer, data, get_tokenizer

spm = pytest.importorskip("sentencepiece", reason="the sentencepiece package is not installed")

MODELS = {
    "spm:llama2": ("llama2", "tokenizer.model"),
    "spm:mistral-v3": ("mistral-7b-instruct-v0.3", "tokenizer.model"),
    "spm:mistral-v1": ("mistral-common", "tokenizer.model.v1"),
    "spm:mistral-v7": ("mistral-common", "mistral_instruct_tokenizer_241114.model.v7"),
    "spm:baichuan2": ("baichuan2", "tokenizer.model"),
    "spm:chatglm3": ("chatglm3", "tokenizer.model"),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_plain_text_is_encoded_exactly_as_sentencepiece_encodes_it(name: str):
    tok = get_tokenizer(name)
    sp = spm.SentencePieceProcessor(model_file=str(data(*MODELS[name])))
    for text in CORPUS:
        assert tok.encode_text(text) == sp.encode(text), text
        assert tok.decode(tok.encode_text(text)) == text


def test_typed_control_pieces_never_come_out_and_sentencepiece_agrees():
    tok = get_tokenizer("spm:llama2")
    assert tok.special_tokens == {"<unk>": 0, "<s>": 1, "</s>": 2}
    assert tok.encode_text("<s>") == [529, 29879, 29958]  # '▁<', 's', '>'
    assert tok.encode_text("Hello world") == [15043, 3186]
    assert (tok.bos_id, tok.eos_id, tok.add_bos, tok.add_prefix_space) == (1, 2, True, True)


def test_baichuan2_reserved_markers_are_control_and_split_when_typed():
    tok = get_tokenizer("spm:baichuan2")
    sp = spm.SentencePieceProcessor(model_file=str(data("baichuan2", "tokenizer.model")))
    assert tok.special_tokens["<reserved_106>"] == 195 and tok.special_tokens["<reserved_107>"] == 196
    assert sp.encode("<reserved_106>") == [195]  # what sentencepiece itself does with the user-defined piece
    ids = tok.encode_text("<reserved_106>")
    assert 195 not in ids and tok.decode(ids) == "<reserved_106>"
    assert tok.id_to_token(195) == "<reserved_106>" and tok.decode([195, 196]) == "<reserved_106><reserved_107>"
    assert tok.decode([195, 196], skip_special_tokens=True) == ""
    # the other user-defined pieces stay as sentencepiece matches them: "\n" is piece 5
    assert tok.added_tokens["\n"] == 5 and tok.encode_text("a\nb") == sp.encode("a\nb")
    assert (tok.add_bos, tok.add_prefix_space, tok.bos_token, tok.eos_token) == (False, False, "<s>", "</s>")


def test_baichuan2_matches_its_vendor_tokenizer_on_plain_text():
    vendor = baichuan_vendor_tokenizer()
    tok = get_tokenizer("spm:baichuan2")
    for text in CORPUS:
        assert tok.encode_text(text) == vendor.encode(text, add_special_tokens=False), text


def _chatglm_vendor():
    path = data("chatglm3", "tokenization_chatglm.py")
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("tokenization_chatglm.py imports transformers, which is not installed")
    spec = importlib.util.spec_from_file_location("chatfmt_test_tokenization_chatglm", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SPTokenizer(str(data("chatglm3", "tokenizer.model")))


def test_chatglm3_appends_its_special_tokens_after_the_vocabulary_like_its_model_code():
    vendor = _chatglm_vendor()
    tok = get_tokenizer("spm:chatglm3")
    assert tok.profile is not None and tok.profile.name == "chatglm3"
    for text, i in vendor.special_tokens.items():
        assert tok.special_tokens[text] == i
    assert tok.special_tokens["[gMASK]"] == 64790 and tok.special_tokens["<|system|>"] == 64794
    assert tok.vocab_size == vendor.n_words == 64798
    for text in CORPUS:
        assert tok.encode_text(text) == vendor.encode(text), text
    assert tok.decode([64790, 64792, 64795]) == vendor.decode([64790, 64792, 64795])
    assert (tok.bos_token, tok.eos_token, tok.add_bos) == (None, "</s>", False)


def test_chatglm3_is_recognised_by_vocabulary_size_without_its_config(tmp_path):
    shutil.copy(data("chatglm3", "tokenizer.model"), tmp_path / "tokenizer.model")
    tok = load_sentencepiece(tmp_path / "tokenizer.model")
    assert tok.profile is not None and tok.special_tokens["<|user|>"] == 64795


def test_user_defined_pieces_that_are_not_control_stay_as_mistral_common_encodes_them():
    tok = get_tokenizer("spm:mistral-v7")
    assert tok.added_tokens["[REF]"] == 750
    assert tok.encode_text("[REF]") == [29473, 750]
    assert tok.special_tokens["[INST]"] == 3 and tok.special_tokens["[SYSTEM_PROMPT]"] == 16


def test_offsets_are_characters_and_byte_fallback_pieces_share_their_character():
    tok = get_tokenizer("spm:llama2")
    enc = tok.encode_text_with_offsets("🦙 x")
    assert enc.ids == [29871, 243, 162, 169, 156, 921]
    # the dummy-prefix piece covers no character; the four bytes of the llama cover character 0
    assert enc.offsets == [(0, 0), (0, 1), (0, 1), (0, 1), (0, 1), (1, 3)]
    assert tok.encode_text_with_offsets("你好").offsets[-1] == (1, 2)


def test_prefix_space_false_drops_only_the_dummy_prefix():
    tok = get_tokenizer("spm:llama2")
    assert tok.encode_text("Hello") == [15043]  # '▁Hello'
    assert tok.encode_text("Hello", prefix_space=False) == [10994]  # 'Hello'
    assert tok.encode_text(" Hello", prefix_space=False) == [15043]
    assert tok.encode_texts(["Hello", "Hello"], prefix_space=False) == [[10994], [10994]]
    assert tok.encode_text_with_offsets("Hello", prefix_space=False).ids == [10994]
    # a model without a dummy prefix ignores the flag
    bc = get_tokenizer("spm:baichuan2")
    assert bc.encode_text("Hello", prefix_space=False) == bc.encode_text("Hello")


def test_added_tokens_of_a_config_beside_the_model_extend_the_vocabulary(tmp_path):
    shutil.copy(data("llama2", "tokenizer.model"), tmp_path / "tokenizer.model")
    shutil.copy(data("phi-3-mini", "tokenizer_config.json"), tmp_path / "tokenizer_config.json")
    tok = load_sentencepiece(tmp_path / "tokenizer.model")
    assert tok.special_tokens["<|user|>"] == 32010 and tok.vocab_size == 32011
    assert tok.eos_token == "<|endoftext|>" and not tok.add_bos
    assert 32010 not in tok.encode_text("<|user|>")


def test_plain_added_tokens_past_the_vocabulary_are_matched_and_split_the_text(tmp_path):
    shutil.copy(data("llama2", "tokenizer.model"), tmp_path / "tokenizer.model")
    decoder = {"32000": {"content": "<tool>", "special": False}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": decoder}))
    tok = load_sentencepiece(tmp_path / "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    assert tok.added_tokens["<tool>"] == 32000
    assert tok.encode_text("a <tool>b") == sp.encode("a ") + [32000] + tok.encode_text("b", prefix_space=False)
    enc = tok.encode_text_with_offsets("a <tool>b")
    assert enc.offsets[-2:] == [(2, 8), (8, 9)]
    assert tok.decode(tok.encode_text("a <tool>b")) == "a <tool>b"


def test_control_tokens_argument_marks_more_user_defined_pieces(tmp_path):
    tok = load_sentencepiece(data("mistral-common", "mistral_instruct_tokenizer_241114.model.v7"), control_tokens={"[REF]"})
    assert tok.special_tokens["[REF]"] == 750 and 750 not in tok.encode_text("[REF]")


def test_model_proto_is_patched_without_protobuf():
    raw = data("baichuan2", "tokenizer.model").read_bytes()
    info = proto.read_model(raw)
    assert len(info.pieces) == 125696 and info.pieces[195].type == proto.USER_DEFINED
    assert not info.add_dummy_prefix
    patched = proto.read_model(proto.patch_model(raw, piece_types={195: proto.CONTROL}, add_dummy_prefix=True))
    assert patched.pieces[195].type == proto.CONTROL and patched.pieces[196].type == proto.USER_DEFINED
    assert patched.add_dummy_prefix and [p.text for p in patched.pieces] == [p.text for p in info.pieces]
    llama = proto.read_model(data("llama2", "tokenizer.model").read_bytes())
    assert llama.add_dummy_prefix and llama.pieces[1].type == proto.CONTROL


def test_auto_prefers_the_vendor_sentencepiece_model_over_tokenizer_json():
    assert load_tokenizer(data("llama2")).kind == "sentencepiece"
    assert load_tokenizer(data("mistral-7b-instruct-v0.3")).kind == "sentencepiece"


def test_control_tokens_that_absorb_whitespace_come_from_the_config_beside_the_model(tmp_path):
    shutil.copy(data("llama2", "tokenizer.model"), tmp_path / "tokenizer.model")
    shutil.copy(data("phi-3-mini", "tokenizer_config.json"), tmp_path / "tokenizer_config.json")
    tok = load_sentencepiece(tmp_path / "tokenizer.model")
    assert tok.control_strip[32010] == (False, True) and tok.control_strip[2] == (False, True)  # <|user|>, </s>
    assert 32000 not in tok.control_strip and 1 not in tok.control_strip  # <|endoftext|>, <s>
    assert get_tokenizer("spm:llama2").control_strip == {}
