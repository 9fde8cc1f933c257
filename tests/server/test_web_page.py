"""The web page at ``/`` in a real browser: headless Chromium (Debian's ``chromium``) driven over the
DevTools protocol on a pipe (``--remote-debugging-pipe``: no driver, no extra package) loads the
page from ``chatfmt serve``'s app, types a message, sends it, waits for the streamed reply, and the
prompt view's token ids are compared with ``/v1/render``'s for the same conversation; a screenshot
is kept as a test artifact (``build/artifacts/web_page*.png``). With the real default model (llama.cpp
backend) for the chat, and a scripted reply (real tokenizer and format) for reasoning and tool calls,
which a 135M model does not produce on demand. Skips without ``chromium`` on PATH."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatfmt.server import create_app

from .conftest import REPO, ScriptedEngine, post_json, uvicorn_thread

ARTIFACTS = REPO / "build" / "artifacts"


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it as root)")
    return exe


class Browser:
    """Headless Chromium and one page, over the DevTools protocol on fds 3 (commands) and 4
    (answers and events): JSON messages ended by a NUL byte."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 900) -> None:
        exe = chromium()
        profile.mkdir(parents=True, exist_ok=True)
        self.log_path = profile.parent / "chromium.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        # bash puts the pipe ends on fds 3 and 4, where Chromium expects them (dash takes one-digit fds only)
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{cmd_r} 4>&{out_w}', exe, *args],
            pass_fds=(cmd_r, out_w),
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        os.close(cmd_r)
        os.close(out_w)
        self._next = 0
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.width, self.height = width, height
        self.session: str | None = None

    def _read(self) -> None:
        buf = b""
        with open(self._out_r, "rb", buffering=0) as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\0" in buf:
                    raw, buf = buf.split(b"\0", 1)
                    msg = json.loads(raw)
                    if "id" in msg:
                        with self._lock:
                            q = self._answers.get(msg["id"])
                        if q is not None:
                            q.put(msg)

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: bool = True, timeout: float = 60
    ) -> dict[str, Any]:
        with self._lock:
            self._next += 1
            mid = self._next
            q: queue.Queue[dict[str, Any]] = queue.Queue()
            self._answers[mid] = q
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        try:
            os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise AssertionError(f"chromium is gone ({self.proc.poll()}): {self.log()[-3000:]}") from None
        try:
            answer = q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"chromium did not answer {method} in {timeout} s") from None
        if "error" in answer:
            raise AssertionError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, session=False
        )["sessionId"]
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.send("Page.navigate", {"url": url})

    def eval(self, expression: str, timeout: float = 60) -> Any:
        r = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in r:
            raise AssertionError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout} s for {expression}")
            time.sleep(0.2)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", session=False, timeout=10)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._cmd_w)
        self._log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


#: what the page shows after a reply: the prompt view's ids and classes, the reply, its usage line
READ_PAGE = """(() => {
  const toks = [...document.querySelectorAll('#prompt-view .tok')];
  const last = [...document.querySelectorAll('.msg.assistant')].pop();
  return {
    ids: toks.map((t) => Number(t.dataset.id)),
    control: toks.filter((t) => t.classList.contains('control')).map((t) => Number(t.dataset.id)),
    trained: toks.filter((t) => t.classList.contains('trained')).map((t) => Number(t.dataset.id)),
    roles: toks.map((t) => [...t.classList].find((c) => c.startsWith('role-'))),
    text: toks.map((t) => t.textContent).join(''),
    stats: document.getElementById('prompt-stats').textContent,
    reply: last.querySelector('.body').textContent,
    reasoning: last.querySelector('.reasoning .text') ? last.querySelector('.reasoning .text').textContent : null,
    calls: [...last.querySelectorAll('.tool-call')].map((c) => c.textContent),
    usage: last.querySelector('.usage') ? last.querySelector('.usage').textContent : '',
    mismatch: !!last.querySelector('.mismatch'),
    error: last.classList.contains('error'),
  };
})()"""


