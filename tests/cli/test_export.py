"""``chatfmt export``: a format as a Jinja chat template or a TOML spec, to stdout or a file; formats
that cannot be exported fail with one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatfmt.cli import app
from chatfmt.formats import registry
from chatfmt.formats.spec_toml import load_spec

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "formats"
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Bye"},
]


def test_export_a_builtin_to_toml_prints_a_spec_that_renders_like_the_builtin(tmp_path):
    res = runner.invoke(app, ["export", "qwen2.5", "--to", "toml"])
    assert res.exit_code == 0, res.output
    path = tmp_path / "qwen.toml"
    path.write_text(res.stdout, encoding="utf-8")
    assert load_spec(path).render(MESSAGES, add_generation_prompt=True) == registry.get("qwen2.5").render(
        MESSAGES, add_generation_prompt=True
    )


def test_export_a_toml_file_to_jinja_writes_the_output_file(tmp_path):
    pytest.importorskip("transformers")
    from transformers.utils.chat_template_utils import render_jinja_template

    out = tmp_path / "chat_template.jinja"
    res = runner.invoke(app, ["export", str(EXAMPLES / "headings.toml"), "--to", "jinja", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    rendered, _ = render_jinja_template([MESSAGES], chat_template=out.read_text("utf-8"), add_generation_prompt=True)
    assert rendered[0] == load_spec(EXAMPLES / "headings.toml").render(MESSAGES, add_generation_prompt=True)


def test_exported_jinja_is_accepted_back_as_a_format(tmp_path):
    out = tmp_path / "t.jinja"
    assert runner.invoke(app, ["export", "alpaca", "--to", "jinja", "-o", str(out)]).exit_code == 0
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps(MESSAGES), encoding="utf-8")
    via_template = runner.invoke(app, ["render", str(conv), "-f", str(out), "-g"])
    via_builtin = runner.invoke(app, ["render", str(conv), "-f", "alpaca", "-g"])
    assert via_template.exit_code == 0, via_template.output
    assert via_template.stdout == via_builtin.stdout


def test_generation_blocks_flag_marks_trained_text():
    plain = runner.invoke(app, ["export", "chatml", "--to", "jinja"])
    marked = runner.invoke(app, ["export", "chatml", "--to", "jinja", "--generation-blocks"])
    assert "{%- generation -%}" in marked.stdout and "{%- generation -%}" not in plain.stdout


def test_a_format_without_a_spec_fails_with_one_line_and_exit_code_2():
    res = runner.invoke(app, ["export", "llama-2", "--to", "toml"])
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1
    assert res.stderr.startswith("chatfmt: error: format 'llama-2' has no declarative spec")


@pytest.mark.parametrize("name", ["phi-3", "yi", "hermes-2-pro"])
def test_a_builtin_the_spec_language_cannot_express_says_why_in_one_line(name):
    res = runner.invoke(app, ["export", name, "--to", "toml"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert f"format {name!r} has no declarative spec (it is implemented in Python)" in res.stderr
    assert "formats with one: alpaca, chatml, gemma, internlm2, llama-3, openchat, phi-4, qwen2.5, smollm2, zephyr" in res.stderr


@pytest.mark.parametrize("name", ["phi-3", "hermes-2-pro", "falcon3"])
def test_a_builtin_without_a_spec_exports_its_own_jinja_template(name):
    res = runner.invoke(app, ["export", name, "--to", "jinja"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"{{#- {name}: chat template exported by chatfmt from its built-in format")


@pytest.mark.parametrize("name", ["smollm2", "zephyr", "llama-3", "phi-4", "internlm2", "openchat", "gemma"])
def test_newly_exportable_builtins_export_to_toml_that_renders_like_them(name, tmp_path):
    res = runner.invoke(app, ["export", name, "--to", "toml"])
    assert res.exit_code == 0, res.output
    path = tmp_path / "f.toml"
    path.write_text(res.stdout, encoding="utf-8")
    fmt = registry.get(name)
    messages = MESSAGES if fmt.info.supports_system else MESSAGES[1:]  # gemma: no system role
    for g in (False, True):
        assert load_spec(path).render_segments(messages, add_generation_prompt=g).segments == fmt.render_segments(
            messages, add_generation_prompt=g
        ).segments


def test_a_jinja_template_cannot_become_toml(tmp_path):
    path = tmp_path / "t.jinja"
    path.write_text("{{ messages[0].content }}", encoding="utf-8")
    res = runner.invoke(app, ["export", str(path), "--to", "toml"])
    assert res.exit_code == 2
    assert "cannot be turned into a TOML spec" in res.stderr
    # ... but exports to Jinja as itself
    res = runner.invoke(app, ["export", str(path), "--to", "jinja"])
    assert res.exit_code == 0 and res.stdout == "{{ messages[0].content }}"


def test_an_unknown_target_or_format_is_a_user_error(tmp_path):
    res = runner.invoke(app, ["export", "chatml", "--to", "yaml"])
    assert res.exit_code == 2 and "--to must be one of jinja, toml" in res.stderr
    res = runner.invoke(app, ["export", "chatlm", "--to", "toml"])
    assert res.exit_code == 2 and "unknown format 'chatlm' (did you mean" in res.stderr


def test_a_broken_toml_file_is_reported_with_its_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[roles.user]\nprefx = "a"\n', encoding="utf-8")
    res = runner.invoke(app, ["export", str(path), "--to", "jinja"])
    assert res.exit_code == 2
    assert res.stderr == f"chatfmt: error: {path}:3: roles.user.prefx: unknown key (did you mean 'prefix'?)\n"


# -- export --into MODEL_DIR: the template transformers reads back -----------------------------------


def _model_dir(testdata, tmp_path, name, files):
    import shutil

    out = tmp_path / name
    out.mkdir()
    for f in files:
        shutil.copy(testdata(name, f), out / f)
    return out


QWEN_FILES = ("tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json")
CONVERSATIONS = [MESSAGES, [*MESSAGES[1:], {"role": "assistant", "content": "Bye."}], [{"role": "user", "content": "你好 <|im_end|>"}]]


def _transformers_tokenizer(model_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(model_dir))


def _rendered_by_transformers(model_dir, messages, **kw):
    return _transformers_tokenizer(model_dir).apply_chat_template(messages, tokenize=False, **kw)


@pytest.mark.parametrize("fmt", ["chatml", str(EXAMPLES / "headings.toml"), "llama-3.1"])
def test_export_into_a_model_dir_is_what_transformers_renders_and_nothing_else_changes(fmt, testdata, tmp_path):
    d = _model_dir(testdata, tmp_path, "qwen2.5", QWEN_FILES)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    config = json.loads(before["tokenizer_config.json"])
    res = runner.invoke(app, ["export", fmt, "--into", str(d)])
    assert res.exit_code == 0, res.output
    from chatfmt import load_format

    want = load_format(fmt)
    hf = _transformers_tokenizer(d)  # read once: every render below uses the exported files
    for conv in CONVERSATIONS:
        for g in (False, True):
            assert hf.apply_chat_template(conv, tokenize=False, add_generation_prompt=g) == want.render(conv, add_generation_prompt=g)
    # chat_template.jinja is new; tokenizer_config.json lost only its chat_template (transformers 5's own layout)
    after = {p.name: p.read_bytes() for p in d.iterdir()}
    assert set(after) == set(before) | {"chat_template.jinja"}
    assert {k: v for k, v in after.items() if k not in ("tokenizer_config.json", "chat_template.jinja")} == {
        k: v for k, v in before.items() if k != "tokenizer_config.json"
    }
    assert json.loads(after["tokenizer_config.json"]) == {k: v for k, v in config.items() if k != "chat_template"}
    assert res.stderr == f"{d}: wrote chat_template.jinja, tokenizer_config.json\n"


def test_an_edited_format_exported_into_a_model_dir_renders_with_the_edit(testdata, tmp_path):
    d = _model_dir(testdata, tmp_path, "qwen2.5", QWEN_FILES)
    res = runner.invoke(app, ["export", "qwen2.5", "--to", "toml"])
    edited = tmp_path / "mine.toml"
    assert 'You are Qwen, created by Alibaba Cloud' in res.stdout
    edited.write_text(res.stdout.replace("You are Qwen, created by Alibaba Cloud", "You are Quill, made here"), encoding="utf-8")
    assert runner.invoke(app, ["export", str(edited), "--into", str(d)]).exit_code == 0
    text = _rendered_by_transformers(d, MESSAGES[1:2], add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are Quill, made here. You are a helpful assistant.<|im_end|>")
    # and chatfmt reads the directory back as the same format
    from chatfmt import load_format

    assert load_format(d).render(MESSAGES[1:2], add_generation_prompt=True) == text


def test_export_into_a_second_time_replaces_only_the_template(testdata, tmp_path):
    d = _model_dir(testdata, tmp_path, "qwen2.5", QWEN_FILES)
    assert runner.invoke(app, ["export", "chatml", "--into", str(d)]).exit_code == 0
    config = (d / "tokenizer_config.json").read_bytes()
    res = runner.invoke(app, ["export", "zephyr", "--into", str(d)])
    assert res.exit_code == 0 and res.stderr == f"{d}: wrote chat_template.jinja\n"
    assert (d / "tokenizer_config.json").read_bytes() == config
    from chatfmt import load_format

    assert _rendered_by_transformers(d, MESSAGES) == load_format("zephyr").render(MESSAGES)


def test_named_templates_in_tokenizer_config_move_to_files_and_a_kept_tool_use_is_warned_about(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models

    d = tmp_path / "m"
    d.mkdir()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>")),
                                               unk_token="<unk>")
    tok.save_pretrained(d)
    config = json.loads((d / "tokenizer_config.json").read_text("utf-8"))
    config["chat_template"] = [{"name": "default", "template": "old"}, {"name": "tool_use", "template": "TOOLS"},
                               {"name": "rag", "template": "RAG"}]
    (d / "chat_template.jinja").unlink(missing_ok=True)
    (d / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    res = runner.invoke(app, ["export", "chatml", "--into", str(d)])
    assert res.exit_code == 0, res.output
    assert (d / "additional_chat_templates" / "rag.jinja").read_text("utf-8") == "RAG"
    assert "tool_use.jinja is kept: transformers renders it instead of the exported format when tools are given" in res.stderr
    back = transformers.AutoTokenizer.from_pretrained(str(d))
    assert back.chat_template["rag"] == "RAG" and back.chat_template["tool_use"] == "TOOLS"
    from chatfmt import load_format

    assert back.apply_chat_template(MESSAGES, tokenize=False) == load_format("chatml").render(MESSAGES)


@pytest.mark.parametrize("name", ["mistral-v3", "chatglm3"])
def test_a_format_without_a_jinja_export_is_refused_in_one_line_and_nothing_is_written(name, testdata, tmp_path):
    d = _model_dir(testdata, tmp_path, "qwen2.5", QWEN_FILES)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    res = runner.invoke(app, ["export", name, "--into", str(d)])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"chatfmt: error: format {name!r} cannot be exported as a Jinja template exactly")
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_into_something_that_is_not_a_directory_or_with_toml_is_one_line(tmp_path):
    res = runner.invoke(app, ["export", "chatml", "--into", str(tmp_path / "nope")])
    assert res.exit_code == 2 and res.stderr == f"chatfmt: error: {tmp_path / 'nope'}: not a model directory\n"
    res = runner.invoke(app, ["export", "chatml", "--into", str(tmp_path), "--to", "toml"])
    assert res.exit_code == 2 and "--into writes a Jinja chat template" in res.stderr
    res = runner.invoke(app, ["export", "chatml"])
    assert res.exit_code == 2 and "give --to jinja|toml (or --into MODEL_DIR)" in res.stderr


def test_into_a_gguf_only_directory_says_that_the_gguf_keeps_its_own_template(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    res = runner.invoke(app, ["export", "chatml", "--into", str(tmp_path)])
    assert res.exit_code == 0 and (tmp_path / "chat_template.jinja").is_file()
    assert "holds a .gguf and no tokenizer_config.json" in res.stderr
