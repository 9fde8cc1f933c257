"""A transformers tokenizer object wrapped: transformers' own plain-text encoding, control ids kept out."""

from __future__ import annotations

from chatfmt.tokenizers import TransformersTokenizer, load_tokenizer

from .conftest import CORPUS, baichuan_vendor_tokenizer, data, get_tokenizer, need


def test_fast_tokenizer_encodes_as_transformers_and_offsets_are_its_own():
    need("transformers")
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(data("qwen2.5")))
    tok = get_tokenizer("hf:qwen2.5")
    assert isinstance(tok, TransformersTokenizer) and tok.kind == "transformers"
    for text in CORPUS:
        assert tok.encode_text(text) == ref.encode(text, add_special_tokens=False, split_special_tokens=True)
        assert tok.encode_text(text) == get_tokenizer("vm:qwen2.5").encode_text(text)
    assert tok.encode_texts(CORPUS) == [tok.encode_text(t) for t in CORPUS]
    enc = tok.encode_text_with_offsets("Hello 🦙")
    assert enc.offsets == [tuple(o) for o in ref("Hello 🦙", add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    assert tok.special_tokens["<|im_end|>"] == 151645 and tok.added_tokens["<tool_call>"] == 151657
    assert (tok.eos_token, tok.bos_token, tok.add_bos, tok.vocab_size) == ("<|im_end|>", None, False, 151665)


def test_a_control_id_transformers_lets_through_is_encoded_as_text_instead():
    tok = get_tokenizer("hf:phi3-fast")
    raw = tok.backend
    assert raw.encode("a</s>b", add_special_tokens=False, split_special_tokens=True) == [263, 2, 289]
    assert tok.encode_text("a</s>b") == [263, 829, 29879, 29958, 29890]
    assert tok.encode_texts(["a</s>b"]) == [[263, 829, 29879, 29958, 29890]]
    assert tok.encode_text_with_offsets("a</s>b").ids == [263, 829, 29879, 29958, 29890]


def test_prefix_space_false_on_a_fast_tokenizer():
    tok = get_tokenizer("hf:phi3-fast")
    assert tok.add_prefix_space
    assert tok.encode_text("Hello") == [15043] and tok.encode_text("Hello", prefix_space=False) == [10994]


def test_slow_sentencepiece_tokenizer_gets_its_control_pieces_from_the_model():
    tok = get_tokenizer("hf:baichuan2-slow")
    vendor = tok.backend
    assert vendor.encode("<reserved_106>", add_special_tokens=False, split_special_tokens=True) == [195]
    assert tok.special_tokens["<reserved_106>"] == 195
    ids = tok.encode_text("Hi <reserved_106>")
    assert 195 not in ids and ids == get_tokenizer("spm:baichuan2").encode_text("Hi <reserved_106>")
    for text in CORPUS:
        assert tok.encode_text(text) == get_tokenizer("spm:baichuan2").encode_text(text)


def test_slow_tokenizer_offsets_come_from_incremental_decoding():
    tok = get_tokenizer("hf:baichuan2-slow")
    enc = tok.encode_text_with_offsets("你好 🦙 world")
    assert enc.ids == get_tokenizer("spm:baichuan2").encode_text("你好 🦙 world")
    assert enc.offsets[0][0] == 0 and enc.offsets[-1][1] == len("你好 🦙 world")


def test_load_tokenizer_wraps_transformers_objects():
    need("transformers")
    from transformers import PreTrainedTokenizerFast

    obj = PreTrainedTokenizerFast(tokenizer_file=str(data("phi-3-mini", "tokenizer.json")))
    assert isinstance(load_tokenizer(obj), TransformersTokenizer)
    assert isinstance(load_tokenizer(baichuan_vendor_tokenizer()), TransformersTokenizer)


def test_phi3_role_markers_absorb_the_whitespace_after_them_as_in_its_other_files():
    """Phi-3's added tokens carry rstrip: a wrapped transformers tokenizer reports it, and Phi-3's own
    template gives the same ids through it as through its tokenizer.json (and llama.cpp)."""
    import chatfmt

    tok = get_tokenizer("hf:phi3-fast")
    assert tok.control_strip[32010] == (False, True) and 1 not in tok.control_strip  # <|user|>, not <s>
    fmt = chatfmt.load_format(data("phi-3-mini"))
    messages = [{"role": "user", "content": "  Hello!\n"}, {"role": "assistant", "content": "Hi"}]
    want = [32010, 15043, 29991, 13, 32007, 32001, 6324, 32007, 32000]
    assert fmt.encode(messages, tok).input_ids == fmt.encode(messages, get_tokenizer("json:phi3")).input_ids == want