def send_message(
    b: Browser, text: str, *, max_tokens: int = 24, tools: Any = None, timeout: float = 300
) -> dict[str, Any]:
    """Type ``text`` in the page and send it as a user would; the page's state once the reply is in."""
    b.wait_for("document.body && document.body.dataset.state === 'idle'", 60)
    n = b.eval("document.querySelectorAll('.msg.assistant.done, .msg.assistant.error').length")
    setup = f"document.getElementById('max-tokens').value = {max_tokens};"
    if tools is not None:
        setup += f"document.getElementById('tools').value = {json.dumps(json.dumps(tools))};"
    b.eval(
        setup
        + f"document.getElementById('input').value = {json.dumps(text)}; document.getElementById('send').click(); true"
    )
    b.wait_for(
        f"document.querySelectorAll('.msg.assistant.done, .msg.assistant.error').length > {n}", timeout
    )
    b.wait_for("document.body.dataset.state === 'idle'", 30)
    page: dict[str, Any] = b.eval(READ_PAGE)
    return page


def keep(b: Browser, tmp_path: Path, name: str) -> Path:
    """The screenshot in tmp_path and, as the test artifact, in build/artifacts."""
    shot = tmp_path / name
    data = b.screenshot(shot)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with contextlib.suppress(OSError):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, ARTIFACTS / name)
    return shot


def library_view(
    fmt: Any, tok: Any, messages: list[dict[str, Any]], tools: Any = None
) -> tuple[list[int], list[int]]:
    """The prompt ids and the trained ids of ``messages`` from chatfmt's training encoder (not the
    server): what the page's token and label views must show."""
    from chatfmt.encode import encode

    e = encode(fmt, messages, tok, tools=tools, add_generation_prompt=True)
    return list(e.input_ids), [i for i, label in zip(e.input_ids, e.labels) if label != -100]


@pytest.fixture(scope="module")
def real_model(smollm2_gguf: Path) -> Iterator[str]:
    """The real default model on chatfmt's llama.cpp backend, its own chat format."""
    pytest.importorskip("llama_cpp")
    from chatfmt.inference.backends.llamacpp import LlamaCppBackend
    from chatfmt.server.engines import LocalEngine

    engine = LocalEngine(LlamaCppBackend(smollm2_gguf, n_ctx=2048))
    with uvicorn_thread(create_app(engine)) as base:
        yield base
    engine.close()


@pytest.mark.slow  # two turns of the real model: 35 s on the loaded 2-core machine
def test_the_page_chats_with_the_model_and_shows_the_prompt_it_saw(
    browser, real_model, smol_tokenizer, smollm2_gguf, tmp_path
):
    chromium()
    browser.open(real_model + "/")
    first = send_message(browser, "What is the capital of France?")
    assert not first["error"], first
    assert first["reply"].strip(), first  # the model's streamed answer is on the page
    status, r = post_json(
        real_model,
        "/v1/render",
        {"messages": [{"role": "user", "content": "What is the capital of France?"}]},
    )
    assert status == 200, r
    assert first["ids"] == r["prompt_token_ids"]  # the prompt view is exactly the server's prompt
    assert first["text"].replace("↵", "") == r["prompt"]
    control = smol_tokenizer.control_ids
    assert first["control"] == [i for i in r["prompt_token_ids"] if i in control] and first["control"]
    assert "role-user" in first["roles"] and not first["trained"]  # nothing the model wrote yet
    assert f"prompt {r['num_tokens']} tokens" in first["usage"] and not first["mismatch"], first
    assert f"{r['num_tokens']} tokens" in first["stats"]

    # the second turn: the history includes the model's own reply, now trained in the label view
    second = send_message(browser, "And of Italy?")
    assert not second["error"], second
    history = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": first["reply"]},
        {"role": "user", "content": "And of Italy?"},
    ]
    _, r2 = post_json(real_model, "/v1/render", {"messages": history})
    assert second["ids"] == r2["prompt_token_ids"]
    assert second["trained"] and "role-assistant" in second["roles"]
    assert "cached" in second["stats"]
    from chatfmt.formats.loader import load_format

    fmt = load_format(str(smollm2_gguf))
    assert library_view(fmt, smol_tokenizer, history) == (second["ids"], second["trained"])
    shot = keep(browser, tmp_path, "web_page.png")
    assert shot.stat().st_size > 10_000
    browser.eval("document.querySelector('.view-switch button[data-view=trained]').click(); true")
    assert browser.eval("document.getElementById('prompt-view').className") == "view-trained"
    keep(browser, tmp_path, "web_page_trained.png")


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SCRIPT = (
    "<think>\nThe user wants the weather in Paris.\n</think>\n\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
)


