"""Hub model ids on the command line (--format / --tokenizer / --model / --gguf-file, detect, lint,
prepare, inspect, serve): the same output as the local files, and a missing repo, file, revision or a
gated repo as one ``chatfmt: error:`` line with exit 2. Fixtures ``hub_cache`` / ``hub_server``:
tests/conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatfmt.cli import app

runner = CliRunner()
REPO = "Qwen/Qwen2.5-0.5B-Instruct"
QWEN_FILES = ("tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json")
CONV = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.fixture
def qwen_cached(hub_cache, testdata) -> Path:
    """Qwen2.5's tokenizer files as the Hub repo REPO in an offline Hub cache; the local directory."""
    src = testdata("qwen2.5")
    fake, cache = hub_cache
    fake.add(REPO, {n: src / n for n in QWEN_FILES})
    fake.write_cache(cache, REPO)
    return src


def _conv(tmp_path: Path) -> str:
    p = tmp_path / "conv.json"
    p.write_text(json.dumps(CONV), encoding="utf-8")
    return str(p)


def _error_line(res) -> str:
    # serve logs JSON records on stderr; the error is the one line that is not one
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("{")]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("chatfmt: error: "), res.stderr
    return lines[0]


def test_render_with_a_hub_format_prints_what_the_local_dir_prints(qwen_cached, tmp_path):
    conv = _conv(tmp_path)
    hub_res = runner.invoke(app, ["render", conv, "-f", REPO, "-g"])
    local_res = runner.invoke(app, ["render", conv, "-f", str(qwen_cached), "-g"])
    assert hub_res.exit_code == 0, hub_res.output
    assert hub_res.stdout == local_res.stdout and "<|im_start|>assistant\n" in hub_res.stdout


def test_encode_with_hub_format_and_tokenizer_gives_the_local_ids(qwen_cached, tmp_path):
    conv = _conv(tmp_path)
    hub_res = runner.invoke(app, ["encode", conv, "-f", REPO, "-t", REPO, "--json"])
    local_res = runner.invoke(app, ["encode", conv, "-f", str(qwen_cached), "-t", str(qwen_cached), "--json"])
    assert hub_res.exit_code == 0, hub_res.output
    assert json.loads(hub_res.stdout) == json.loads(local_res.stdout)


def test_detect_lint_and_diff_take_a_hub_id(qwen_cached):
    res = runner.invoke(app, ["detect", REPO, "--json"])
    assert res.exit_code == 0, res.output
    got, want = json.loads(res.stdout), json.loads(runner.invoke(app, ["detect", str(qwen_cached), "--json"]).stdout)
    assert "/snapshots/" in got.pop("source") and want.pop("source") == str(qwen_cached)
    assert got == want
    res = runner.invoke(app, ["lint", REPO, "--no-reference"])
    assert res.exit_code in (0, 1), res.output
    res = runner.invoke(app, ["diff", REPO, str(qwen_cached), "--json"])
    assert res.exit_code == 0, res.output


def test_prepare_with_hub_ids_writes_the_rows_the_local_dir_writes(qwen_cached, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(CONV) + "\n" + json.dumps({"instruction": "Say yes", "output": "yes"}) + "\n")
    out_hub, out_local = tmp_path / "hub.jsonl", tmp_path / "local.jsonl"
    res = runner.invoke(app, ["prepare", str(src), "-f", REPO, "-t", REPO, "-o", str(out_hub), "-w", "1", "-q"])
    assert res.exit_code == 0, res.output
    runner.invoke(app, ["prepare", str(src), "-f", str(qwen_cached), "-t", str(qwen_cached), "-o", str(out_local), "-w", "1", "-q"])

    def rows(p: Path) -> list:
        return [{k: r[k] for k in ("input_ids", "labels")} for r in map(json.loads, p.read_text().splitlines())]

    assert rows(out_hub) == rows(out_local)


def test_a_hub_id_not_in_the_cache_while_offline_is_one_line(hub_cache, tmp_path):
    line = _error_line(runner.invoke(app, ["render", _conv(tmp_path), "-f", "org/not-cached"]))
    assert line.startswith("chatfmt: error: org/not-cached: not a local path, and not in the Hub cache ")
    assert "HF_HUB_OFFLINE" in line


def test_a_mistyped_template_path_still_says_no_such_file(hub_cache, tmp_path):
    line = _error_line(runner.invoke(app, ["render", _conv(tmp_path), "-f", "templates/chat.jinja"]))
    assert "no such file or directory" in line


