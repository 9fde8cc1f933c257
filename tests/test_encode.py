"""Encoding: ids equal the references, labels follow the turn ends, content never becomes a control
token, truncation strategies, train_on modes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.encode import IGNORE_INDEX, LengthError, encode, encode_rendered

REPO = Path(__file__).resolve().parents[1]
TD = REPO.parent / "shared" / "testdata"

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN_USER = "Give me a short introduction to large language model."
QWEN_IDS = [151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525, 264, 10950,
            17847, 13, 151645, 198, 151644, 872, 198, 35127, 752, 264, 2805, 16800, 311, 3460, 4128, 1614, 13,
            151645, 198, 151644, 77091, 198]

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]

CONVERSATIONS = {
    "single": [{"role": "user", "content": "Hello!"}],
    "system_multi": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6."},
    ],
    "chinese": [
        {"role": "user", "content": "你好，请介绍一下你自己。"},
        {"role": "assistant", "content": "我是一个语言模型。"},
    ],
    "emoji": [
        {"role": "user", "content": "🦙🚀 ok? 😶‍🌫️"},
        {"role": "assistant", "content": "✅ yes"},
    ],
    "whitespace_edges": [
        {"role": "system", "content": "  padded system \n"},
        {"role": "user", "content": "\n\n  indented question   "},
        {"role": "assistant", "content": " answer with spaces  "},
    ],
    "long": [
        {"role": "user", "content": ("The quick brown fox jumps over the lazy dog. 敏捷的棕色狐狸。" * 400)[:20000]},
        {"role": "assistant", "content": "Noted." * 50},
    ],
    "repeated_text": [
        {"role": "system", "content": "hi"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hi"},
    ],
}


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the reference data lives in <repo>/../shared/testdata)")
    return path


@pytest.fixture(scope="module")
def qwen_tok(shared_tokenizer):
    return shared_tokenizer(need(TD / "qwen2.5"))


@pytest.fixture(scope="module")
def qwen_hf():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(need(TD / "qwen2.5")))


# -- reference equality ----------------------------------------------------------------------------


def test_qwen25_example_from_the_model_card_gives_the_published_ids(qwen_tok):
    msgs = [{"role": "system", "content": QWEN_SYSTEM}, {"role": "user", "content": QWEN_USER}]
    for fmt in (chatfmt.load_format("qwen2.5"), chatfmt.load_format(need(TD / "qwen2.5" / "tokenizer_config.json"))):
        assert fmt.encode(msgs, qwen_tok, add_generation_prompt=True).input_ids == QWEN_IDS


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("agp", [False, True])
def test_qwen25_ids_equal_transformers_apply_chat_template(name, agp, qwen_tok, qwen_hf):
    msgs = CONVERSATIONS[name]
    want = qwen_hf.apply_chat_template(copy.deepcopy(msgs), tokenize=True, add_generation_prompt=agp, return_dict=False)
    for fmt in (chatfmt.load_format("qwen2.5"), chatfmt.load_format(TD / "qwen2.5" / "tokenizer_config.json")):
        assert fmt.encode(msgs, qwen_tok, add_generation_prompt=agp).input_ids == want


def test_qwen25_tool_conversation_ids_equal_transformers(qwen_tok, qwen_hf):
    msgs = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "assistant", "content": "It is 21 °C."},
    ]
    want = qwen_hf.apply_chat_template(copy.deepcopy(msgs), tools=TOOLS, tokenize=True, return_dict=False)
    got = chatfmt.load_format("qwen2.5").encode(msgs, qwen_tok, tools=TOOLS)
    assert got.input_ids == want
    trained = qwen_tok.decode([t for t in got.labels if t != IGNORE_INDEX])
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>' in trained
    assert trained.endswith("It is 21 °C.<|im_end|>")
    assert "temp" not in trained  # tool results are not trained


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf, shared_tokenizer):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    pytest.importorskip("torch", reason="transformers reads GGUF tokenizers only with torch installed")
    hf = transformers.AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    return hf, chatfmt.load_format(smollm2_gguf), shared_tokenizer(smollm2_gguf)


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_smollm2_gguf_template_and_vocab_equal_transformers(name, smollm2):
    hf, fmt, tok = smollm2
    msgs = CONVERSATIONS[name]
    want = hf.apply_chat_template(copy.deepcopy(msgs), tokenize=True, add_generation_prompt=True, return_dict=False)
    assert fmt.encode(msgs, tok, add_generation_prompt=True).input_ids == want


def _meta_llama3(tok_path: Path, dialog: list[dict]) -> list[int]:
    """Meta's Llama 3 chat format (llama-models ``ChatFormat``): BOS, then per message a header
    (``<|start_header_id|>`` + role + ``<|end_header_id|>`` + "\\n\\n", each encoded on its own),
    the stripped content and ``<|eot_id|>``; then the assistant header."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(tok_path))
    pat = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    enc = tiktoken.Encoding(name="llama3", pat_str=pat, mergeable_ranks=ranks, special_tokens={})
    n = len(ranks)
    bos, start_h, end_h, eot = n, n + 6, n + 7, n + 9

    def header(role: str) -> list[int]:
        return [start_h, *enc.encode(role), end_h, *enc.encode("\n\n")]

    ids = [bos]
    for m in dialog:
        ids += header(m["role"]) + enc.encode(m["content"].strip()) + [eot]
    return ids + header("assistant")


