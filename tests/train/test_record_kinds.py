"""Record kinds users have, in files written the way their tools' docs show them, through prepare:
TRL's conversational prompt/completion (only the completion trained; the standard string form,
unpaired preference and per-record chat_template_kwargs refused with a rule), TRL's messages with a
tools column (a list, or JSON text as TRL now writes it), OpenAI's fine-tuning JSONL with tools,
parallel tool calls and weight, and LLaMA-Factory's dataset_info.json (alpaca and sharegpt, the
column and tag mappings, system/tools columns, its turn-order rule, mask_history as --train-on
last_assistant); descriptions chatfmt cannot read exactly are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import chatfmt
from chatfmt.cli import app
from chatfmt.encode import IGNORE_INDEX, encode_batch
from chatfmt.messages import parse_record
from chatfmt.train import prepare
from chatfmt.train.dataset_info import DatasetInfoError, load_dataset_info

runner = CliRunner()


@pytest.fixture(scope="module")
def qwen(testdata, shared_tokenizer):
    return chatfmt.load_format("qwen2.5"), shared_tokenizer(testdata("qwen2.5"))


@pytest.fixture(scope="module")
def qwen_dir(testdata) -> Path:
    return testdata("qwen2.5")


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def trained_text(tok, ids, labels) -> str:
    return tok.decode([i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX])


def encoded(qwen, records: list, **kw) -> list[tuple[list[int], list[int]]]:
    fmt, tok = qwen
    return [(e.input_ids, e.labels) for e in encode_batch(fmt, [parse_record(r) for r in records], tok, **kw)]


def rows(path: Path) -> list[tuple[list[int], list[int]]]:
    return [(r["input_ids"], r["labels"]) for r in read_jsonl(path)]


# -- TRL: prompt / completion ---------------------------------------------------------------------------

TRL_PROMPT_COMPLETION = {
    "prompt": [{"role": "user", "content": "What color is the sky?"}],
    "completion": [{"role": "assistant", "content": "It is blue."}],
}
TRL_MULTI_TURN_PROMPT = {
    "prompt": [
        {"role": "system", "content": "You answer in one sentence."},
        {"role": "user", "content": "What color is the sky?"},
        {"role": "assistant", "content": "It is blue."},
        {"role": "user", "content": "And the grass?"},
    ],
    "completion": [{"role": "assistant", "content": "It is green."}],
}
TRL_STANDARD = {"prompt": "The sky is", "completion": " blue."}
TRL_TEXT = {"text": "The sky is blue."}
TRL_UNPAIRED = {
    "prompt": [{"role": "user", "content": "What color is the sky?"}],
    "completion": [{"role": "assistant", "content": "It is green."}],
    "label": False,
}


def test_trl_prompt_completion_trains_only_the_completion(qwen, tmp_path):
    src = write_jsonl(tmp_path / "trl.jsonl", [TRL_PROMPT_COMPLETION, TRL_MULTI_TURN_PROMPT])
    out = tmp_path / "o.jsonl"
    report = prepare(src, *qwen, out)
    assert report.written == 2 and report.rejected == 0
    single, multi = rows(out)
    _, tok = qwen
    # the same as the conversation with its prompt's assistant turn not trained (OpenAI's weight 0)
    as_messages = [
        {"messages": TRL_PROMPT_COMPLETION["prompt"] + TRL_PROMPT_COMPLETION["completion"]},
        {"messages": [*TRL_MULTI_TURN_PROMPT["prompt"][:2], {**TRL_MULTI_TURN_PROMPT["prompt"][2], "weight": 0},
                      TRL_MULTI_TURN_PROMPT["prompt"][3], *TRL_MULTI_TURN_PROMPT["completion"]]},
    ]
    assert [single, multi] == encoded(qwen, as_messages)
    assert "It is blue" not in trained_text(tok, *multi) and "It is green." in trained_text(tok, *multi)
    # train_on=all does not train the prompt's messages either (their own flags win; TRL never trains them)
    out_all = tmp_path / "all.jsonl"
    prepare(src, *qwen, out_all, train_on="all")
    everything = trained_text(tok, *rows(out_all)[1])
    assert "It is blue" not in everything and "And the grass?" not in everything and "one sentence" not in everything


def test_trl_prompt_completion_with_a_tool_round_trains_the_whole_completion(qwen, tmp_path):
    rec = {
        "prompt": [{"role": "user", "content": "Turn on the living room lights."}],
        "completion": [
            {"role": "assistant", "tool_calls": [
                {"type": "function", "function": {"name": "control_light", "arguments": {"room": "living room", "state": "on"}}}]},
            {"role": "tool", "name": "control_light", "content": "The lights in the living room are now on."},
            {"role": "assistant", "content": "Done!"},
        ],
        "tools": [CONTROL_LIGHT],
    }
    out = tmp_path / "o.jsonl"
    prepare(write_jsonl(tmp_path / "in.jsonl", [rec]), *qwen, out)
    (ids, labels), = rows(out)
    trained = trained_text(qwen[1], ids, labels)
    assert "control_light" in trained and "are now on" in trained and "Done!" in trained  # TRL's completion mask
    assert "Turn on the living room lights." not in trained


@pytest.mark.parametrize("record, rule", [
    (TRL_STANDARD, "not_conversational"),
    (TRL_TEXT, "not_conversational"),
    (TRL_UNPAIRED, "preference"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
      "chat_template_kwargs": {"enable_thinking": False}}, "chat_template_kwargs"),
    ({**TRL_PROMPT_COMPLETION, "chat_template_kwargs": "enable_thinking=false"}, "chat_template_kwargs"),
    ({**TRL_PROMPT_COMPLETION, "chat_template_kwargs": {"add_generation_prompt": True}}, "chat_template_kwargs"),
    ({"prompt": [{"role": "user", "content": "q"}], "completion": []}, "empty"),
    ({"prompt": [{"role": "user", "content": "q", "loss": True}], "completion": [{"role": "assistant", "content": "a"}]},
     "loss_key"),
    ({"prompt": [{"role": "user", "content": "q"}], "completion": "a"}, "not_conversational"),
])
def test_trl_records_chatfmt_cannot_train_exactly_are_rejected_with_their_rule(qwen, tmp_path, record, rule):
    out = tmp_path / "o.jsonl"
    report = prepare(write_jsonl(tmp_path / "in.jsonl", [record, TRL_PROMPT_COMPLETION]), *qwen, out)
    assert report.written == 1
    (rejection,) = read_jsonl(Path(report.rejects))
    assert (rejection["record"], rejection["rule"]) == (1, rule)


def test_trl_per_record_chat_template_kwargs_are_rendered_over_the_runs(testdata, tmp_path):
    llama3 = str(testdata("llama3"))
    tok = chatfmt.load_tokenizer(llama3)
    recs = [
        {**TRL_PROMPT_COMPLETION, "chat_template_kwargs": {"date_string": "01 Jan 2025"}},
        {"messages": TRL_PROMPT_COMPLETION["prompt"] + TRL_PROMPT_COMPLETION["completion"]},
        {"messages": TRL_PROMPT_COMPLETION["prompt"] + TRL_PROMPT_COMPLETION["completion"],
         "chat_template_kwargs": {"date_string": "02 Feb 2026"}},
    ]
    out = tmp_path / "o.jsonl"
    report = prepare(write_jsonl(tmp_path / "in.jsonl", recs), "llama-3.1", llama3, out,
                     template_kwargs={"date_string": "26 Jul 2024"})
    assert report.written == 3 and report.not_rendered == {}
    dates = [tok.decode(ids).split("Today Date: ")[1][:11] for ids, _ in rows(out)]
    assert dates == ["01 Jan 2025", "26 Jul 2024", "02 Feb 2026"]
    expected = encode_batch(chatfmt.load_format("llama-3.1"), [parse_record(recs[0])], tok)[0]
    assert rows(out)[0] == (expected.input_ids, expected.labels)
    assert parse_record(recs[2]).to_dict()["chat_template_kwargs"] == {"date_string": "02 Feb 2026"}


def test_a_per_record_keyword_the_format_does_not_read_is_counted_and_said(qwen_dir, tmp_path):
    rec = {**TRL_PROMPT_COMPLETION, "chat_template_kwargs": {"enable_thinking": False}}
    out = tmp_path / "o.jsonl"
    src = write_jsonl(tmp_path / "in.jsonl", [rec, rec, TRL_PROMPT_COMPLETION])
    r = runner.invoke(app, ["prepare", str(src), "-f", "qwen2.5", "-t", str(qwen_dir), "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert r.stderr == (
        "chatfmt: warning: chat format 'qwen2.5' does not read the template keyword argument 'enable_thinking': "
        "it has no effect: 2 record(s) give it in their chat_template_kwargs\n"
    )
    r = runner.invoke(app, ["prepare", str(src), "-f", "qwen2.5", "-t", str(qwen_dir), "-o", str(out), "-q",
                            "--reject-unrendered-tools"])
    assert r.exit_code == 0 and len(read_jsonl(out)) == 3  # tools only: keywords are not tools


def test_a_completion_message_can_still_opt_out_of_training(qwen):
    conv = parse_record({"prompt": [{"role": "user", "content": "q"}],
                         "completion": [{"role": "assistant", "content": "draft", "weight": 0},
                                        {"role": "user", "content": "again"},
                                        {"role": "assistant", "content": "final"}]})
    assert [m.trained for m in conv] == [False, False, True, True]


# -- TRL: messages + tools --------------------------------------------------------------------------------

CONTROL_LIGHT = {
    "type": "function",
    "function": {
        "name": "control_light",
        "description": "Controls the lights in a room.",
        "parameters": {
            "type": "object",
            "properties": {
                "room": {"type": "string", "description": "The name of the room."},
                "state": {"type": "string", "description": 'The desired state of the light ("on" or "off").'},
            },
            "required": ["room", "state"],
        },
        "return": {"type": "string", "description": "str: A message indicating the new state of the lights."},
    },
}
TRL_TOOL_MESSAGES = [
    {"role": "user", "content": "Turn on the living room lights."},
    {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "control_light", "arguments": {"room": "living room", "state": "on"}}}]},
    {"role": "tool", "name": "control_light", "content": "The lights in the living room are now on."},
    {"role": "assistant", "content": "Done!"},
]


def test_trl_messages_with_a_tools_column_render_the_tools(qwen, tmp_path):
    as_list = {"messages": TRL_TOOL_MESSAGES, "tools": [CONTROL_LIGHT]}
    as_text = {"messages": TRL_TOOL_MESSAGES, "tools": json.dumps([CONTROL_LIGHT])}  # TRL's JSON-string schema
    out = tmp_path / "o.jsonl"
    report = prepare(write_jsonl(tmp_path / "in.jsonl", [as_list, as_text]), *qwen, out)
    assert report.written == 2 and report.not_rendered == {}
    a, b = rows(out)
    assert a == b
    _, tok = qwen
    text = tok.decode(a[0])
    assert "# Tools" in text and '"name": "control_light"' in text and '"return"' in text
    assert '<tool_call>\n{"name": "control_light", "arguments": {"room": "living room", "state": "on"}}\n</tool_call>' in text
    trained = trained_text(tok, *a)
    assert "<tool_call>" in trained and "Done!" in trained and "are now on" not in trained


def test_trl_messages_with_tools_through_datasets_map(qwen):
    datasets = pytest.importorskip("datasets")
    from chatfmt.train import dataset_map_function

    ds = datasets.Dataset.from_list([{"messages": TRL_TOOL_MESSAGES, "tools": json.dumps([CONTROL_LIGHT])}])
    out = ds.map(dataset_map_function(*qwen), batched=True, remove_columns=ds.column_names)
    assert out["error"] == [None]
    assert (out["input_ids"][0], out["labels"][0]) == encoded(qwen, [{"messages": TRL_TOOL_MESSAGES, "tools": [CONTROL_LIGHT]}])[0]


# -- OpenAI fine-tuning: tools, parallel tool calls, weight -------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and country, eg. San Francisco, USA"},
                "format": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location", "format"],
        },
    },
}
OPENAI_TOOLS = {
    "messages": [
        {"role": "user", "content": "What is the weather in San Francisco?"},
        {"role": "assistant", "tool_calls": [{"id": "call_id", "type": "function", "function": {
            "name": "get_current_weather", "arguments": '{"location": "San Francisco, USA", "format": "celsius"}'}}]},
    ],
    "parallel_tool_calls": False,
    "tools": [WEATHER],
}
OPENAI_PARALLEL = {
    "messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris and in Rome?"},
        {"role": "assistant", "content": "Let me look.", "weight": 0},
        {"role": "user", "content": "Go on."},
        {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_current_weather",
                                                              "arguments": '{"location": "Paris, France", "format": "celsius"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_current_weather",
                                                              "arguments": '{"location": "Rome, Italy", "format": "celsius"}'}},
        ], "weight": 1},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 18}'},
        {"role": "tool", "tool_call_id": "call_2", "content": '{"temperature": 24}'},
        {"role": "assistant", "content": "Paris 18 °C, Rome 24 °C.", "weight": 1},
    ],
    "tools": [WEATHER],
}


def test_openai_fine_tuning_records_with_tools_and_parallel_calls_pass(qwen, tmp_path):
    out = tmp_path / "o.jsonl"
    report = prepare(write_jsonl(tmp_path / "in.jsonl", [OPENAI_TOOLS, OPENAI_PARALLEL]), *qwen, out)
    assert report.written == 2 and report.rejected == 0 and report.not_rendered == {}
    _, tok = qwen
    first, parallel = rows(out)
    assert "San Francisco, USA" in trained_text(tok, *first)
    trained = trained_text(tok, *parallel)
    assert trained.count("<tool_call>") == 2 and "Rome, Italy" in trained and "Paris 18 °C, Rome 24 °C." in trained
    assert "Let me look." not in trained and '"temperature"' not in trained
    assert tok.decode(parallel[0]).count("<tool_response>") == 2


# -- LLaMA-Factory: dataset_info.json ------------------------------------------------------------------------

ALPACA = [
    {"instruction": "Translate to French", "input": "Good morning", "output": "Bonjour",
     "system": "You translate.", "history": [["Hi", "Hello! What can I translate?"]]},
    {"instruction": "Name a primary color", "input": "", "output": "Red"},
]
ALPACA_CUSTOM = [{"question": "What is 2+2?", "answer": "4", "sys": "Be brief."}]
GLAIVE = [{
    "conversations": [
        {"from": "human", "value": "What is the weather in Paris?"},
        {"from": "function_call", "value": '{"name": "get_current_weather", "arguments": {"location": "Paris, France", "format": "celsius"}}'},
        {"from": "observation", "value": '{"temperature": 18}'},
        {"from": "gpt", "value": "It is 18 °C in Paris."},
    ],
    "system": "You are a weather bot.",
    "tools": json.dumps([WEATHER["function"]]),
}]
OPENAI_SHAREGPT = [{"messages": [
    {"role": "system", "content": "system prompt"},
    {"role": "user", "content": "human instruction"},
    {"role": "assistant", "content": "model response"},
    {"role": "user", "content": "second instruction"},
    {"role": "assistant", "content": "second response"},
]}]
CUSTOM_TAGS = [{"dialog": [
    {"speaker": "customer", "text": "Is the shop open?"},
    {"speaker": "agent", "text": "Yes, until 6 pm."},
]}]
BAD_SHAREGPT = [
    {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}, {"from": "gpt", "value": "c"}]},
    {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "c"}]},
    {"conversations": [{"from": "user", "value": "a"}, {"from": "gpt", "value": "b"}]},
    {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}], "kto_tag": True},
    {"conversations": [{"from": "human", "value": "<image>a"}, {"from": "gpt", "value": "b"}], "images": ["x.png"]},
    {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
]
INFO = {
    "alpaca_demo": {"file_name": "alpaca.json", "columns": {
        "prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"}},
    "alpaca_custom": {"file_name": "custom.jsonl", "columns": {"prompt": "question", "response": "answer", "system": "sys"}},
    "glaive_demo": {"file_name": "glaive.json", "formatting": "sharegpt",
                    "columns": {"messages": "conversations", "system": "system", "tools": "tools"}},
    "openai_demo": {"file_name": "openai.json", "formatting": "sharegpt", "columns": {"messages": "messages"},
                    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                             "assistant_tag": "assistant", "system_tag": "system"}},
    "shop": {"file_name": "shop", "formatting": "sharegpt", "columns": {"messages": "dialog"},
             "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "customer", "assistant_tag": "agent"}},
    "broken": {"file_name": "broken.jsonl", "formatting": "sharegpt",
               "columns": {"messages": "conversations", "kto_tag": "kto_tag", "images": "images"}},
    "hub": {"hf_hub_url": "llamafactory/alpaca_en"},
    "pairs": {"file_name": "alpaca.json", "ranking": True, "columns": {"prompt": "instruction", "chosen": "c", "rejected": "r"}},
    "sampled": {"file_name": "alpaca.json", "num_samples": 1},
    "csv": {"file_name": "data.csv"},
    "odd_column": {"file_name": "alpaca.json", "columns": {"instruction": "instruction"}},
}


@pytest.fixture
def lf_dir(tmp_path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "dataset_info.json").write_text(json.dumps(INFO, indent=2))
    (d / "alpaca.json").write_text(json.dumps(ALPACA, indent=2, ensure_ascii=False))
    write_jsonl(d / "custom.jsonl", ALPACA_CUSTOM)
    (d / "glaive.json").write_text(json.dumps(GLAIVE, indent=2, ensure_ascii=False))
    (d / "openai.json").write_text(json.dumps(OPENAI_SHAREGPT, indent=2))
    (d / "shop").mkdir()
    write_jsonl(d / "shop" / "part-0.jsonl", CUSTOM_TAGS)
    write_jsonl(d / "broken.jsonl", BAD_SHAREGPT)
    (d / "data.csv").write_text("instruction,output\nq,a\n")
    return d


def test_dataset_info_reads_each_dataset_with_its_own_mapping(qwen, qwen_dir, lf_dir, tmp_path):
    out = tmp_path / "o.jsonl"
    r = runner.invoke(app, ["prepare", str(lf_dir), "--dataset", "alpaca_demo,alpaca_custom", "--dataset", "glaive_demo",
                            "--dataset", "openai_demo", "--dataset", "shop", "-f", "qwen2.5", "-t", str(qwen_dir),
                            "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    native = [
        *ALPACA,
        {"instruction": "What is 2+2?", "output": "4", "system": "Be brief."},
        *GLAIVE,
        {"messages": OPENAI_SHAREGPT[0]["messages"]},
        {"messages": [{"role": "user", "content": "Is the shop open?"}, {"role": "assistant", "content": "Yes, until 6 pm."}]},
    ]
    assert rows(out) == encoded(qwen, native)
    got = read_jsonl(out)
    assert [Path(g["source"]).name for g in got] == ["alpaca.json", "alpaca.json", "custom.jsonl", "glaive.json",
                                                     "openai.json", "part-0.jsonl"]
    _, tok = qwen
    glaive = tok.decode(got[3]["input_ids"])
    assert "You are a weather bot." in glaive and '"name": "get_current_weather"' in glaive  # system and tools columns
    assert "Paris, France" in trained_text(tok, got[3]["input_ids"], got[3]["labels"])  # the function call is trained
    assert "Hello! What can I translate?" in trained_text(tok, got[0]["input_ids"], got[0]["labels"])  # history learned


def test_dataset_info_rejects_what_llamafactory_would_skip_or_misread_with_a_rule(qwen, lf_dir, tmp_path):
    report = prepare(lf_dir, *qwen, tmp_path / "o.jsonl", dataset="broken")
    assert report.written == 1
    assert [(r["record"], r["rule"]) for r in read_jsonl(Path(report.rejects))] == [
        (1, "turn_order"), (2, "turn_order"), (3, "role"), (4, "preference"), (5, "media")]


def test_mask_history_is_train_on_last_assistant(qwen, lf_dir, tmp_path):
    report = prepare(lf_dir, *qwen, tmp_path / "o.jsonl", dataset=["openai_demo", "alpaca_demo"], train_on="last_assistant")
    assert report.written == 3
    _, tok = qwen
    trained = [trained_text(tok, ids, labels) for ids, labels in rows(tmp_path / "o.jsonl")]
    assert trained[0].startswith("second response") and "model response" not in trained[0]
    assert trained[1].startswith("Bonjour") and "Hello!" not in trained[1]


def test_dataset_info_given_as_a_file_with_no_inputs(qwen_dir, lf_dir, tmp_path):
    out = tmp_path / "o.jsonl"
    r = runner.invoke(app, ["prepare", "--dataset-info", str(lf_dir / "dataset_info.json"), "--dataset", "shop",
                            "-f", "qwen2.5", "-t", str(qwen_dir), "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert len(read_jsonl(out)) == 1


@pytest.mark.parametrize("name, says", [
    ("hub", "it is read from hf_hub_url ('llamafactory/alpaca_en'); chatfmt reads local files"),
    ("pairs", "a preference dataset (ranking)"),
    ("sampled", "num_samples: LLaMA-Factory draws a random sample"),
    ("csv", "data.csv: chatfmt reads .json, .jsonl and .parquet files"),
    ("odd_column", "unknown column 'instruction'"),
    ("nope", "no dataset 'nope' (it has: alpaca_custom, alpaca_demo,"),
])
def test_dataset_descriptions_chatfmt_cannot_read_exactly_are_one_line(qwen_dir, lf_dir, tmp_path, name, says):
    r = runner.invoke(app, ["prepare", str(lf_dir), "--dataset", name, "-f", "qwen2.5", "-t", str(qwen_dir),
                            "-o", str(tmp_path / "o.jsonl"), "-q"])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and says in r.stderr and r.stderr.startswith("chatfmt: error: ")
    assert not (tmp_path / "o.jsonl").exists()


def test_dataset_info_options_that_conflict_are_refused(qwen_dir, lf_dir, tmp_path):
    base = ["-f", "qwen2.5", "-t", str(qwen_dir), "-o", str(tmp_path / "o.jsonl"), "-q"]
    r = runner.invoke(app, ["prepare", "--dataset-info", str(lf_dir / "dataset_info.json"), *base])
    assert r.exit_code == 2 and "--dataset-info needs --dataset" in r.stderr
    r = runner.invoke(app, ["prepare", str(lf_dir), "--dataset", "shop", "--input-kind", "openai", *base])
    assert r.exit_code == 2 and "--input-kind and --dataset" in r.stderr
    with pytest.raises(DatasetInfoError, match="the one input"):
        prepare([lf_dir, lf_dir], "qwen2.5", str(qwen_dir), tmp_path / "x.jsonl", dataset="shop")
    assert [d.name for d in load_dataset_info(lf_dir, ["shop", "glaive_demo"])] == ["shop", "glaive_demo"]


@pytest.mark.slow  # spawns worker processes; the default run: the dataset_info tests above (in this
# process) and tests/train/test_workers_and_api.py::test_workers_write_the_same_bytes_as_one_process
def test_dataset_info_layouts_reach_spawned_workers(qwen_dir, lf_dir, tmp_path, monkeypatch):
    import chatfmt.train.pipeline as pipeline

    monkeypatch.setattr(pipeline, "WORKERS_AFTER", 0.0)
    one = prepare(lf_dir, "qwen2.5", str(qwen_dir), tmp_path / "one.jsonl", dataset="alpaca_demo,glaive_demo,shop,broken",
                  batch_size=2)
    two = prepare(lf_dir, "qwen2.5", str(qwen_dir), tmp_path / "two.jsonl", dataset="alpaca_demo,glaive_demo,shop,broken",
                  batch_size=2, workers=2)
    assert two.workers == 2 and one.written == two.written == 5
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    assert Path(one.rejects).read_bytes() == Path(two.rejects).read_bytes()


@pytest.mark.slow
def test_dataset_info_layouts_reach_ray(qwen_dir, lf_dir, tmp_path):
    pytest.importorskip("ray")
    names = "alpaca_demo,glaive_demo,shop,broken"
    local = prepare(lf_dir, "qwen2.5", str(qwen_dir), tmp_path / "local.jsonl", dataset=names, batch_size=2)
    ray = prepare(lf_dir, "qwen2.5", str(qwen_dir), tmp_path / "ray.jsonl", dataset=names, batch_size=2, engine="ray")
    assert local.written == ray.written == 5
    assert (tmp_path / "local.jsonl").read_bytes() == (tmp_path / "ray.jsonl").read_bytes()
    assert Path(local.rejects).read_bytes() == Path(ray.rejects).read_bytes()


def test_dataset_map_function_reads_rows_with_a_dataset_info_mapping(qwen, lf_dir, tmp_path):
    datasets = pytest.importorskip("datasets")
    from chatfmt.train import dataset_map_function

    out = tmp_path / "o.jsonl"
    prepare(lf_dir, *qwen, out, dataset="alpaca_demo,shop")
    expected = rows(out)
    got = []
    for name, file in (("alpaca_demo", "alpaca.json"), ("shop", "shop/part-0.jsonl")):
        ds = datasets.load_dataset("json", data_files=str(lf_dir / file), split="train", cache_dir=str(tmp_path / "cache"))
        fn = dataset_map_function(*qwen, dataset=name, dataset_info=lf_dir / "dataset_info.json")
        mapped = ds.map(fn, batched=True, remove_columns=ds.column_names)
        assert all(e is None for e in mapped["error"])
        got += list(zip(mapped["input_ids"], mapped["labels"]))
    assert got == expected
    with pytest.raises(DatasetInfoError, match="together"):
        dataset_map_function(*qwen, dataset="shop")


_NAME = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(
    keys=st.lists(_NAME, min_size=2, max_size=2, unique=True),
    tags=st.lists(_NAME, min_size=5, max_size=5, unique=True),
    column=_NAME,
    system=st.one_of(st.none(), st.text(max_size=10)),
    turns=st.lists(st.tuples(st.sampled_from(["human", "observation"]), st.text(max_size=10),
                             st.sampled_from(["gpt", "function_call"]), st.text(max_size=10)), min_size=1, max_size=4),
)
def test_any_sharegpt_tag_mapping_reads_as_the_default_tags_do(keys, tags, column, system, turns):
    """A sharegpt record written with any role/content keys and role values, described by its tags,
    parses (or is refused) exactly as the same record with LLaMA-Factory's default tags."""
    from chatfmt.errors import ValidationError
    from chatfmt.train.dataset_info import Layout

    names = ["user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag"]
    default = {"user_tag": "human", "assistant_tag": "gpt", "observation_tag": "observation",
               "function_tag": "function_call", "system_tag": "system"}
    mine = dict(zip(names, tags))
    to_mine = {default[n]: mine[n] for n in names}
    call = '{"name": "f", "arguments": {}}'
    native_turns = ([{"from": "system", "value": system}] if system is not None else [])
    for u, ut, a, at in turns:
        native_turns += [{"from": u, "value": ut}, {"from": a, "value": call if a == "function_call" else at}]
    native = {"conversations": native_turns}
    record = {column: [{keys[0]: to_mine[t["from"]], keys[1]: t["value"]} for t in native_turns]}
    layout = Layout("x", "sharegpt", (("messages", column),),
                    (("role_tag", keys[0]), ("content_tag", keys[1]), *mine.items()))

    def outcome(rec, kind, convert):
        try:
            return parse_record(convert(rec), kind)
        except ValidationError as e:
            return e.rule

    assert outcome(record, "sharegpt", layout.convert) == outcome(native, "sharegpt", lambda r: r)
