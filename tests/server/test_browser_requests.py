"""Requests a web page can make: a browser on any site may POST to ``127.0.0.1`` without asking (a
"simple" request: text/plain, a form, no preflight), and a DNS-rebound name reaches the server as
its own origin. None of them may start a generation: a foreign ``Origin`` is a 403, a foreign
``Host`` name a 403, a body that is not JSON a 415; the server's own origin, the origins listed in
``cors_allow_origins`` and ordinary (non-browser) clients are served (in-process app, scripted
engine)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatfmt.errors import ServerConfigError
from chatfmt.server import create_app
from chatfmt.server.middleware import normalize_origin

from .conftest import ScriptedEngine

CHAT = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
BASE = "http://127.0.0.1:8000"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def chatml_format():
    """ChatML: its control tokens are SmolLM2's own (these tests need no tool-call syntax)."""
    from chatfmt.formats.loader import load_format

    return load_format("chatml")


@pytest.fixture
def engine(smol_tokenizer, chatml_format):
    return ScriptedEngine(smol_tokenizer, chatml_format, "Hello.<|im_end|>", n_ctx=256)


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine), base_url=BASE) as c:
        yield c


def error_code(r) -> str:
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]["code"]


# -- Content-Type ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/json; charset=latin-1",
        "application/jsonx",
        "",
    ],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/render", "/v1/tokenize", "/v1/detokenize"])