def test_a_built_in_name_is_never_looked_up_on_the_hub(hub_server, tmp_path):
    fake, _ = hub_server
    res = runner.invoke(app, ["render", _conv(tmp_path), "-f", "qwen2.5"])
    assert res.exit_code == 0, res.output
    assert fake.requests == []


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("org/missing", "chatfmt: error: org/missing: not a local path, and no model repository org/missing on the Hub"),
        ("org/model@v9", "chatfmt: error: org/model@v9: no revision 'v9' in the repository org/model"),
        ("org/model:other.gguf", "chatfmt: error: org/model:other.gguf: no file 'other.gguf' in the repository org/model; its GGUF files: m.gguf"),
        ("org/gated", "chatfmt: error: org/gated: a gated repository: accept its conditions on the Hub and set HF_TOKEN"),
    ],
)
def test_hub_errors_are_one_line_and_exit_2(hub_server, tmp_path, spec, expected):
    fake, _ = hub_server
    fake.add("org/model", {"chat_template.jinja": "{{ messages[0]['content'] }}", "m.gguf": b"GGUF"})
    fake.add("org/gated", {"chat_template.jinja": "x", "tokenizer.json": "{}"}, gated=True)
    line = _error_line(runner.invoke(app, ["encode", _conv(tmp_path), "-f", "chatml", "-t", spec]))
    assert line.startswith(expected), line


def test_gguf_file_without_model_is_one_line(hub_cache):
    line = _error_line(runner.invoke(app, ["chat", "--gguf-file", "x.gguf", "-p", "hi"]))
    assert "--gguf-file" in line and "--model" in line


def test_serve_refuses_a_missing_hub_model_before_serving(hub_cache):
    line = _error_line(runner.invoke(app, ["serve", "--model", "org/absent-GGUF", "--gguf-file", "m.gguf"]))
    assert line.startswith("chatfmt: error: org/absent-GGUF:m.gguf: not a local path, and not in the Hub cache")


def test_serve_names_a_hub_model_by_its_repo_id(hub_cache, smollm2_gguf):
    pytest.importorskip("llama_cpp")
    from chatfmt.cli.serve import build_engine

    fake, cache = hub_cache
    repo = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
    fake.add(repo, {smollm2_gguf.name: smollm2_gguf})
    fake.write_cache(cache, repo)
    engine = build_engine(
        model=repo, backend="llama.cpp", chat_format=None, tokenizer=None, model_name=None, upstream=None,
        upstream_kind="llama.cpp", upstream_model=None, upstream_prompt="ids", upstream_api_key=None,
        upstream_concurrency=1, n_ctx=256,
    )
    try:
        assert engine.model_id == repo
        assert engine.format.info.name == smollm2_gguf.stem
    finally:
        engine.backend.close()


@pytest.mark.slow
def test_chat_answers_from_a_hub_gguf_as_from_the_local_file(hub_cache, smollm2_gguf):
    pytest.importorskip("llama_cpp")
    fake, cache = hub_cache
    repo = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
    fake.add(repo, {smollm2_gguf.name: smollm2_gguf, "SmolLM2-135M-Instruct.Q8_0.gguf": smollm2_gguf})
    fake.write_cache(cache, repo)
    args = ["-p", "Name a colour.", "--temperature", "0", "--max-new-tokens", "8", "--backend", "llama.cpp", "--json"]
    hub_res = runner.invoke(app, ["chat", "--model", repo, "--gguf-file", smollm2_gguf.name, *args])
    local_res = runner.invoke(app, ["chat", "--model", str(smollm2_gguf), *args])
    assert hub_res.exit_code == 0, hub_res.output
    assert json.loads(hub_res.stdout)["content"] == json.loads(local_res.stdout)["content"]


def test_serve_upstream_takes_a_hub_tokenizer_without_progress_bars_in_its_json_log(hub_server, testdata, capfd):
    from huggingface_hub.utils import enable_progress_bars

    from chatfmt.cli.serve import build_engine

    fake, _ = hub_server
    src = testdata("qwen2.5")
    fake.add(REPO, {n: src / n for n in QWEN_FILES})
    try:
        engine = build_engine(
            model=None, backend="auto", chat_format=None, tokenizer=REPO, model_name="m", upstream="http://127.0.0.1:9",
            upstream_kind="llama.cpp", upstream_model=None, upstream_prompt="ids", upstream_api_key=None,
            upstream_concurrency=1, n_ctx=None,
        )
    finally:
        err = capfd.readouterr().err
        enable_progress_bars()
    assert engine.format.info.name == "Qwen2.5-0.5B-Instruct"
    assert any("/resolve/" in p for _, p in fake.requests)  # it did download
    assert "Fetching" not in err and "it/s" not in err


def test_prepare_records_the_hub_commit_and_inspect_reads_the_tokenizer_from_it(qwen_cached, hub_cache, tmp_path):
    pytest.importorskip("pyarrow")
    from chatfmt.train.writers import read_metadata

    fake, _ = hub_cache
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(CONV) + "\n")
    out = tmp_path / "out.parquet"
    res = runner.invoke(app, ["prepare", str(src), "-f", REPO, "-t", REPO, "-o", str(out), "-w", "1", "-q"])
    assert res.exit_code == 0, res.output
    commit = fake.commit_of(REPO, "main")
    assert read_metadata(str(out))["tokenizer"] == f"{REPO}@{commit}"
    res = runner.invoke(app, ["inspect", str(out)])
    assert res.exit_code == 0, res.output
    assert "hello" in res.stdout  # decoded text, not ids only