LLAMA3_TEMPLATE = TD / "templates" / "ollama-template-index" / "extracted" / "23-llama3-instruct.jinja"


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_llama3_template_with_tiktoken_equals_metas_chat_format(name):
    tok_path = need(TD / "llama3" / "tokenizer.model")
    pytest.importorskip("tiktoken")
    tok = chatfmt.load_tokenizer(tok_path)
    fmt = chatfmt.load_format(need(LLAMA3_TEMPLATE))
    fmt = chatfmt.from_template(fmt.template, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    msgs = CONVERSATIONS[name]
    got = fmt.encode(msgs, tok, add_generation_prompt=True)
    assert got.input_ids == _meta_llama3(tok_path, msgs)
    # the end of each assistant turn (<|eot_id|>) is trained, the header is not
    trained = tok.decode([t for t in got.labels if t != IGNORE_INDEX])
    for m in msgs:
        if m["role"] == "assistant":
            assert m["content"].strip() + "<|eot_id|>" in trained
    assert "assistant<|end_header_id|>" not in trained


def _meta_llama2(sp, dialog: list[dict]) -> list[int]:
    """Meta's llama/generation.py chat_completion, from its published description."""
    b_inst, e_inst, b_sys, e_sys = "[INST]", "[/INST]", "<<SYS>>\n", "\n<</SYS>>\n\n"
    if dialog[0]["role"] == "system":
        dialog = [{"role": dialog[1]["role"], "content": b_sys + dialog[0]["content"] + e_sys + dialog[1]["content"]}, *dialog[2:]]
    ids: list[int] = []
    for prompt, answer in zip(dialog[::2], dialog[1::2]):
        ids += [sp.bos_id()] + sp.encode(f"{b_inst} {prompt['content'].strip()} {e_inst} {answer['content'].strip()} ") + [sp.eos_id()]
    if len(dialog) % 2:
        ids += [sp.bos_id()] + sp.encode(f"{b_inst} {dialog[-1]['content'].strip()} {e_inst}")
    return ids


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_llama2_builtin_equals_metas_ids_and_compat_mode_equals_transformers(name, tmp_path):
    spm = pytest.importorskip("sentencepiece")
    model = need(TD / "llama2" / "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=str(model))
    tok = chatfmt.load_tokenizer(model)
    fmt = chatfmt.load_format("llama-2")
    msgs = CONVERSATIONS[name]
    if name == "repeated_text":
        msgs = msgs[1:]
    assert fmt.encode(msgs, tok).input_ids == _meta_llama2(sp, msgs)
    # transformers 5 drops the dummy prefix after each control token; compat mode reproduces it
    transformers = pytest.importorskip("transformers")
    d = tmp_path / "llama2"
    d.mkdir()
    (d / "tokenizer.model").write_bytes(model.read_bytes())
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
    hf = transformers.AutoTokenizer.from_pretrained(str(d))
    template = need(TD / "llama2" / "chat_template.jinja").read_text()
    want = hf.apply_chat_template(copy.deepcopy(msgs), chat_template=template, tokenize=True, return_dict=False)
    jfmt = chatfmt.from_template(template, bos_token="<s>", eos_token="</s>")
    if name not in ("whitespace_edges",):  # the HF template and Meta strip differently (see test_llama2.py)
        assert jfmt.encode(msgs, tok, compat="transformers").input_ids == want


# -- labels ----------------------------------------------------------------------------------------


def test_chatml_labels_train_assistant_content_and_im_end_only(qwen_tok):
    msgs = CONVERSATIONS["system_multi"]
    enc = chatfmt.load_format("qwen2.5").encode(msgs, qwen_tok)
    assert len(enc.labels) == len(enc.input_ids) == len(enc.attention_mask)
    pieces = []
    cur: list[int] = []
    for t in enc.labels:
        if t == IGNORE_INDEX:
            if cur:
                pieces.append(qwen_tok.decode(cur))
                cur = []
        else:
            cur.append(t)
    if cur:
        pieces.append(qwen_tok.decode(cur))
    assert pieces == ["4.<|im_end|>", "6.<|im_end|>"]


def test_labels_are_ids_or_ignore_index_everywhere(qwen_tok):
    for msgs in CONVERSATIONS.values():
        enc = chatfmt.load_format("qwen2.5").encode(msgs, qwen_tok)
        assert all(lab in (IGNORE_INDEX, tid) for lab, tid in zip(enc.labels, enc.input_ids))


def test_loss_flag_overrides_the_role_default(qwen_tok):
    msgs = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1", "loss": False},
        {"role": "user", "content": "q2", "loss": True},
        {"role": "assistant", "content": "a2"},
    ]
    conv = chatfmt.messages.parse_openai(msgs)
    enc = chatfmt.load_format("chatml").encode(conv, qwen_tok)
    trained = qwen_tok.decode([t for t in enc.labels if t != IGNORE_INDEX])
    assert trained == "q2<|im_end|>a2<|im_end|>"


def test_train_on_last_assistant_and_all(qwen_tok):
    fmt = chatfmt.load_format("chatml")
    msgs = CONVERSATIONS["system_multi"]
    last = fmt.encode(msgs, qwen_tok, train_on="last_assistant")
    assert qwen_tok.decode([t for t in last.labels if t != IGNORE_INDEX]) == "6.<|im_end|>"
    every = fmt.encode(msgs, qwen_tok, train_on="all")
    assert every.labels == every.input_ids


def test_message_spans_cover_each_message_in_order(qwen_tok):
    msgs = CONVERSATIONS["system_multi"]
    enc = chatfmt.load_format("chatml").encode(msgs, qwen_tok)
    spans = [enc.message_spans[i] for i in range(len(msgs))]
    assert spans == sorted(spans)
    for i, (a, b) in enumerate(spans):
        assert msgs[i]["content"] in qwen_tok.decode(enc.input_ids[a:b])


# -- injection safety ------------------------------------------------------------------------------

TOKENIZER_FILES = {
    "qwen2.5 (vocab+merges)": ("qwen2.5",),
    "llama-2 (sentencepiece)": ("llama2", "tokenizer.model"),
    "llama-3 (tiktoken)": ("llama3", "tokenizer.model"),
    "phi-3 (tokenizer.json)": ("phi-3-mini", "tokenizer.json"),
    "mistral v0.3 (sentencepiece)": ("mistral-7b-instruct-v0.3", "tokenizer.model"),
    "baichuan2 (sentencepiece)": ("baichuan2", "tokenizer.model"),
    "chatglm3 (sentencepiece)": ("chatglm3", "tokenizer.model"),
    "gpt-2 (gguf)": ("ggml-vocab", "ggml-vocab-gpt-2.gguf"),
}


@pytest.fixture(scope="module", params=sorted(TOKENIZER_FILES))
def any_tokenizer(request):
    path = need(TD.joinpath(*TOKENIZER_FILES[request.param]))
    if "tiktoken" in request.param:
        pytest.importorskip("tiktoken")
    return chatfmt.load_tokenizer(path)


def _specials_sample(tok) -> list[str]:
    names = sorted(tok.special_tokens, key=lambda t: (len(t), t))
    return names[:40] + [t for t in ("<|im_start|>", "<|im_end|>", "</s>", "<s>", "[INST]", "<reserved_106>", "<|user|>", "<|eot_id|>") if t not in names]


def test_content_spelling_control_tokens_never_becomes_control_ids(any_tokenizer):
    tok = any_tokenizer
    control = set(tok.special_tokens.values())
    fmt = chatfmt.load_format("chatml")
    for sp in _specials_sample(tok):
        for text in (sp, f"a{sp}b", sp[:-1], sp[1:], sp + sp):
            msgs = [{"role": "user", "content": text}, {"role": "assistant", "content": text}]
            rendered = fmt.render_segments(msgs)
            ids, labels, owners = encode_rendered(rendered, tok)
            content_ids = [i for i, o in zip(ids, owners) if o is not None]
            # every control id in the output comes from the format, never from the content
            n_format_controls = sum(1 for i in ids if i in control)
            expected = sum(1 for t in ("<|im_start|>", "<|im_end|>") if t in tok.special_tokens) * 2
            assert n_format_controls == expected, (sp, text)
            assert content_ids


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1, max_size=60))
def test_arbitrary_content_round_trips_through_its_content_span(qwen_tok, text):
    specials = list(qwen_tok.special_tokens)[:5]
    for content in (text, text + specials[0], specials[1] + text):
        rendered = chatfmt.load_format("chatml").render_segments([{"role": "user", "content": content}])
        ids, _, _ = encode_rendered(rendered, qwen_tok)
        # <|im_start|> user \n | content | <|im_end|> \n: the content's tokens sit between the two controls
        control = set(qwen_tok.special_tokens.values())
        assert [i for i in ids if i in control] == [qwen_tok.special_tokens["<|im_start|>"], qwen_tok.special_tokens["<|im_end|>"]]
        start = ids.index(qwen_tok.special_tokens["<|im_start|>"])
        end = ids.index(qwen_tok.special_tokens["<|im_end|>"])
        import unicodedata

        assert qwen_tok.decode(ids[start + 1 : end]) == "user\n" + unicodedata.normalize("NFC", content)


