"""Template keyword arguments reach every path: ``fmt.render``/``encode``/``encode_batch`` (as keywords
or one ``template_kwargs={...}`` mapping), ``chatfmt.prepare`` (in this process and in spawned
workers), ``dataset_map_function`` (``num_proc=2`` too), ``Chat``, and the ``--template-kwarg
KEY=VALUE`` option of render, encode, prepare and chat; one the format never reads is reported, not
ignored. Real templates that read a keyword: Qwen3's ``enable_thinking`` (the built-in and
llama.cpp's copy of Qwen3-0.6B's template; it changes the generation prompt) and Llama-3.1's
``date_string`` (it changes every conversation's system header, so training rows show it)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import chatfmt
from chatfmt.cli import app
from chatfmt.encode import encode, encode_batch
from chatfmt.errors import ChatfmtWarning, NotRenderedWarning
from chatfmt.messages import parse_record
from chatfmt.train import dataset_map_function, prepare

runner = CliRunner()
ASK = [{"role": "user", "content": "What is 2+2?"}]
CONV = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."}]
EMPTY_THINK = "<|im_start|>assistant\n<think>\n\n</think>\n\n"
DATE = "Today Date: 01 Jan 2025"


@pytest.fixture(scope="module")
def qwen3_jinja(testdata) -> Path:
    return testdata("templates", "llama.cpp-0c1e570", "Qwen-Qwen3-0.6B.jinja")


@pytest.fixture(scope="module")
def qwen_tok(testdata, shared_tokenizer):
    return shared_tokenizer(testdata("qwen2.5"))


@pytest.fixture(scope="module")
def llama3_dir(testdata) -> Path:
    return testdata("llama3")


def quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error", ChatfmtWarning)
    return ctx


# -- Python: render, encode, encode_batch -----------------------------------------------------------


@pytest.mark.parametrize("which", ["builtin", "jinja"])
def test_template_kwargs_mapping_renders_like_keywords(which, qwen3_jinja):
    fmt = chatfmt.load_format("qwen3" if which == "builtin" else qwen3_jinja)
    by_kw = fmt.render(ASK, add_generation_prompt=True, enable_thinking=False)
    by_map = fmt.render(ASK, add_generation_prompt=True, template_kwargs={"enable_thinking": False})
    assert by_kw == by_map and by_map.endswith(EMPTY_THINK)
    assert not fmt.render(ASK, add_generation_prompt=True).endswith(EMPTY_THINK)
    segs = fmt.render_segments(ASK, add_generation_prompt=True, template_kwargs={"enable_thinking": False})
    assert segs.text == by_kw
    rendered, missing = fmt.render_checked(ASK, add_generation_prompt=True, template_kwargs={"enable_thinking": False})
    assert rendered.text == by_kw and missing == ()
    assert fmt.unrendered(ASK, template_kwargs={"enable_thinkin": False}) == ("enable_thinkin",)


def test_template_kwargs_given_twice_differently_is_refused():
    fmt = chatfmt.load_format("qwen3")
    with pytest.raises(TypeError, match="'enable_thinking' is given twice"):
        fmt.render(ASK, enable_thinking=True, template_kwargs={"enable_thinking": False})
    with pytest.raises(TypeError, match="must be a mapping"):
        fmt.render(ASK, template_kwargs=[("enable_thinking", False)])
    # the same value both ways is one keyword
    assert fmt.render(ASK, add_generation_prompt=True, enable_thinking=False, template_kwargs={"enable_thinking": False}).endswith(EMPTY_THINK)


def test_encode_and_encode_batch_take_template_kwargs(qwen3_jinja, qwen_tok):
    fmt = chatfmt.load_format(qwen3_jinja)
    off = encode(fmt, ASK, qwen_tok, add_generation_prompt=True, template_kwargs={"enable_thinking": False})
    assert qwen_tok.decode(off.input_ids).endswith(EMPTY_THINK)
    assert off.input_ids == encode(fmt, ASK, qwen_tok, add_generation_prompt=True, enable_thinking=False).input_ids
    batch = encode_batch(fmt, [ASK, ASK], qwen_tok, add_generation_prompt=True, template_kwargs={"enable_thinking": False})
    assert [e.input_ids for e in batch] == [off.input_ids] * 2
    assert fmt.encode(ASK, qwen_tok, add_generation_prompt=True, template_kwargs={"enable_thinking": False}).input_ids == off.input_ids


def test_encode_reports_a_keyword_the_template_does_not_read(testdata, qwen_tok):
    fmt = chatfmt.load_format(testdata("qwen2.5", "tokenizer_config.json"))
    with pytest.warns(NotRenderedWarning, match="does not read the template keyword argument 'enable_thinking'"):
        encode(fmt, CONV, qwen_tok, template_kwargs={"enable_thinking": False})


# -- prepare: this process, spawned workers, the report ---------------------------------------------


def _records(n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"question {k}"}, {"role": "assistant", "content": f"answer {k}"}]}
            for k in range(n)]


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def workers_at_once(monkeypatch):
    import chatfmt.train.pipeline as pipeline

    monkeypatch.setattr(pipeline, "WORKERS_AFTER", 0.0)


#: worker processes: 1 (this process) in the default run; 2 (spawned workers) is slow
WORKERS = [1, pytest.param(2, marks=pytest.mark.slow)]


@pytest.mark.parametrize("workers", WORKERS)
def test_prepare_renders_every_record_with_the_template_kwargs_in_spawned_workers(tmp_path, llama3_dir, workers_at_once, workers):
    src = _write(tmp_path / "in.jsonl", _records(24))
    kw = {"date_string": "01 Jan 2025"}
    one = prepare(src, "llama-3.1", str(llama3_dir), tmp_path / "one.jsonl", template_kwargs=kw, batch_size=4)
    two = prepare(src, "llama-3.1", str(llama3_dir), tmp_path / "two.jsonl", template_kwargs=kw, batch_size=4, workers=workers)
    plain = prepare(src, "llama-3.1", str(llama3_dir), tmp_path / "plain.jsonl", batch_size=4)
    assert two.workers == workers and one.written == two.written == 24
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    tok = chatfmt.load_tokenizer(llama3_dir)
    fmt = chatfmt.load_format("llama-3.1")
    expected = encode_batch(fmt, [parse_record(r) for r in _records(24)], tok, date_string="01 Jan 2025")
    rows = _rows(tmp_path / "two.jsonl")
    assert [(r["input_ids"], r["labels"]) for r in rows] == [(e.input_ids, e.labels) for e in expected]
    assert DATE in tok.decode(rows[0]["input_ids"])
    assert DATE not in tok.decode(_rows(tmp_path / "plain.jsonl")[0]["input_ids"])
    assert one.to_dict()["template_kwargs"] == kw and one.template_kwargs_not_read == ()
    assert plain.to_dict()["template_kwargs"] == {}


def test_prepare_reports_a_keyword_the_format_never_reads_once_up_front(tmp_path, testdata):
    src = _write(tmp_path / "in.jsonl", _records(5))
    with pytest.warns(NotRenderedWarning) as caught:
        report = prepare(src, "qwen2.5", str(testdata("qwen2.5")), tmp_path / "out.jsonl",
                         template_kwargs={"enable_thinking": False, "date_string": None})
    said = [str(w.message) for w in caught if issubclass(w.category, NotRenderedWarning)]
    assert said == ["chat format 'qwen2.5' does not read the template keyword argument 'enable_thinking': it has no effect"]
    assert report.template_kwargs_not_read == ("enable_thinking",)  # None carries nothing to lose
    assert report.to_dict()["template_kwargs_not_read"] == ["enable_thinking"]
    assert report.written == 5


# -- dataset_map_function -----------------------------------------------------------------------------


def test_dataset_map_function_renders_rows_with_the_template_kwargs(llama3_dir):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(_records(8))
    fn = dataset_map_function("llama-3.1", str(llama3_dir), template_kwargs={"date_string": "01 Jan 2025"})
    out = ds.map(fn, batched=True, batch_size=3, num_proc=2, remove_columns=ds.column_names)
    tok = chatfmt.load_tokenizer(llama3_dir)
    expected = encode_batch(chatfmt.load_format("llama-3.1"), [parse_record(r) for r in _records(8)], tok,
                            template_kwargs={"date_string": "01 Jan 2025"})
    assert out["input_ids"] == [e.input_ids for e in expected]
    assert out["labels"] == [e.labels for e in expected]
    assert all(e is None for e in out["error"])


def test_dataset_map_function_reports_a_keyword_the_format_never_reads(qwen_tok):
    with pytest.warns(NotRenderedWarning, match="'enable_thinking'"):
        dataset_map_function(chatfmt.load_format("qwen2.5"), qwen_tok, template_kwargs={"enable_thinking": False})
    fn = dataset_map_function("qwen2.5", qwen_tok, template_kwargs={"enable_thinking": False})  # loaded on first use
    with pytest.warns(NotRenderedWarning, match="'enable_thinking'"):
        fn({"messages": [CONV]})


# -- the command line ---------------------------------------------------------------------------------


def test_cli_render_and_encode_take_template_kwargs(tmp_path, qwen3_jinja, testdata, shared_tokenizer):
    conv = tmp_path / "c.json"
    conv.write_text(json.dumps(ASK))
    r = runner.invoke(app, ["render", str(conv), "-f", "qwen3", "-g", "--template-kwarg", "enable_thinking=false"])
    assert r.exit_code == 0, r.output
    assert r.stdout.endswith(EMPTY_THINK)
    r = runner.invoke(app, ["render", str(conv), "-f", "qwen3", "-g", "--template-kwarg", "enable_thinking=true"])
    assert not r.stdout.endswith(EMPTY_THINK)  # JSON true, not the string "true"
    r = runner.invoke(app, ["encode", str(conv), "-f", str(qwen3_jinja), "-t", str(testdata("qwen2.5")), "-g", "--json",
                            "--template-kwarg", "enable_thinking=false"])
    assert r.exit_code == 0, r.output
    ids = json.loads(r.stdout)["input_ids"]
    tok = shared_tokenizer(testdata("qwen2.5"))
    assert tok.decode(ids).endswith(EMPTY_THINK)


def test_cli_template_kwarg_values_are_json_when_they_parse():
    from chatfmt.cli.common import template_kwargs_option

    got = template_kwargs_option(["a=false", "b=3", 'c="x"', "d=[1, 2]", "e=hello world", "f=", "g=null", "h=a=b"])
    assert got == {"a": False, "b": 3, "c": "x", "d": [1, 2], "e": "hello world", "f": "", "g": None, "h": "a=b"}


@pytest.mark.parametrize("bad, says", [
    ("enable_thinking", "takes KEY=VALUE"),
    ("=1", "takes KEY=VALUE"),
    ("two words=1", "is not a keyword name"),
])
def test_cli_malformed_template_kwarg_is_one_line(tmp_path, bad, says):
    conv = tmp_path / "c.json"
    conv.write_text(json.dumps(ASK))
    r = runner.invoke(app, ["render", str(conv), "-f", "qwen3", "--template-kwarg", bad])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and says in r.stderr


def test_cli_template_kwarg_given_twice_differently_is_refused(tmp_path):
    conv = tmp_path / "c.json"
    conv.write_text(json.dumps(ASK))
    r = runner.invoke(app, ["render", str(conv), "-f", "qwen3", "--template-kwarg", "enable_thinking=false",
                            "--template-kwarg", "enable_thinking=true"])
    assert r.exit_code == 2 and "given twice" in r.stderr


def test_cli_render_warns_about_a_keyword_the_template_does_not_read(tmp_path):
    conv = tmp_path / "c.json"
    conv.write_text(json.dumps(ASK))
    r = runner.invoke(app, ["render", str(conv), "-f", "qwen2.5", "--template-kwarg", "enable_thinking=false"])
    assert r.exit_code == 0
    assert r.stderr == (
        "chatfmt: warning: chat format 'qwen2.5' does not read the template keyword argument 'enable_thinking': it has no effect\n"
    )


def test_cli_prepare_takes_template_kwargs_and_says_which_are_not_read(tmp_path, llama3_dir):
    src = _write(tmp_path / "in.jsonl", _records(3))
    out = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["prepare", str(src), "-f", "llama-3.1", "-t", str(llama3_dir), "-o", str(out), "-q",
                            "--template-kwarg", 'date_string="01 Jan 2025"', "--template-kwarg", "enable_thinking=false"])
    assert r.exit_code == 0, r.output
    tok = chatfmt.load_tokenizer(llama3_dir)
    assert all(DATE in tok.decode(row["input_ids"]) for row in _rows(out))
    lines = [x for x in r.stderr.splitlines() if x.startswith("chatfmt: warning:")]
    assert lines == [
        "chatfmt: warning: chat format 'llama-3.1' does not read the template keyword argument 'enable_thinking': "
        "it has no effect on any record"
    ]
    assert "NotRenderedWarning" not in r.stderr


# -- Chat and chatfmt chat ------------------------------------------------------------------------------


def test_chat_renders_its_prompts_with_the_template_kwargs(smollm2_gguf, qwen3_jinja):
    chat = chatfmt.Chat(smollm2_gguf, format=qwen3_jinja, template_kwargs={"enable_thinking": False},
                        max_new_tokens=1, temperature=0, allow_missing_tokens=True)
    chat.messages.append({"role": "user", "content": "What is 2+2?"})
    assert chat.prompt_text().endswith(EMPTY_THINK)


def test_cli_chat_says_a_keyword_the_format_does_not_read(smollm2_gguf):
    r = runner.invoke(app, ["chat", "-m", str(smollm2_gguf), "-p", "Hi", "--max-new-tokens", "1", "--temperature", "0",
                            "--template-kwarg", "enable_thinking=false"])
    assert r.exit_code == 0, r.output
    assert "does not read the template keyword argument 'enable_thinking'" in r.stderr


@pytest.mark.slow
def test_prepare_on_ray_renders_with_the_template_kwargs(tmp_path, llama3_dir):
    pytest.importorskip("ray")
    src = _write(tmp_path / "in.jsonl", _records(12))
    kw = {"date_string": "01 Jan 2025"}
    local = prepare(src, "llama-3.1", str(llama3_dir), tmp_path / "local.jsonl", template_kwargs=kw, batch_size=4)
    ray = prepare(src, "llama-3.1", str(llama3_dir), tmp_path / "ray.jsonl", template_kwargs=kw, batch_size=4, engine="ray")
    assert (tmp_path / "local.jsonl").read_bytes() == (tmp_path / "ray.jsonl").read_bytes()
    assert local.written == ray.written == 12
    tok = chatfmt.load_tokenizer(llama3_dir)
    assert DATE in tok.decode(_rows(tmp_path / "ray.jsonl")[0]["input_ids"])


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(key=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), value=_JSON)
def test_cli_template_kwarg_json_values_round_trip(key, value):
    from chatfmt.cli.common import template_kwargs_option

    assert template_kwargs_option([f"{key}={json.dumps(value)}"]) == {key: value}


@settings(max_examples=200, deadline=None)
@given(key=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), text=st.text(max_size=12))
def test_cli_template_kwarg_value_that_is_not_json_stays_the_string(key, text):
    from chatfmt.cli.common import template_kwargs_option

    try:
        expected = json.loads(text)
    except ValueError:
        expected = text
    assert template_kwargs_option([f"{key}={text}"]) == {key: expected}


@pytest.mark.parametrize("which", ["builtin", "jinja"])
def test_cli_render_and_encode_read_a_records_own_chat_template_kwargs(tmp_path, qwen3_jinja, testdata, which, shared_tokenizer):
    fmt = "qwen3" if which == "builtin" else str(qwen3_jinja)
    rec = tmp_path / "r.json"
    rec.write_text(json.dumps({"messages": ASK, "chat_template_kwargs": {"enable_thinking": False}}))
    r = runner.invoke(app, ["render", str(rec), "-f", fmt, "-g"])
    assert r.exit_code == 0, r.output
    assert r.stdout.endswith(EMPTY_THINK)
    r = runner.invoke(app, ["render", str(rec), "-f", fmt, "-g", "--template-kwarg", "enable_thinking=true"])
    assert r.stdout.endswith(EMPTY_THINK)  # the record's own win, as in prepare
    r = runner.invoke(app, ["encode", str(rec), "-f", fmt, "-t", str(testdata("qwen2.5")), "-g", "--json"])
    assert r.exit_code == 0, r.output
    tok = shared_tokenizer(testdata("qwen2.5"))
    assert tok.decode(json.loads(r.stdout)["input_ids"]).endswith(EMPTY_THINK)
    rec.write_text(json.dumps({"messages": ASK, "chat_template_kwargs": ["enable_thinking"]}))
    r = runner.invoke(app, ["render", str(rec), "-f", fmt, "-g"])
    assert r.exit_code == 2 and "chat_template_kwargs" in r.stderr
