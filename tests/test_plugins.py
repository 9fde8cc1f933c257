"""One plugin surface: a real installed package (tests/plugins/acme_plugin, installed by
``make install-dev``) adds a format, an output parser and a record kind through the ``chatfmt.*``
entry-point groups, and they are used by the CLI, ``prepare --workers 2`` (spawned workers find them
through entry points) and ``serve``. A broken entry point warns once and fails clearly on use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import chatfmt
from chatfmt.cli import app
from chatfmt.encode import encode_batch
from chatfmt.errors import PluginError, PluginWarning
from chatfmt.formats import registry
from chatfmt.formats.family import as_family
from chatfmt.messages import RECORD_KINDS, detect_kind, parse_record
from chatfmt.plugins import Registry
from chatfmt.toolcalls import list_parsers, parser_for_format, parser_name_for_format

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "tests" / "plugins" / "acme_plugin"


def _plugin_missing() -> str | None:
    try:
        metadata.distribution("acme-plugin")
    except metadata.PackageNotFoundError:
        return f"the test plugin package is not installed (make install-dev, or pip install --no-deps -e {PLUGIN_DIR})"
    return None


@pytest.fixture(autouse=True)
def _acme_installed() -> None:
    missing = _plugin_missing()
    if missing is None:
        return
    if os.environ.get("CI"):
        pytest.fail(missing)
    pytest.skip(missing)


ACME = {
    "sys": "Be brief.",
    "acme": [
        {"who": "user", "say": "hi"},
        {"who": "bot", "say": "draft", "skip": True},
        {"who": "user", "say": "again"},
        {"who": "bot", "say": "hello"},
    ],
}
#: the same conversation as an OpenAI record (the skipped reply not trained)
OPENAI = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "draft", "loss": False},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "hello"},
    ]
}
RENDERED = (
    "<acme:system>\nBe brief.<acme:end>\n<acme:user>\nhi<acme:end>\n<acme:bot>\ndraft<acme:end>\n"
    "<acme:user>\nagain<acme:end>\n<acme:bot>\nhello<acme:end>\n"
)


@pytest.fixture(scope="module")
def qwen_dir(testdata: Any) -> Path:
    path: Path = testdata("qwen2.5")
    return path


# -- the three registrations -------------------------------------------------------------------------


def test_the_plugin_registers_a_format_a_parser_and_a_record_kind_with_their_origin():
    assert "acme-chat" in registry.names()
    origin = registry.FAMILIES.origin("acme-chat")
    assert (origin.dist, origin.entry_point) == ("acme-plugin", "acme-chat = acme_plugin:make_format")
    assert not origin.builtin and registry.FAMILIES.origin("chatml").builtin
    assert "acme" in list_parsers()
    assert RECORD_KINDS.origin("acme_dialog").dist == "acme-plugin"
    fmt = chatfmt.load_format("acme-chat")
    assert parser_name_for_format(fmt) == "acme"  # the format's TOML names its parser
    assert detect_kind(ACME) == "acme_dialog"  # a plugin's detect rule is asked before the built-ins
    assert parse_record(ACME) == parse_record(OPENAI)


def test_formats_lists_the_plugin_format_with_its_origin():
    res = runner.invoke(app, ["formats", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    acme = rows["acme-chat"]
    assert (acme["origin"], acme["entry_point"], acme["parser"]) == ("acme-plugin", "acme-chat = acme_plugin:make_format", "acme")
    assert (acme["tools"], acme["stop"]) == (True, ["<acme:end>"])
    assert rows["chatml"]["origin"] == "chatfmt" and rows["chatml"]["entry_point"] is None
    res = runner.invoke(app, ["formats", "--long"])
    lines = [ln.split("\t") for ln in res.stdout.splitlines()]
    assert lines[0][-2:] == ["kwargs", "origin"]
    (row,) = [ln for ln in lines if ln[0] == "acme-chat"]
    assert row[-1] == "acme-plugin: acme-chat = acme_plugin:make_format"
    plain = runner.invoke(app, ["formats"]).stdout.splitlines()
    assert any(ln.startswith("acme-chat\t") and ln.endswith("[plugin: acme-plugin]") for ln in plain)


# -- the CLI -----------------------------------------------------------------------------------------


def test_render_takes_the_plugin_format_and_reads_the_plugin_record_kind(tmp_path):
    (tmp_path / "acme.json").write_text(json.dumps(ACME))
    (tmp_path / "openai.json").write_text(json.dumps(OPENAI))
    for name in ("acme.json", "openai.json"):
        res = runner.invoke(app, ["render", str(tmp_path / name), "--format", "acme-chat"])
        assert res.exit_code == 0, res.output
        assert res.stdout == RENDERED
    res = runner.invoke(app, ["render", str(tmp_path / "acme.json"), "-f", "acme-chat", "--input-kind", "acme_dialog", "-g"])
    assert res.exit_code == 0 and res.stdout == RENDERED + "<acme:bot>\n"


def _prepare_acme(tmp_path: Path, qwen_dir: Path, monkeypatch: Any, worker_counts: tuple[str, ...]) -> None:
    """``chatfmt prepare -f acme-chat --input-kind acme_dialog`` with each worker count: the same
    rows, and the ids and labels of the same conversations given as OpenAI records."""
    import chatfmt.train.pipeline as pipeline

    monkeypatch.setattr(pipeline, "WORKERS_AFTER", 0.0)  # the workers take over after the first batch
    records = [
        {**ACME, "acme": [{"who": "user", "say": f"question {k}"}, *ACME["acme"][1:]]} for k in range(12)
    ]
    src = tmp_path / "acme.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    outs = {}
    for workers in worker_counts:
        out = tmp_path / f"w{workers}.jsonl"
        res = runner.invoke(app, [
            "prepare", str(src), "-f", "acme-chat", "-t", str(qwen_dir), "-o", str(out), "--workers", workers,
            "--batch-size", "2", "--input-kind", "acme_dialog", "--report", str(tmp_path / f"w{workers}.json"), "-q",
        ])
        assert res.exit_code == 0, res.output
        report = json.loads((tmp_path / f"w{workers}.json").read_text())
        assert (report["written"], report["rejected"], report["workers"]) == (12, 0, int(workers))
        outs[workers] = out.read_bytes()
    assert len(set(outs.values())) == 1
    # the ids and labels of the same conversations given as OpenAI records to the format directly
    fmt, tok = chatfmt.load_format("acme-chat"), chatfmt.load_tokenizer(qwen_dir)
    as_openai = [{"messages": [OPENAI["messages"][0], {"role": "user", "content": f"question {k}"}, *OPENAI["messages"][2:]]}
                 for k in range(12)]
    expected = encode_batch(fmt, [parse_record(r) for r in as_openai], tok)
    rows = [json.loads(x) for x in outs[worker_counts[-1]].decode().splitlines()]
    assert [(r["input_ids"], r["labels"]) for r in rows] == [(e.input_ids, e.labels) for e in expected]
    trained = tok.decode([i for i, lab in zip(rows[0]["input_ids"], rows[0]["labels"], strict=True) if lab != -100])
    # the skipped reply and every prompt turn are not trained (Qwen's tokenizer writes ">\n" as one token)
    assert trained in ("hello<acme:end>", "hello<acme:end>\n")


def test_prepare_uses_the_plugin_format_and_record_kind(tmp_path, qwen_dir, monkeypatch):
    _prepare_acme(tmp_path, qwen_dir, monkeypatch, ("1",))


def test_a_fresh_process_finds_the_plugin_through_entry_points_alone(tmp_path):
    """What a spawned ``prepare`` worker (or a Ray worker) does: no registration call, only imports."""
    code = (
        "import json, sys; from chatfmt import load_format; from chatfmt.messages import parse_record; "
        "fmt = load_format('acme-chat'); print(json.dumps(fmt.render(parse_record(json.loads(sys.argv[1])))))"
    )
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(ACME)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == RENDERED


@pytest.mark.slow
def test_prepare_with_two_spawned_workers_uses_the_plugin_format_and_record_kind(tmp_path, qwen_dir, monkeypatch):
    """Spawned workers resolve acme-chat and acme_dialog by entry points (the default run has the
    in-process prepare and a fresh interpreter finding the plugin)."""
    _prepare_acme(tmp_path, qwen_dir, monkeypatch, ("1", "2"))


# -- serve ------------------------------------------------------------------------------------------


CALL = '<acme:call>{"name": "get_weather", "arguments": {"city": "Paris"}}</acme:call>'
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def _scripted_engine(tokenizer: Any, fmt: Any, script: str) -> Any:
    """An engine that 'generates' ``script`` as text pieces whatever the prompt (the wire shape of a
    tool call does not depend on what a model happens to say)."""
    from chatfmt.server.engines import Engine, PieceSource, Sampling

    class Source(PieceSource):
        def __init__(self, prompt_ids: Sequence[int]) -> None:
            super().__init__()
            self.result.prompt_tokens = len(prompt_ids)

        def __iter__(self) -> Iterator[tuple[str, int | None]]:
            for k in range(0, len(script), 7):
                self.result.completion_tokens += 1
                yield script[k : k + 7], None
            self.result.finish_reason = "stop"

    class Scripted(Engine):
        sees_text_only = True
        model_id = "acme-scripted"

        def __init__(self) -> None:
            self.tokenizer, self.format = tokenizer, fmt

        @property
        def n_ctx(self) -> int:
            return 4096

        def source(self, prompt_ids: Sequence[int], prompt_text: str, sampling: Sampling) -> PieceSource:
            return Source(prompt_ids)

    return Scripted()


def test_serve_answers_with_the_plugin_format_and_its_parser_returns_the_tool_call(qwen_dir):
    from fastapi.testclient import TestClient

    from chatfmt.server import create_app

    fmt, tok = chatfmt.load_format("acme-chat"), chatfmt.load_tokenizer(qwen_dir)
    engine = _scripted_engine(tok, fmt, "Checking." + CALL + "<acme:end>")
    with TestClient(create_app(engine), base_url="http://127.0.0.1:8000") as client:
        r = client.post("/v1/chat/completions", json={
            "model": "acme-scripted", "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": TOOLS,
        })
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert choice["message"]["content"] == "Checking."
        (call,) = choice["message"]["tool_calls"]
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
        r = client.post("/v1/completions", json={"model": "acme-scripted", "prompt": "x", "max_tokens": 8})
        assert r.status_code == 200, r.text
    # the parser on its own, streamed in pieces as a server feeds it
    parser = parser_for_format(fmt, tools=TOOLS)
    deltas = [d for k in range(0, len(CALL), 3) for d in parser.feed(CALL[k : k + 3])]
    last, message = parser.finish()
    assert [c["function"]["name"] for c in message.tool_calls] == ["get_weather"] and deltas


# -- a broken plugin ---------------------------------------------------------------------------------


def _broken_plugin(root: Path) -> Path:
    """A distribution whose ``chatfmt.formats`` entry point fails to import (its SDK is missing)."""
    dist = root / "acme_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[chatfmt.formats]\nacme-broken = acme_broken:make_format\n")
    (root / "acme_broken.py").write_text(textwrap.dedent("""\
        raise ImportError("the acme SDK is not installed")
    """))
    return root


def test_a_broken_entry_point_warns_and_fails_clearly_when_used(tmp_path, monkeypatch):
    root = _broken_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(root))
    reg: Registry[Any] = Registry("formats", builtins=lambda r: None, adapt=as_family)  # a private registry
    with pytest.warns(PluginWarning, match=r"acme-broken: acme-broken = acme_broken:make_format failed to load"):
        names = reg.names()
    assert "acme-chat" in names and "acme-broken" not in names  # the other plugins still load
    with pytest.raises(PluginError, match=r"ImportError: the acme SDK is not installed"):
        reg.get("acme-broken")


def test_a_broken_entry_point_in_the_cli_is_one_warning_and_a_clear_error(tmp_path):
    root = _broken_plugin(tmp_path / "site")
    conv = tmp_path / "c.json"
    conv.write_text(json.dumps(OPENAI))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "chatfmt.cli", "render", str(conv), "-f", "acme-broken"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert "ImportError: the acme SDK is not installed" in proc.stderr
    assert "acme-broken" in proc.stderr and "Traceback" not in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "chatfmt.cli", "render", str(conv), "-f", "acme-chat"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and ok.stdout == RENDERED  # a broken plugin does not take the others down