def test_allow_special_in_content_restores_the_unsafe_behaviour(qwen_tok):
    fmt = chatfmt.load_format("chatml")
    msgs = [{"role": "user", "content": "x<|im_end|>y"}]
    safe = fmt.encode(msgs, qwen_tok)
    unsafe = fmt.encode(msgs, qwen_tok, allow_special_in_content=True)
    end = qwen_tok.special_tokens["<|im_end|>"]
    assert safe.input_ids.count(end) == 1
    assert unsafe.input_ids.count(end) == 2


def test_no_double_bos_when_the_tokenizer_adds_bos_by_default():
    tok = chatfmt.load_tokenizer(need(TD / "llama2" / "tokenizer.model"))
    enc = chatfmt.load_format("llama-2").encode([{"role": "user", "content": "hi"}], tok)
    assert enc.input_ids[:2] != [1, 1]
    assert enc.input_ids.count(1) == 1


# -- truncation ------------------------------------------------------------------------------------


def test_truncation_error_names_the_lengths(qwen_tok):
    with pytest.raises(LengthError, match="over max_length 10"):
        chatfmt.load_format("chatml").encode(CONVERSATIONS["system_multi"], qwen_tok, max_length=10)


def test_truncation_right_cuts_the_end(qwen_tok):
    fmt = chatfmt.load_format("chatml")
    full = fmt.encode(CONVERSATIONS["system_multi"], qwen_tok)
    cut = fmt.encode(CONVERSATIONS["system_multi"], qwen_tok, max_length=20, truncation="right")
    assert cut.input_ids == full.input_ids[:20] and cut.labels == full.labels[:20] and cut.truncated


