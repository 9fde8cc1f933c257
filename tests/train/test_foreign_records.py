"""Training records written for other tools are read as their authors meant them: OpenAI's
fine-tuning ``weight``, axolotl's ``training``/``train``/``train_detail``, LLaMA-Factory's ShareGPT
and v1 fields; what chatfmt cannot honour is rejected with a rule, never silently trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import chatfmt
from chatfmt.encode import IGNORE_INDEX, encode
from chatfmt.errors import ValidationError
from chatfmt.messages import Message, parse_message, parse_record
from chatfmt.train import prepare
from chatfmt.train.encoder import without_keys


def U(text: str, **kw) -> dict:
    return {"role": "user", "content": text, **kw}


def A(text: str, **kw) -> dict:
    return {"role": "assistant", "content": text, **kw}


def rule_of(record, kind: str | None = None) -> str:
    with pytest.raises(ValidationError) as info:
        parse_record(record, kind)
    return info.value.rule


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- OpenAI fine-tuning: weight ------------------------------------------------------------------


def test_openai_weight_zero_means_the_assistant_message_is_not_trained_and_one_that_it_is():
    conv = parse_record({"messages": [U("a"), A("x", weight=0), U("b"), A("y", weight=1)]})
    assert [m.trained for m in conv] == [False, False, False, True]
    assert conv[1].loss is False and conv[3].loss is True and conv[1].extra == {}


@pytest.mark.parametrize("value", [0.5, 2, -1, "0", True, [0]])
def test_openai_weight_other_than_0_or_1_is_rejected(value):
    assert rule_of({"messages": [U("a"), A("x", weight=value)]}) == "weight"


def test_openai_weight_on_a_user_message_is_rejected_as_openai_defines_it_for_assistants_only():
    with pytest.raises(ValidationError) as info:
        parse_record({"messages": [U("a", weight=1), A("x")]})
    assert info.value.rule == "weight" and info.value.index == 0 and "assistant messages only" in str(info.value)


# -- content required as the OpenAI API requires it ------------------------------------------------


@pytest.mark.parametrize(
    ("message", "index"),
    [
        ({"role": "user"}, 0),
        ({"role": "user", "content": None}, 0),
        ({"role": "system", "content": None}, 0),
        ({"role": "assistant"}, 1),
        ({"role": "assistant", "content": None}, 1),
    ],
)
def test_a_record_message_without_content_is_rejected_not_trained_as_an_empty_turn(message, index):
    msgs = [message, A("x")] if index == 0 else [U("q"), message]
    with pytest.raises(ValidationError) as info:
        parse_record({"messages": msgs})
    assert info.value.rule == "content" and info.value.index == index


def test_a_tool_result_without_content_is_rejected_in_the_conversations_kind_too():
    call = {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    with pytest.raises(ValidationError) as info:
        parse_record({"conversations": [U("q"), call, {"role": "tool"}]}, "conversations")
    assert info.value.rule == "content" and info.value.index == 2


def test_openai_legacy_function_call_and_functions_are_refused_not_dropped():
    call = {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}
    assert rule_of({"messages": [U("q"), call]}) == "tool_call"
    assert rule_of({"messages": [U("q"), A("x")], "functions": [{"name": "f", "parameters": {}}]}) == "tools"


def test_an_assistant_tool_call_without_content_stays_valid():
    call = {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    conv = parse_record({"messages": [U("q"), call, {"role": "tool", "content": "1"}, A("done")]})
    assert conv[1].tool_calls and conv[1].content == ""


def test_rendering_input_stays_lenient_about_null_content():
    # as_conversation / parse_message serve rendering (transformers renders None content); only
    # dataset records must say what each message is
    assert parse_message({"role": "user"}).content == ""


# -- axolotl: training / train / train_detail ------------------------------------------------------


@pytest.mark.parametrize("key", ["training", "train"])
def test_axolotl_per_message_training_flag_is_honoured(key):
    conv = parse_record({"messages": [U("a", **{key: True}), A("x", **{key: False})]})
    assert [m.trained for m in conv] == [True, False]


@pytest.mark.parametrize("key", ["training", "train", "loss"])
def test_a_non_boolean_training_flag_is_rejected(key):
    assert rule_of({"messages": [U("a"), A("x", **{key: "yes"})]}) == "loss"


@pytest.mark.parametrize(
    "keys",
    [{"loss": True, "weight": 0}, {"training": False, "weight": 1}, {"train": True, "loss": False}, {"loss_weight": 0.0, "train": True}],
)
def test_loss_keys_that_disagree_on_one_message_are_a_rejection(keys):
    with pytest.raises(ValidationError) as info:
        parse_record({"messages": [U("a"), A("x", **keys)]})
    assert info.value.rule == "loss_conflict" and info.value.index == 1
    assert all(k in str(info.value) for k in keys)


def test_loss_keys_that_agree_are_accepted():
    conv = parse_record({"messages": [U("a"), A("x", loss=False, weight=0, training=False)]})
    assert conv[1].trained is False


# -- LLaMA-Factory ----------------------------------------------------------------------------------


def test_llamafactory_v1_loss_weight_zero_and_one_are_honoured_and_fractions_rejected():
    conv = parse_record({"messages": [U("a", loss_weight=0.0), A("x", loss_weight=0.0), U("b"), A("y", loss_weight=1.0)]})
    assert [m.trained for m in conv] == [False, False, False, True]
    assert rule_of({"messages": [U("a"), A("x", loss_weight=0.5)]}) == "weight"


SHAREGPT = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hey"}]


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        ({"chosen": {"from": "gpt", "value": "good"}, "rejected": {"from": "gpt", "value": "bad"}}, "preference"),
        ({"kto_tag": False}, "preference"),
        ({"kto_tag": True}, "preference"),
        ({"images": ["cat.jpg"]}, "media"),
        ({"videos": ["a.mp4"]}, "media"),
    ],
)
def test_llamafactory_preference_kto_and_media_records_are_rejected_not_trained_as_sft(extra, rule):
    assert rule_of({"conversations": SHAREGPT, **extra}) == rule


def test_llamafactory_alpaca_preference_record_names_the_preference_rule():
    assert rule_of({"instruction": "2+2?", "input": "", "chosen": "4", "rejected": "5"}) == "preference"


def test_empty_media_lists_are_no_media():
    assert len(parse_record({"conversations": SHAREGPT, "images": []})) == 2


# -- keys no tool defines ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["mask", "loss_mask", "trainable", "no_loss"])
@pytest.mark.parametrize("value", [True, 0, "x"])
def test_a_loss_like_key_no_known_tool_defines_is_rejected(key, value):
    with pytest.raises(ValidationError) as info:
        parse_record({"messages": [U("a"), A("x", **{key: value})]})
    assert info.value.rule == "loss_key" and key in str(info.value) and "--ignore-key" in str(info.value)


@pytest.mark.parametrize("key", ["weight", "loss", "mask", "sample_weight"])
def test_a_record_level_loss_key_is_rejected(key):
    assert rule_of({"messages": [U("a"), A("x")], key: 0}) == "loss_key"


def test_without_keys_drops_a_key_from_the_record_and_its_messages_without_changing_the_input():
    rec = {"messages": [U("a"), A("x", mask=1)], "images": ["x.png"]}
    assert without_keys(rec, ("mask", "images")) == {"messages": [U("a"), A("x")]}
    assert rec["messages"][1]["mask"] == 1 and rec["images"] == ["x.png"]


# -- train_detail: parsing --------------------------------------------------------------------------

DOC_REPLY = "I'm doing very well, thank you!"
DOC_DETAIL = [
    {"begin_offset": 0, "end_offset": 8, "train": False},
    {"begin_offset": 9, "end_offset": 18, "train": True},
    {"begin_offset": 19, "end_offset": 30, "train": False},
]


def test_train_detail_is_read_as_end_inclusive_character_spans():
    m = parse_message({"role": "assistant", "content": DOC_REPLY, "train_detail": DOC_DETAIL})
    assert m.train_detail == ((0, 9, False), (9, 19, True), (19, 31, False)) and m.trained
    assert DOC_REPLY[9:19] == " very well"


@pytest.mark.parametrize(
    ("detail", "why"),
    [
        ([{"begin_offset": 0, "end_offset": 31, "train": True}], "outside the content"),
        ([{"begin_offset": 0, "end_offset": 5, "train": True}, {"begin_offset": 5, "end_offset": 9, "train": False}], "overlap"),
        ([{"begin_offset": 0, "end_offset": 5}], "boolean train"),
        ([{"begin": 0, "end_offset": 5, "train": True}], "unknown key"),
        ({"begin_offset": 0}, "must be a list"),
    ],
)
def test_a_malformed_train_detail_is_rejected(detail, why):
    with pytest.raises(ValidationError, match=why) as info:
        parse_message({"role": "assistant", "content": DOC_REPLY, "train_detail": detail}, 3)
    assert info.value.rule == "train_detail" and info.value.index == 3


def test_train_detail_with_a_false_training_flag_that_trains_a_span_is_a_conflict():
    with pytest.raises(ValidationError) as info:
        parse_message({"role": "assistant", "content": DOC_REPLY, "train": False, "train_detail": DOC_DETAIL})
    assert info.value.rule == "loss_conflict"


def test_an_empty_train_detail_trains_nothing_of_the_message():
    m = parse_message({"role": "assistant", "content": DOC_REPLY, "train_detail": []})
    assert m.trained is False and m.train_detail is None


def test_train_detail_round_trips_through_to_dict():
    m = parse_message({"role": "assistant", "content": DOC_REPLY, "train_detail": DOC_DETAIL})
    again = parse_message(m.to_dict())
    assert again.train_detail == m.train_detail and m.to_dict()["train_detail"] == DOC_DETAIL


# -- with real tokenizers ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["qwen2.5", "smollm2"])
def pair(request, testdata, shared_tokenizer):
    if request.param == "qwen2.5":
        d = testdata("qwen2.5")
        return chatfmt.load_format("qwen2.5"), shared_tokenizer(d)
    gguf = request.getfixturevalue("smollm2_gguf")
    return chatfmt.load_format(gguf), shared_tokenizer(gguf)


def trained_text(tok, ids, labels) -> str:
    return tok.decode([i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX])


def test_openai_weight_zero_through_prepare_equals_loss_false(pair, tmp_path):
    fmt, tok = pair
    weighted = {"messages": [U("What is 2+2?"), A("5", weight=0), U("Again?"), A("4", weight=1)]}
    native = {"messages": [U("What is 2+2?"), A("5", loss=False), U("Again?"), A("4")]}
    out = tmp_path / "o.jsonl"
    prepare(write_jsonl(tmp_path / "in.jsonl", [weighted, native]), fmt, tok, out)
    a, b = read_jsonl(out)
    assert a["labels"] == b["labels"] and a["input_ids"] == b["input_ids"]
    assert "5" not in trained_text(tok, a["input_ids"], a["labels"]) and "4" in trained_text(tok, a["input_ids"], a["labels"])


# axolotl's docs example (docs/dataset-formats/conversation.qmd), a ShareGPT-shaped record read by
# chat_template with message_field_training: train and message_field_training_detail: train_detail
AXOLOTL_DOC = {
    "conversations": [
        {"from": "system", "value": "You are an AI assistant.", "train": False},
        {"from": "human", "value": "Hello", "train": False},
        {"from": "assistant", "value": "Hello", "train": True},
        {"from": "human", "value": "How are you?", "train": True},
        {"from": "assistant", "value": DOC_REPLY, "train_detail": DOC_DETAIL},
        {"from": "human", "value": "I'm doing very well, thank you!", "train": True},
        {"from": "assistant", "value": "Hi there!", "train": True},
    ]
}


def test_axolotl_docs_record_trains_exactly_its_spans_and_flags(pair, tmp_path):
    fmt, tok = pair
    out = tmp_path / "o.jsonl"
    report = prepare(write_jsonl(tmp_path / "in.jsonl", [AXOLOTL_DOC]), fmt, tok, out)
    assert report.written == 1, read_jsonl(Path(report.rejects))
    [row] = read_jsonl(out)
    conv = parse_record(AXOLOTL_DOC)
    enc = encode(fmt, conv, tok)
    assert row["labels"] == enc.labels
    spans = enc.message_spans
    text = {k: trained_text(tok, enc.input_ids[a:b], enc.labels[a:b]) for k, (a, b) in spans.items()}
    assert "You are" not in text.get(0, "") and "Hello" not in text.get(1, "")
    assert "How are you?" in text[3] and "Hi there!" in text[6]
    # message 4: only " very well" of its content, plus its end-of-turn token (axolotl's train_on_eos: turn)
    whole = conv[4].content
    native = encode(fmt, [*conv.messages[:4], Message("assistant", whole)], tok)
    a, b = spans[4]
    assert text[4].startswith(" very well") and "doing" not in text[4] and "thank" not in text[4]
    assert text[4][len(" very well"):] == trained_text(tok, native.input_ids[a:b], native.labels[a:b])[len(whole):]


def test_a_train_detail_boundary_inside_a_token_is_refused_not_rounded(pair, tmp_path):
    fmt, tok = pair
    # "I'm do|ing": the boundary cuts the token " doing" in both vocabularies
    detail = [{"begin_offset": 0, "end_offset": 5, "train": True}]
    rec = {"messages": [U("How are you?"), A(DOC_REPLY, train_detail=detail)]}
    out = tmp_path / "o.jsonl"
    report = prepare(write_jsonl(tmp_path / "in.jsonl", [rec]), fmt, tok, out)
    assert report.written == 0 and report.rejected_by_rule == {"train_detail": 1}
    [rej] = read_jsonl(Path(report.rejects))
    assert "holds characters the spans train and characters they do not" in rej["message"]


def test_foreign_rejections_name_their_rule_in_the_rejects_file(pair, tmp_path):
    fmt, tok = pair
    records = [
        {"messages": [{"role": "user"}, A("x")]},
        {"messages": [U("a"), A("x", loss=True, weight=0)]},
        {"messages": [U("a"), A("x", mask=True)]},
        {"conversations": SHAREGPT, "kto_tag": False},
        {"messages": [U("a"), A("ok", weight=1)]},
    ]
    out = tmp_path / "o.jsonl"
    report = prepare(write_jsonl(tmp_path / "in.jsonl", records), fmt, tok, out)
    assert report.written == 1
    assert [(r["record"], r["rule"]) for r in read_jsonl(Path(report.rejects))] == [
        (1, "content"), (2, "loss_conflict"), (3, "loss_key"), (4, "preference"),
    ]


def test_ignore_keys_lets_a_key_that_means_something_else_through(pair, tmp_path):
    fmt, tok = pair
    rec = {"messages": [U("a"), A("x", mask="m-17")], "weight": 3}
    inp = write_jsonl(tmp_path / "in.jsonl", [rec])
    assert prepare(inp, fmt, tok, tmp_path / "a.jsonl").rejected_by_rule == {"loss_key": 1}
    report = prepare(inp, fmt, tok, tmp_path / "b.jsonl", ignore_keys=["mask", "weight"])
    assert report.written == 1


@pytest.mark.parametrize("train_on", ["all", "last_assistant"])
def test_a_messages_own_loss_flag_wins_over_train_on(pair, train_on):
    fmt, tok = pair
    conv = parse_record({"messages": [U("first question", train=True), A("first answer", weight=0), U("again?"), A("second answer", weight=0)]})
    enc = encode(fmt, conv, tok, train_on=train_on)
    text = {k: trained_text(tok, enc.input_ids[a:b], enc.labels[a:b]) for k, (a, b) in enc.message_spans.items()}
    assert "first question" in text[0]  # train: true, though not the last assistant
    assert text[1] == "" and text[3] == ""  # weight 0, though train_on says all / last
    if train_on == "all":
        assert "again?" in text[2]  # no flag of its own: train_on decides
    else:
        assert text[2] == ""


def test_train_detail_on_a_sentencepiece_template_that_trims_content(testdata):
    # Llama-2 trims the reply and writes the space before it as trained text of the turn, which
    # merges into the reply's first token: untrained content wins, the span's tokens are trained
    tok = chatfmt.load_tokenizer(testdata("llama2"))
    fmt = chatfmt.load_format("llama2")
    reply = "  I'm doing very well, thank you!"
    detail = [{"begin_offset": 11, "end_offset": 20, "train": True}]  # " very well"
    whole = encode(fmt, parse_record({"messages": [U("How are you?"), A(reply)]}), tok)
    enc = encode(fmt, parse_record({"messages": [U("How are you?"), A(reply, train_detail=detail)]}), tok)
    assert enc.input_ids == whole.input_ids
    a, b = enc.message_spans[1]
    first = next(t for t in range(a, b) if whole.labels[t] != IGNORE_INDEX)
    assert tok.decode([whole.input_ids[first]]).strip() == "I" and enc.labels[first] == IGNORE_INDEX
    text = trained_text(tok, enc.input_ids[a:b], enc.labels[a:b])
    assert text.startswith("very well") and not any(w in text for w in ("I'm", "doing", "thank"))
    assert trained_text(tok, enc.input_ids, enc.labels) == text  # nothing else trained


# -- any mix of loss keys: trained as every key says, or refused ------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_MEANING = {
    "loss": {True: True, False: False},
    "training": {True: True, False: False},
    "train": {True: True, False: False},
    "weight": {1: True, 0: False},
    "loss_weight": {1.0: True, 0.0: False},
}
_JUNK = st.sampled_from([0.5, 2, "1", "true", [1], {"x": 1}])


@st.composite
def loss_keys(draw):
    keys = draw(st.lists(st.sampled_from(sorted(_MEANING)), unique=True, max_size=4))
    return {k: draw(st.one_of(st.sampled_from(list(_MEANING[k])), _JUNK)) for k in keys}


@settings(max_examples=300, deadline=None)
@given(loss_keys(), st.sampled_from(["user", "assistant"]))
def test_any_mix_of_loss_keys_is_trained_as_every_key_says_or_refused(keys, role):
    msg = {"role": role, "content": "x", **keys}
    meanings = []
    for k, v in keys.items():
        valid = type(v) in (bool, int, float) and (type(v) is bool) == (k in ("loss", "training", "train"))
        meanings.append(_MEANING[k].get(v) if valid else None)
    try:
        m = parse_message(msg, 0)
    except ValidationError as e:
        assert e.rule in ("loss", "weight", "loss_conflict")
        invalid = None in meanings or (role != "assistant" and "weight" in keys)
        assert invalid or len(set(meanings)) > 1
        return
    assert None not in meanings and len(set(meanings)) <= 1
    assert not (role != "assistant" and "weight" in keys)
    assert m.trained == (meanings[0] if meanings else role == "assistant")


# -- records exactly as the tools' docs show them ---------------------------------------------------

# OpenAI's fine-tuning guide: multi-turn chat examples, "weight" to skip fine-tuning on a message
OPENAI_DOC = {"messages": [
    {"role": "system", "content": "Marv is a factual chatbot that is also sarcastic."},
    {"role": "user", "content": "What's the capital of France?"},
    {"role": "assistant", "content": "Paris", "weight": 0},
    {"role": "user", "content": "Can you be more sarcastic?"},
    {"role": "assistant", "content": "Paris, as if everyone doesn't know that already.", "weight": 1},
]}
# LLaMA-Factory's data/README: a ShareGPT record with a system prompt and tools (JSON text), and the
# KTO and preference shapes
LF_SHAREGPT = {
    "conversations": [
        {"from": "human", "value": "What is the weather in Paris?"},
        {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
        {"from": "observation", "value": '{"temp": 21}'},
        {"from": "gpt", "value": "It is 21 degrees in Paris."},
    ],
    "system": "You are a weather bot.",
    "tools": '[{"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]',
}
LF_KTO = {"instruction": "human instruction", "input": "human input", "output": "model response", "kto_tag": False}
LF_PREFERENCE = {
    "conversations": [{"from": "human", "value": "human instruction"}],
    "chosen": {"from": "gpt", "value": "chosen answer"},
    "rejected": {"from": "gpt", "value": "rejected answer"},
}


def test_records_as_the_docs_show_them_through_prepare(pair, tmp_path):
    fmt, tok = pair
    out = tmp_path / "o.jsonl"
    report = prepare(write_jsonl(tmp_path / "in.jsonl", [OPENAI_DOC, LF_SHAREGPT, LF_KTO, LF_PREFERENCE]), fmt, tok, out)
    assert report.written == 2 and [r["rule"] for r in read_jsonl(Path(report.rejects))] == ["preference", "preference"]
    openai, sharegpt = read_jsonl(out)
    trained = trained_text(tok, openai["input_ids"], openai["labels"])
    assert "as if everyone" in trained and "Paris" not in trained.replace("Paris, as if", "")
    assert "21 degrees" in trained_text(tok, sharegpt["input_ids"], sharegpt["labels"])
