"""A real browser: headless Chromium opens a page on another origin (``http://evil.example:PORT``,
resolved to 127.0.0.1 by Chromium's host resolver rules) whose script tries every way a page can POST
to a local ``chatfmt serve`` without the user's consent: a text/plain body and a Blob body (CORS
"simple" requests: no preflight, the request is sent and only the answer is hidden from the page), a
JSON body (preflighted), and the same-origin POST a DNS rebinding gives (the page's server forwards
it as the rebound name would). The server must see those requests and start no generation; with the
page's origin in ``cors_allow_origins`` the same page gets its answer (so the refusals are the
server's, not the browser's). Skips without ``chromium`` on PATH (.ci/run installs it as root)."""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import shutil
import subprocess
import threading
from typing import Any

import pytest

from chatfmt.server import create_app

from .conftest import ScriptedEngine, free_port, uvicorn_thread

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
const api = %(api)s, body = %(body)s, results = {};
async function attempt(name, url, init) {
  try {
    const r = await fetch(url, init);
    results[name] = r.type === "opaque" ? "opaque" : r.status + " " + (await r.text());
  } catch (e) { results[name] = "error " + e.name; }
}
(async () => {
  await attempt("text_plain", api, {method: "POST", body: body});
  await attempt("blob_no_cors", api, {method: "POST", mode: "no-cors", body: new Blob([body])});
  await attempt("json_cors", api, {method: "POST", headers: {"Content-Type": "application/json"}, body: body});
  await attempt("rebound_same_origin", "/v1/chat/completions", {method: "POST", headers: {"Content-Type": "application/json"}, body: body});
  document.getElementById("out").textContent = JSON.stringify(results);
})();
</script></body></html>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it as root)")
    return exe


class AttackerSite(http.server.ThreadingHTTPServer):
    """The page's own server: ``GET /`` is the page; anything else is forwarded, headers and all, to
    the chatfmt server, as if the page's name now resolved to it (DNS rebinding)."""

    def __init__(self, api_port: int) -> None:
        self.api_port = api_port
        self.page = b""
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/":
                    self._answer(200, [("Content-Type", "text/html")], site.page)
                else:
                    self._forward()

            def do_POST(self) -> None:
                self._forward()

            def do_OPTIONS(self) -> None:
                self._forward()

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection("127.0.0.1", site.api_port, timeout=30)
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    conn.putheader(k, v)
                conn.endheaders(body)
                r = conn.getresponse()
                self._answer(r.status, [(k, v) for k, v in r.getheaders() if k.lower() not in ("content-length", "connection")], r.read())
                conn.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(("127.0.0.1", free_port()), Handler)


def open_page(api_base: str) -> dict[str, str]:
    """Run the page in headless Chromium from ``http://evil.example:PORT/``; what each attempt got."""
    exe = chromium()
    site = AttackerSite(int(api_base.rsplit(":", 1)[1]))
    origin = f"http://evil.example:{site.server_address[1]}"
    site.page = (PAGE % {"api": json.dumps(api_base + "/v1/chat/completions"), "body": json.dumps(json.dumps(CHAT))}).encode()
    t = threading.Thread(target=site.serve_forever, daemon=True)
    t.start()
    try:
        proc = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--host-resolver-rules=MAP evil.example 127.0.0.1",
             "--virtual-time-budget=20000", "--dump-dom", origin + "/"],
            capture_output=True, text=True, timeout=180,
        )
    finally:
        site.shutdown()
        site.server_close()
    dom = proc.stdout
    start, end = dom.find('<pre id="out">'), dom.find("</pre>")
    assert start >= 0 and end > start, f"chromium gave no page (exit {proc.returncode}): {proc.stderr[-2000:]}"
    text = dom[start + len('<pre id="out">') : end]
    assert text != "pending", f"the page's script did not finish: {proc.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(text))


@pytest.fixture(scope="module")
def chatml_format():
    """ChatML: its control tokens are SmolLM2's own (these tests need no tool-call syntax)."""
    from chatfmt.formats.loader import load_format

    return load_format("chatml")


@pytest.fixture
def engine(smol_tokenizer, chatml_format):
    return ScriptedEngine(smol_tokenizer, chatml_format, "Hello.<|im_end|>", n_ctx=256)


def test_a_page_on_another_origin_cannot_start_a_generation(engine, caplog):
    with caplog.at_level(logging.INFO, logger="chatfmt.server.access"), uvicorn_thread(create_app(engine)) as base:
        got = open_page(base)
    seen = [json.loads(r.getMessage()) for r in caplog.records if r.name == "chatfmt.server.access"]
    posts = [(r["path"], r["status"]) for r in seen if r["method"] == "POST"]
    # the simple requests were sent (a browser only hides their answers) and refused; the JSON one
    # stopped at its preflight; the rebound one reached the server and was refused for its Host
    assert posts.count(("/v1/chat/completions", 403)) >= 3, seen
    assert all(status == 403 for _, status in posts), seen
    assert [r["status"] for r in seen if r["method"] == "OPTIONS"] == [403], seen
    assert not engine.started.is_set()
    assert got["text_plain"].startswith("error") and got["json_cors"].startswith("error"), got  # no CORS answer: unreadable
    assert got["blob_no_cors"] == "opaque", got
    rebound = got["rebound_same_origin"]
    assert rebound.startswith("403 ") and json.loads(rebound[4:])["error"]["code"] == "host_not_allowed", got


def test_the_same_page_is_answered_once_its_origin_is_allowed(engine, caplog):
    """The control: nothing in the page or the browser stops these requests but the server's rules."""
    with caplog.at_level(logging.INFO, logger="chatfmt.server.access"):
        app = create_app(engine, cors_allow_origins=("*",), allowed_hosts=("evil.example",))
        with uvicorn_thread(app) as base:
            got = open_page(base)
    assert got["json_cors"].startswith("200 "), got
    assert json.loads(got["json_cors"][4:])["choices"][0]["message"]["content"] == "Hello."
    assert got["rebound_same_origin"].startswith("200 "), got
    assert engine.started.is_set()