def test_truncation_drop_oldest_turns_keeps_system_and_newest_rounds(qwen_tok):
    fmt = chatfmt.load_format("chatml")
    msgs = CONVERSATIONS["system_multi"]
    keep = [msgs[0], *msgs[3:]]
    want = fmt.encode(keep, qwen_tok)
    full = fmt.encode(msgs, qwen_tok)
    got = fmt.encode(msgs, qwen_tok, max_length=len(want.input_ids), truncation="drop_oldest_turns")
    assert len(full.input_ids) > len(got.input_ids)
    assert got.input_ids == want.input_ids and got.labels == want.labels
    assert got.truncated and got.dropped_messages == 2
    assert set(got.message_spans) == {0, 3, 4}  # indices refer to the original conversation


def test_truncation_drop_oldest_turns_fails_when_the_newest_round_does_not_fit(qwen_tok):
    with pytest.raises(LengthError, match="newest round"):
        chatfmt.load_format("chatml").encode(CONVERSATIONS["system_multi"], qwen_tok, max_length=5, truncation="drop_oldest_turns")


def test_encode_batch_matches_encode(qwen_tok):
    fmt = chatfmt.load_format("qwen2.5")
    convs = list(CONVERSATIONS.values())
    batch = chatfmt.encode_batch(fmt, convs, qwen_tok)
    assert [b.input_ids for b in batch] == [encode(fmt, c, qwen_tok).input_ids for c in convs]


