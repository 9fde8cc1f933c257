"""What the format layer of ``chatfmt serve`` costs, and how many requests/s the server answers.

    python benchmarks/serve_bench.py [--backend transformers] [--tokens 4000] [--repeats 30]

Measured in one run on the default model (SmolLM2-135M-Instruct), qwen2.5's format:

* backend alone: ``backend.generate`` on the prompt ids of a ~4k-token conversation, 1 new token
  (prompt evaluation reuses the KV cache of the previous identical prompt, as in a chat);
* format layer per request: what the server does around the backend for a chat request parsed from
  its JSON body: ``prepare_chat`` (messages, render, encode with its :class:`IncrementalEncoder`:
  ``warm`` = the conversation of the previous request plus a new user turn, prefix ids reused;
  ``cold`` = a fresh encoder; sampling, the output parser), the parser over a 32-token reply, the
  response body;
* requests/s over HTTP (uvicorn on loopback, in-process): ``/v1/render`` of the 4k conversation and
  ``/v1/chat/completions`` with ``max_tokens=1``, 1 and 8 clients.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def conversation(n_turns: int) -> list[dict]:
    msgs = [{"role": "system", "content": "You are a helpful assistant."}]
    for k in range(n_turns):
        msgs.append({"role": "user", "content": f"Question {k}: tell me about the history of city number {k} in a few sentences, please."})
        msgs.append({"role": "assistant", "content": f"City {k} was founded long ago by traders on a river; it grew with markets, bridges and schools, and today it is known for its museums."})
    msgs.append({"role": "user", "content": "Summarise all of that."})
    return msgs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="transformers")
    ap.add_argument("--tokens", type=int, default=4000, help="prompt size to reach")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--http-requests", type=int, default=40)
    args = ap.parse_args()

    from chatfmt.formats.loader import load_format
    from chatfmt.inference.backends import GenerationParams, load_backend
    from chatfmt.inference.chat import stop_tokens
    from chatfmt.inference.prompt import IncrementalEncoder
    from chatfmt.inference.stream import IncrementalDecoder
    from chatfmt.server import LocalEngine, create_app
    from chatfmt.server.wire import ChatCompletionRequest

    t = time.perf_counter()
    backend = load_backend(backend=args.backend)
    print(f"loaded {backend.name} backend in {time.perf_counter() - t:.1f} s")
    fmt = load_format("qwen2.5")
    tok = backend.tokenizer
    n = 4
    while len(IncrementalEncoder(fmt, tok).encode(conversation(n))) < args.tokens:
        n += 4
    msgs = conversation(n)
    ids = IncrementalEncoder(fmt, tok).encode(msgs)
    print(f"prompt: {len(ids)} tokens ({len(msgs)} messages)")
    stop_ids, stop_texts = stop_tokens(fmt, tok)

    # the backend alone: one new token on the 4k prompt (KV cache of the same prompt kept, as in a chat)
    params = GenerationParams(max_tokens=1, temperature=0, stop_ids=stop_ids)
    list(backend.generate(ids, params))
    backend_t = []
    for _ in range(max(5, args.repeats // 3)):
        t = time.perf_counter()
        list(backend.generate(ids, params))
        backend_t.append(time.perf_counter() - t)
    reply_ids = list(backend.generate(ids, GenerationParams(max_tokens=32, temperature=0, stop_ids=stop_ids)))

    engine = LocalEngine(backend, format=fmt)
    app = create_app(engine, max_tokens_limit=64)
    state = app.state.chatfmt

    def format_layer(body: bytes) -> float:
        t = time.perf_counter()
        req = ChatCompletionRequest.model_validate_json(body)
        prep = state.prepare_chat(req)
        parser = prep.parser
        dec = IncrementalDecoder(tok)
        for tid in reply_ids:
            piece = dec.add(tid)
            if piece:
                parser.feed(piece, tid)
        _, parsed = parser.finish()
        json.dumps({"choices": [{"message": parsed.to_message()}], "usage": {"prompt_tokens": len(prep.ids)}})
        return time.perf_counter() - t

    def body(messages: list[dict]) -> bytes:
        return json.dumps({"messages": messages, "max_tokens": 32}).encode()

    warm, cold = [], []
    for k in range(args.repeats):
        # warm: the previous conversation plus one more turn (what a chat client sends next)
        req = body([*msgs, {"role": "assistant", "content": "ok"}, {"role": "user", "content": f"next {k}"}])
        state.prepare_chat(ChatCompletionRequest.model_validate_json(body(msgs)))
        warm.append(format_layer(req))
        state.encoder.reset()
        cold.append(format_layer(req))
    b = p50(backend_t) * 1000
    print(f"backend alone, 1 token on {len(ids)} cached prompt tokens: p50 {b:.2f} ms")
    print(f"format layer (render+encode+parse+body), warm prefix: p50 {p50(warm) * 1000:.3f} ms ({p50(warm) * 100_000 / b:.2f}% of backend)")
    print(f"format layer, cold (fresh encoder): p50 {p50(cold) * 1000:.3f} ms")

    # requests/s over HTTP
    from server.conftest import uvicorn_thread

    with uvicorn_thread(app) as base:
        host, port = base.removeprefix("http://").split(":")

        def post(path: str, body: dict) -> int:
            conn = http.client.HTTPConnection(host, int(port), timeout=600)
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            conn.close()
            return r.status

        render_body = {"messages": msgs}
        chat_body = {"messages": msgs[-3:], "max_tokens": 1, "temperature": 0}
        for path, body in (("/v1/render", render_body), ("/v1/chat/completions", chat_body)):
            for clients in (1, 8):
                t = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    statuses = list(pool.map(lambda _, p=path, b=body: post(p, b), range(args.http_requests)))
                dt = time.perf_counter() - t
                bad = [s for s in statuses if s != 200]
                print(f"{path} x{args.http_requests}, {clients} client(s): {args.http_requests / dt:.1f} req/s" + (f" ({len(bad)} non-200)" if bad else ""))


if __name__ == "__main__":
    main()