def test_a_body_that_is_not_json_is_415_and_starts_nothing(client, engine, content_type, path):
    r = client.post(path, content=json.dumps(CHAT), headers={"Content-Type": content_type})
    assert r.status_code == 415, r.text
    assert error_code(r) == "unsupported_media_type"
    assert not engine.started.is_set()


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON", "application/json; charset=utf-8", 'application/json;charset="UTF8"', None])
def test_json_with_or_without_a_utf8_charset_is_served(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post("/v1/chat/completions", content=json.dumps(CHAT), headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Hello."


def test_a_form_post_from_a_page_is_refused(client, engine):
    """What an HTML ``<form method=post>`` on another site sends: refused for its origin first."""
    r = client.post("/v1/chat/completions", content=b"messages=hi", headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"})
    assert r.status_code == 403 and error_code(r) == "origin_not_allowed"
    assert not engine.started.is_set()


# -- Origin ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:9999", "http://localhost:8000", "null", "http://127.0.0.1:8000.evil.example", "file://", "garbage"])
@pytest.mark.parametrize("content_type", ["text/plain;charset=UTF-8", "application/json"])
def test_a_cross_origin_browser_post_is_403_before_any_generation(client, engine, origin, content_type):
    """The headers Chromium sends on ``fetch(url, {method: "POST", body})`` from another site."""
    headers = {"Origin": origin, "Content-Type": content_type, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    r = client.post("/v1/chat/completions", content=json.dumps(CHAT), headers=headers)
    assert r.status_code == 403, r.text
    assert error_code(r) == "origin_not_allowed"
    assert "access-control-allow-origin" not in r.headers
    assert not engine.started.is_set()


def test_a_cross_origin_preflight_is_403(client):
    r = client.options("/v1/chat/completions", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8000", "HTTP://127.0.0.1:8000", "http://127.0.0.1:8000/"])
def test_a_same_origin_post_is_served(client, origin):
    """A page the server itself serves (its own origin: the scheme, the request's Host)."""
    r = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200, r.text


def test_same_origin_on_the_default_port_and_over_a_tls_proxy(engine):
    with TestClient(create_app(engine), base_url="http://localhost") as c:
        assert c.post("/v1/render", json=CHAT, headers={"Origin": "http://localhost"}).status_code == 200
        assert c.post("/v1/render", json=CHAT, headers={"Origin": "http://localhost:80"}).status_code == 200
        assert c.post("/v1/render", json=CHAT, headers={"Origin": "https://localhost"}).status_code == 200
        assert c.post("/v1/render", json=CHAT, headers={"Origin": "http://localhost:8080"}).status_code == 403


def test_requests_without_an_origin_are_served(client):
    """curl, the OpenAI SDK, scripts: no Origin header at all."""
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert client.get("/health").status_code == 200


def test_listed_origins_get_cors_answers(engine):
    app = create_app(engine, cors_allow_origins=("http://localhost:3000", "https://ui.example/"))
    with TestClient(app, base_url=BASE) as c:
        pre = c.options(
            "/v1/chat/completions",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, authorization"},
        )
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert pre.headers["access-control-allow-headers"] == "content-type, authorization"
        r = c.post("/v1/chat/completions", json=CHAT, headers={"Origin": "https://ui.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://ui.example"
        assert "Origin" in r.headers["vary"]
        # refusals carry the CORS header too, so that the page can read why
        bad = c.post("/v1/chat/completions", content=b"x", headers={"Origin": "https://ui.example", "Content-Type": "text/plain"})
        assert bad.status_code == 415 and bad.headers["access-control-allow-origin"] == "https://ui.example"
        assert c.post("/v1/chat/completions", json=CHAT, headers={"Origin": "https://ui.example:8443"}).status_code == 403


def test_star_allows_every_origin(engine):
    with TestClient(create_app(engine, cors_allow_origins=("*",)), base_url=BASE) as c:
        r = c.post("/v1/render", json=CHAT, headers={"Origin": "https://anything.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://anything.example"
        assert c.post("/v1/render", json=CHAT, headers={"Origin": "null"}).status_code == 403


@pytest.mark.parametrize("bad", ["localhost:3000", "ftp://x.example", "http://", "http://a b", "http://x.example/path", "http://x.example:99999"])
def test_a_malformed_cors_origin_is_refused_when_the_app_is_made(engine, bad):
    with pytest.raises(ServerConfigError, match="--cors-allow-origin"):
        create_app(engine, cors_allow_origins=(bad,))


# -- Host (DNS rebinding) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example:8000"])
def test_a_rebinding_host_is_403_even_as_its_own_origin(client, engine, host):
    """After a DNS rebinding, the attacker's page is same-origin with the server: the Host it names is
    the attacker's, and that is what is refused."""
    origin = f"http://{host}"
    r = client.post("/v1/chat/completions", json=CHAT, headers={"Host": host, "Origin": origin})
    assert r.status_code == 403, r.text
    assert error_code(r) == "host_not_allowed"
    assert "--allowed-hosts" in r.json()["error"]["message"]
    assert client.get("/health", headers={"Host": host}).status_code == 403
    assert not engine.started.is_set()


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "localhost.:8000", "app.localhost:8000", "10.1.2.3", "[fe80::1]"])
def test_loopback_names_and_ip_addresses_are_accepted_hosts(client, host):
    assert client.get("/health", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["[::1", "a/b", "localhost:abc", "localhost:0", "evil.example:8000:1", ""])
def test_a_malformed_host_is_403(client, host):
    assert client.get("/health", headers={"Host": host}).status_code == 403


def test_allowed_hosts_adds_names_and_star_turns_the_check_off(engine):
    with TestClient(create_app(engine, allowed_hosts=("gpu-box.lan", ".corp.example")), base_url=BASE) as c:
        for ok in ("gpu-box.lan:8000", "GPU-BOX.LAN", "corp.example", "llm.corp.example:443"):
            assert c.get("/health", headers={"Host": ok}).status_code == 200, ok
        for bad in ("gpu-box.lan.evil.example", "evilcorp.example", "other.lan"):
            assert c.get("/health", headers={"Host": bad}).status_code == 403, bad
    with TestClient(create_app(engine, allowed_hosts=("*",)), base_url=BASE) as c:
        assert c.get("/health", headers={"Host": "evil.example"}).status_code == 200


# -- any header value: a clear 4xx or the answer, never a 5xx ----------------------------------------------

header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(host=header_text | st.sampled_from(["127.0.0.1:8000", "localhost", "[::1]:8000"]),
       origin=st.none() | header_text | st.sampled_from(["http://127.0.0.1:8000", "null", "https://evil.example"]),
       content_type=st.none() | header_text | st.just("application/json"))
def test_no_host_origin_or_content_type_gets_a_5xx_or_a_foreign_origin_through(client, engine, host, origin, content_type):
    headers = {"Host": host.strip() or "x"}
    if origin is not None:
        headers["Origin"] = origin
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = client.post("/v1/render", content=json.dumps(CHAT).encode(), headers={k: v.encode("latin-1") for k, v in headers.items()})
    assert r.status_code in (200, 403, 415), r.text
    if r.status_code == 200 and origin is not None:  # only the server's own origin, over http or https
        own = {normalize_origin(f"{scheme}://{headers['Host']}") for scheme in ("http", "https")} - {None}
        assert normalize_origin(origin) in own, headers
    assert not engine.started.is_set()  # /v1/render never generates


@settings(max_examples=50)
@given(scheme=st.sampled_from(["http", "https", "HTTP"]), host=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
       port=st.none() | st.integers(1, 65535))
def test_normalize_origin_is_idempotent_and_drops_only_the_default_port(scheme, host, port):
    text = f"{scheme}://{host}" + (f":{port}" if port is not None else "")
    n = normalize_origin(text)
    assert n is not None and normalize_origin(n) == n
    default = {"http": 80, "https": 443}[scheme.lower()]
    assert n.endswith(f":{port}") == (port is not None and port != default)