# -- the whole-text fast path equals run-by-run encoding ------------------------------------------


@settings(max_examples=int(__import__('os').environ.get('CHATFMT_HYPOTHESIS_EXAMPLES', 80)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=5))
def test_whole_text_fast_path_equals_run_by_run_encoding(qwen_tok, texts):
    from chatfmt.encode import _spans, encode_rendered_many

    assert qwen_tok.whole_text_backend() is not None
    roles = ["user", "assistant"]
    msgs = [{"role": roles[k % 2], "content": t} for k, t in enumerate(texts)]
    for fmt in (chatfmt.load_format("qwen2.5"), chatfmt.load_format("chatml")):
        rendered = fmt.render_segments(msgs)
        fast = encode_rendered_many([rendered], qwen_tok)[0]
        ids, labels, owners = encode_rendered(rendered, qwen_tok)
        assert fast == (ids, labels, _spans(owners))


def test_content_spelling_a_control_token_takes_the_run_by_run_path(qwen_tok):
    from chatfmt.encode import _whole_text_ready

    fmt = chatfmt.load_format("qwen2.5")
    safe = fmt.render_segments([{"role": "user", "content": "hello"}])
    unsafe = fmt.render_segments([{"role": "user", "content": "hello <|im_end|>"}])
    assert _whole_text_ready(safe, qwen_tok, False)
    assert not _whole_text_ready(unsafe, qwen_tok, False)
    enc = fmt.encode([{"role": "user", "content": "hello <|im_end|>"}], qwen_tok)
    # the default system block's <|im_end|> and the user turn's; the typed one stays text
    assert enc.input_ids.count(qwen_tok.special_tokens["<|im_end|>"]) == 2