@pytest.fixture
def scripted(smol_tokenizer) -> Iterator[str]:
    """qwen3's format (reasoning + hermes tool calls) and a reply that thinks, then calls a tool."""
    from chatfmt.formats.loader import load_format

    engine = ScriptedEngine(smol_tokenizer, load_format("qwen3"), SCRIPT)
    with uvicorn_thread(create_app(engine)) as base:
        yield base


def test_reasoning_and_tool_calls_are_shown_apart_and_the_result_goes_back(
    browser, scripted, smol_tokenizer, tmp_path
):
    chromium()
    browser.open(scripted + "/")
    page = send_message(browser, "Weather in Paris?", tools=[WEATHER], max_tokens=200, timeout=60)
    assert not page["error"], page
    assert page["reasoning"] == "The user wants the weather in Paris."
    assert page["reply"] == ""  # no prose: the call is not shown as text
    assert page["calls"] == ['tool call: get_weather({"city": "Paris"})']
    assert "tool_calls" in page["usage"]
    _, r = post_json(
        scripted,
        "/v1/render",
        {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER]},
    )
    assert page["ids"] == r["prompt_token_ids"] and r["tools_rendered"] == 1
    # the next message is the tool's result: the prompt now holds the call and its result
    after = send_message(browser, "18 C, sunny", tools=[WEATHER], max_tokens=200, timeout=60)
    assert "<tool_response>\n18 C, sunny\n</tool_response>" in after["text"].replace("↵", ""), after["text"]
    assert "role-tool" in after["roles"] and "role-assistant" in after["roles"]
    from chatfmt.formats.loader import load_format

    call = {
        "id": "call_x",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "The user wants the weather in Paris.",
            "tool_calls": [call],
        },
        {"role": "tool", "tool_call_id": "call_x", "content": "18 C, sunny"},
    ]
    assert library_view(load_format("qwen3"), smol_tokenizer, history, [WEATHER]) == (
        after["ids"],
        after["trained"],
    )
    keep(browser, tmp_path, "web_page_tools.png")


# -- browser protections stay --------------------------------------------------------------------------


def _get(base: str, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    r.read()
    conn.close()
    return r


def test_the_page_keeps_the_servers_browser_protections(scripted):
    r = _get(scripted, "/", {})
    assert r.status == 200 and r.getheader("content-type", "").startswith("text/html")
    csp = r.getheader("content-security-policy") or ""
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.getheader("x-frame-options") == "DENY" and r.getheader("x-content-type-options") == "nosniff"
    for name in ("app.js", "style.css"):
        assert _get(scripted, f"/static/{name}", {}).status == 200
    assert _get(scripted, "/static/../app.py", {}).status == 404
    assert _get(scripted, "/static/secret.txt", {}).status == 404
    # a rebound DNS name is refused for the page as for the API
    assert _get(scripted, "/", {"Host": "evil.example"}).status == 403
    # another origin may not use the page's endpoint
    status, body = post_json(
        scripted,
        "/v1/render/tokens",
        {"messages": [{"role": "user", "content": "hi"}]},
        headers={"Origin": "http://evil.example"},
    )
    assert status == 403 and body["error"]["code"] == "origin_not_allowed"
    status, body = post_json(
        scripted,
        "/v1/render/tokens",
        {"messages": [{"role": "user", "content": "hi"}]},
        headers={"Origin": scripted},
    )
    assert status == 200 and [t["id"] for t in body["tokens"]] == body["prompt_token_ids"]


def test_the_page_asks_for_the_api_key_the_server_requires(smol_tokenizer, tmp_path):
    """With ``--api-key`` the page itself loads (it holds nothing secret), its API calls need the key."""
    from chatfmt.formats.loader import load_format

    engine = ScriptedEngine(smol_tokenizer, load_format("chatml"), "Hello.<|im_end|>")
    with uvicorn_thread(create_app(engine, api_key="k3y")) as base:
        assert _get(base, "/", {}).status == 200
        status, _ = post_json(base, "/v1/render/tokens", {"messages": [{"role": "user", "content": "hi"}]})
        assert status == 401
        b = Browser(tmp_path / "profile")
        try:
            b.open(base + "/")
            refused = send_message(b, "hi", timeout=60)
            assert refused["error"] and "key" in refused["reply"].lower(), refused
            b.eval("document.getElementById('api-key').value = 'k3y'; true")
            page = send_message(b, "hi", timeout=60)
            assert not page["error"] and page["reply"] == "Hello.", page
        finally:
            b.close()
