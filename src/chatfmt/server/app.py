"""The FastAPI app: OpenAI's chat and text completions, models, health, and chatfmt's own render /
tokenize / detokenize, over any :class:`~chatfmt.server.engines.Engine`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ChatfmtError, ServerConfigError, ValidationError
from ..formats.base import not_rendered_message, unread_template_kwargs, warn_not_rendered
from ..inference.chat import stop_tokens
from ..inference.prompt import IncrementalEncoder
from ..segments import Rendered, Segment
from .choices import Choices, TokenText, chat_logprobs, completion_logprobs
from .engines import ChatGeneration, Engine, Sampling, TextGeneration
from .errors import APIError, bad_request, loc_to_param, not_found
from .middleware import AccessLog, Guard, OriginGuard, check_origins
from .scheduler import Scheduler, with_keepalive
from .structured import constrain
from .wire import (
    ChatCompletionRequest,
    ChatRequestBase,
    CompletionRequest,
    DetokenizeRequest,
    RenderRequest,
    TokenizeRequest,
)

log = logging.getLogger("chatfmt.server")


@dataclass
class ServerConfig:
    """Limits and access of a server."""

    api_key: str | None = None
    #: requests that may wait for the model (one more gets a 429)
    max_queue: int = 16
    max_body_bytes: int = 4 * 1024 * 1024
    #: the largest max_tokens a request may ask for (and the default when it asks for none)
    max_tokens_limit: int = 4096
    #: other names the model answers to
    model_aliases: tuple[str, ...] = ()
    #: serve even when the tokenizer lacks a token the format relies on (see :mod:`chatfmt.compat`)
    allow_missing_tokens: bool = False
    #: ``Host`` names accepted besides IP addresses and localhost (``.example.com``: a domain and its
    #: subdomains; ``*``: any) - the DNS rebinding check
    allowed_hosts: tuple[str, ...] = ()
    #: browser origins (``scheme://host[:port]``, ``*``: any) allowed besides the server's own
    cors_allow_origins: tuple[str, ...] = ()
    #: seconds a request body may take to arrive after its headers (408 and the connection closed);
    #: None: no limit
    body_timeout: float | None = 30.0
    #: seconds between ``: keep-alive`` comment lines on a stream that has nothing to send (waiting in
    #: the queue); None or 0: none
    sse_keepalive: float | None = 15.0
    #: template keyword arguments every prompt is rendered with (``{"enable_thinking": False}``);
    #: a request's ``chat_template_kwargs`` are merged over them (the request wins per key)
    template_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass
class PreparedChat:
    ids: list[int]
    text: str
    tools: list[dict[str, Any]] | None
    tool_choice: Any
    parser: Any
    sampling: Sampling
    #: what the chat format left out of the prompt, one line each (the X-Chatfmt-Warning header)
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclass
class RenderedPrompt:
    """A chat request's prompt: ids and text, the tools offered, the tool choice, and what of the
    request the format left out (``"tools"``, ``"documents"``, keyword names) with one line each."""

    ids: list[int]
    text: str
    tools: list[dict[str, Any]] | None
    tool_choice: Any
    not_rendered: tuple[str, ...] = ()
    warnings: list[str] = dataclasses.field(default_factory=list)
    #: the segments rendered and the messages they were rendered from (the tool-choice
    #: instruction included): the web page's token view attributes tokens with them
    rendered: Rendered | None = None
    messages: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def tools_rendered(self) -> int:
        """How many tools the prompt holds (0 when the format left them out)."""
        return 0 if "tools" in self.not_rendered else len(self.tools or [])


WARNING_HEADER = "X-Chatfmt-Warning"


def warning_headers(lines: list[str]) -> dict[str, str]:
    """``X-Chatfmt-Warning: line; line`` (ASCII, non-ASCII characters escaped), or nothing."""
    if not lines:
        return {}
    value = "; ".join(lines).encode("ascii", "backslashreplace").decode("ascii")
    return {WARNING_HEADER: "".join(ch if " " <= ch <= "~" else " " for ch in value)}


# -- prompt building ---------------------------------------------------------------------------------


#: the fields a message given as ``{"role", "content"}`` has set
_PLAIN_FIELDS = frozenset({"role", "content"})


def _messages(req: ChatRequestBase) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    plain = _PLAIN_FIELDS
    for i, m in enumerate(req.messages):
        if (
            m.__pydantic_fields_set__ <= plain  # the other fields are at their default, None
            and type(m.content) is str
            and m.role != "developer"
            and not m.__pydantic_extra__
        ):  # what model_dump(exclude_none=True) gives it, without its cost (most messages)
            out.append({"role": m.role, "content": m.content})
            continue
        d = m.model_dump(exclude_none=True)
        if isinstance(m.content, list):
            texts = []
            for j, part in enumerate(m.content):
                if part.type != "text":
                    raise bad_request(
                        f"content part type {part.type!r} is not supported (text only)", param=f"messages[{i}].content[{j}]"
                    )
                texts.append(part.text)
            d["content"] = "\n".join(texts)
        elif m.content is None:
            d["content"] = None if m.tool_calls else ""
        if m.tool_calls:
            for call in d["tool_calls"]:
                if not isinstance(call["function"].get("arguments"), str):
                    call["function"]["arguments"] = json.dumps(call["function"]["arguments"], ensure_ascii=False)
        if m.role == "developer":
            d["role"] = "system"
        out.append(d)
    return out


def _tool_instruction(messages: list[dict[str, Any]], text: str, fmt: Any) -> list[dict[str, Any]]:
    """Tell the model it must call a tool: appended to the system prompt (or, for a format without
    one, to the last user message)."""
    msgs = [dict(m) for m in messages]
    if msgs and msgs[0]["role"] == "system":
        msgs[0]["content"] = f"{msgs[0].get('content') or ''}\n\n{text}".lstrip()
    elif getattr(fmt.info, "supports_system", True):
        msgs.insert(0, {"role": "system", "content": text})
    else:
        for m in reversed(msgs):
            if m["role"] == "user":
                m["content"] = f"{m.get('content') or ''}\n\n{text}"
                break
    return msgs


def _strip_tool_blocks(parser: Any) -> Any:
    """The same parser without tool-call grammar (``tool_choice="none"``: call syntax stays text)."""
    from ..toolcalls import OutputParser

    g = dataclasses.replace(parser.grammar, blocks=(), bare=None)
    return (g.parser_class or OutputParser)(g, parser.tokenizer, prompt=parser.prompt)


class ServerState:
    """What the routes share: the engine, its queue, the prompt encoder (with its prefix cache)."""

    def __init__(self, engine: Engine, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.scheduler = Scheduler(engine.slots, config.max_queue)
        self.metrics = _metrics(self.scheduler)  # GET /metrics (None without prometheus-client)
        # refuses a tokenizer that lacks a token the format relies on, before the app exists
        self.encoder = IncrementalEncoder(engine.format, engine.tokenizer, allow_missing_tokens=config.allow_missing_tokens)
        self._encode_lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=engine.slots + 1, thread_name_prefix="chatfmt-gen")
        self.started = time.time()
        self.text_stops_include_control = getattr(engine, "sees_text_only", False)
        #: output parsers (unused: requests get fresh copies) by format, tokenizer and tool list
        self._parsers: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}
        #: ``stops()`` by its arguments (the format and tokenizer it was computed for kept with it)
        self._stops: dict[tuple[Any, ...], tuple[Any, Any, tuple[frozenset[int], tuple[str, ...]]]] = {}
        self._cache_lock = threading.Lock()

    # -- models ---------------------------------------------------------------------------------
    def check_model(self, name: str | None) -> str:
        if name is None or name == self.engine.model_id or name in self.config.model_aliases:
            return self.engine.model_id
        raise not_found(f"the model {name!r} does not exist; this server serves {self.engine.model_id!r}", param="model", code="model_not_found")

    # -- prompts --------------------------------------------------------------------------------
    def render(self, req: ChatRequestBase, *, add_generation_prompt: bool = True, segments: bool = True) -> RenderedPrompt:
        """Prompt ids and text of a chat request, the tools offered, the tool choice, and what the
        format left out of the prompt; ``segments=False``: without the segments (``rendered`` is
        ``None``), so that the encoder may render only the messages it has not seen."""
        messages = _messages(req)
        tools = [t.model_dump(exclude_none=True) for t in req.tools] if req.tools else None
        choice = req.tool_choice
        fmt = self.engine.format
        if choice is not None and not tools and choice != "none":
            raise bad_request("tool_choice needs tools", param="tool_choice")
        if choice == "none":
            tools = None
        elif choice == "required":
            names = ", ".join(t["function"]["name"] for t in tools or [])
            messages = _tool_instruction(messages, f"You must answer by calling one of these tools: {names}.", fmt)
        elif choice is not None and choice != "auto":
            name = choice.function.name
            picked = [t for t in tools or [] if t["function"]["name"] == name]
            if not picked:
                raise bad_request(f"tool_choice names {name!r}, which is not among the tools", param="tool_choice")
            tools = picked
            messages = _tool_instruction(messages, f"You must answer by calling the tool {name}.", fmt)
        kwargs = {**self.config.template_kwargs, **(req.chat_template_kwargs or {})}
        rendered: Rendered | None = None
        try:
            with self._encode_lock:
                if not segments:
                    ids, missing = self.encoder.encode_checked(
                        messages, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs
                    )
                elif hasattr(fmt, "render_checked"):
                    rendered, missing = fmt.render_checked(
                        messages, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs
                    )
                else:  # a format object of the caller's own that cannot tell what it leaves out
                    rendered, missing = fmt.render_segments(messages, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs), ()
                if rendered is not None:
                    ids = self.encoder.encode_rendered(rendered)
                text = self.encoder.last_text
        except ValidationError as e:
            param = f"messages[{e.index}]" if e.index is not None else ("tools" if e.tool is not None else "messages")
            raise bad_request(str(e), param=param, code=e.rule) from e
        except ChatfmtError as e:
            raise bad_request(f"the chat format could not render this request: {e}", param="messages", code="render_error") from e
        except RecursionError as e:  # a value nested ~1,000 deep (the JSON limit) walked by a template
            raise bad_request("the request is nested too deeply to render", param="messages", code="render_error") from e
        except TypeError as e:  # unexpected template kwargs reaching a native format
            raise bad_request(f"chat_template_kwargs not accepted: {e}", param="chat_template_kwargs") from e
        lines = [not_rendered_message(fmt.info.name, name) for name in missing]
        return RenderedPrompt(ids, text, tools, choice, missing, lines, rendered, messages)

    def sampling(self, req: ChatCompletionRequest | CompletionRequest, prompt_len: int, *, default_temperature: float = 1.0) -> Sampling:
        max_tokens = getattr(req, "max_completion_tokens", None) or req.max_tokens
        param = "max_completion_tokens" if getattr(req, "max_completion_tokens", None) else "max_tokens"
        room = self.engine.n_ctx - prompt_len
        if room <= 0:
            raise bad_request(
                f"the prompt is {prompt_len} tokens; the model's context is {self.engine.n_ctx} tokens",
                param="messages" if isinstance(req, ChatCompletionRequest) else "prompt",
                code="context_length_exceeded",
            )
        limit = self.config.max_tokens_limit
        if max_tokens is None:
            max_tokens = min(limit, room)
        elif max_tokens < 1:
            raise bad_request(f"{param} must be at least 1", param=param)
        elif max_tokens > limit:
            raise bad_request(f"{param} is {max_tokens}; this server allows at most {limit}", param=param, code="max_tokens_exceeded")
        elif prompt_len + max_tokens > self.engine.n_ctx:
            raise bad_request(
                f"the prompt ({prompt_len} tokens) plus {param} ({max_tokens}) exceeds the context of {self.engine.n_ctx} tokens",
                param=param,
                code="context_length_exceeded",
            )
        stop_ids, stop_texts = self.stops(req.stop_list(), chat=isinstance(req, ChatCompletionRequest))
        bias = req.logit_bias or {}
        vocab = self.engine.tokenizer.vocab_size
        outside = sorted(t for t in bias if t >= vocab)
        if outside:
            raise bad_request(f"logit_bias token id(s) {outside[:5]} are outside the vocabulary ({vocab})", param="logit_bias")
        if isinstance(req, ChatCompletionRequest):
            logprobs, top = bool(req.logprobs), req.top_logprobs or 0
        else:
            logprobs, top = req.logprobs is not None, req.logprobs or 0
        s = Sampling(
            max_tokens=max_tokens,
            temperature=default_temperature if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=req.top_k or 0,
            seed=req.seed,
            repeat_penalty=req.repetition_penalty or 1.0,
            stop_ids=stop_ids,
            stop_texts=stop_texts,
            presence_penalty=req.presence_penalty or 0.0,
            frequency_penalty=req.frequency_penalty or 0.0,
            min_p=req.min_p or 0.0,
            logit_bias=bias,
            logprobs=logprobs,
            top_logprobs=top,
        )
        self.engine.check_sampling(s)
        return s

    def stops(self, extra: list[str], *, chat: bool) -> tuple[frozenset[int], tuple[str, ...]]:
        fmt, tok = self.engine.format, self.engine.tokenizer
        key = (chat, *extra)
        cached = self._stops.get(key)
        if cached is not None and cached[0] is fmt and cached[1] is tok:
            return cached[2]
        out = self._stops_of(extra, chat=chat)
        with self._cache_lock:
            if len(self._stops) >= 256:
                self._stops.pop(next(iter(self._stops)))
            self._stops[key] = (fmt, tok, out)
        return out

    def _stops_of(self, extra: list[str], *, chat: bool) -> tuple[frozenset[int], tuple[str, ...]]:
        tok = self.engine.tokenizer
        if chat:
            ids, texts = stop_tokens(self.engine.format, tok, extra)
            control = [s for s in (*self.engine.format.info.stop, *self.engine.format.info.end_of_turn) if s in tok.special_tokens]
        else:
            specials = tok.special_tokens
            ids = frozenset({specials[s] for s in extra if s in specials} | ({tok.eos_id} if tok.eos_id is not None else set()))
            texts = tuple(s for s in extra if s and s not in specials)
            control = [s for s in extra if s in specials] + ([tok.eos_token] if tok.eos_token else [])
        if self.text_stops_include_control:  # an upstream that answers text only: its control tokens come as text
            texts = tuple(dict.fromkeys([*texts, *control]))
        return ids, texts

    def prepare_chat(self, req: ChatCompletionRequest) -> PreparedChat:
        refused = req.refused()
        if refused is not None:
            raise bad_request(refused[1], param=refused[0], code="unsupported_parameter")
        r = self.render(req, segments=False)
        sampling = self.sampling(req, len(r.ids))
        sampling = constrain(self, req, r, sampling)  # response_format, a forced tool_choice
        prep = PreparedChat(r.ids, r.text, r.tools, r.tool_choice, None, sampling, r.warnings)
        prep.parser = self.chat_parser(prep)
        return prep

    def chat_parser(self, prep: PreparedChat) -> Any:
        """A fresh output parser for one choice of a prepared chat request: a copy of the one kept per
        format, tokenizer and tool list (building one looks every marker up in the tokenizer)."""
        fmt, tok = self.engine.format, self.engine.tokenizer
        none = prep.tool_choice == "none"
        key = (id(fmt), id(tok), none, json.dumps(prep.tools, sort_keys=True, default=str) if prep.tools else None)
        cached = self._parsers.get(key)
        if cached is None or cached[0] is not fmt or cached[1] is not tok:
            from ..toolcalls import parser_for_format

            proto = parser_for_format(fmt, tok, prompt=None, tools=prep.tools)
            if none:
                proto = _strip_tool_blocks(proto)
            cached = (fmt, tok, proto)
            with self._cache_lock:
                if len(self._parsers) >= 64:  # tool lists vary per client: keep the newest few
                    self._parsers.pop(next(iter(self._parsers)))
                self._parsers[key] = cached
        return cached[2].fresh(prompt=prep.text)

    def completion_ids(self, req: CompletionRequest) -> list[int]:
        prompt: Any = req.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            if len(prompt) != 1:
                raise bad_request("only one prompt per request is supported", param="prompt")
            prompt = prompt[0]
        tok = self.engine.tokenizer
        if isinstance(prompt, str):
            return self.tokenize(prompt, special=True)
        if not prompt:
            raise bad_request("the prompt is empty", param="prompt")
        bad = [t for t in prompt if t >= tok.vocab_size]
        if bad:
            raise bad_request(f"token id(s) {bad[:5]} are outside the vocabulary ({tok.vocab_size})", param="prompt")
        return list(prompt)

    def timed(self, request: Request, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` (the format layer: render and encode), its time in ``chatfmt_format_seconds``."""
        t0 = time.perf_counter()
        out = fn(*args)
        if self.metrics is not None:
            from .metrics import route_of

            self.metrics.format_seconds(route_of(request.scope), time.perf_counter() - t0)
        return out

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        from ..encode import encode_rendered

        tok = self.engine.tokenizer
        if not special:
            plain: list[int] = tok.encode_text(text)
            return plain
        ids, _, _ = encode_rendered(Rendered([Segment(text)]), tok)
        return ids


def _metrics(scheduler: Scheduler) -> Any:
    """The app's :class:`~chatfmt.server.metrics.Metrics`, or None without prometheus-client."""
    try:
        from .metrics import Metrics
    except ImportError:  # pragma: no cover - prometheus-client is in the serve extra
        return None
    return Metrics(scheduler)


# -- running a generation ----------------------------------------------------------------------------


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class Job:
    """One generation in its slot: waits its turn, runs the (blocking) generation in a worker thread
    and hands its items to the event loop; a client that leaves cancels it and frees the slot."""

    def __init__(self, state: ServerState, gen: Choices, request: Request) -> None:
        self.state = state
        self.gen = gen
        self.ticket = state.scheduler.reserve()  # 429 here, before any response is sent
        self.request = request
        self.disconnected = False
        self._started = False

    def abandon(self) -> None:
        """Give the place back if :meth:`items` never ran (a response that failed before streaming)."""
        if not self._started:
            self._started = True
            self.state.scheduler.cancel(self.ticket)

    async def items(self) -> AsyncIterator[Any]:
        if self._started:
            return
        self._started = True
        state, gen = self.state, self.gen
        loop = asyncio.get_running_loop()
        watcher = asyncio.ensure_future(_wait_disconnect(self.request))

        def on_disconnect(t: asyncio.Future[None]) -> None:
            if not t.cancelled():
                self.disconnected = True
                gen.cancel()

        watcher.add_done_callback(on_disconnect)
        try:
            await asyncio.wait({self.ticket, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            state.scheduler.cancel(self.ticket)
            watcher.cancel()
            raise
        if not self.ticket.done() or self.ticket.cancelled():
            state.scheduler.cancel(self.ticket)  # the client left while waiting
            watcher.cancel()
            return
        q: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def put(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(q.put_nowait, (kind, value))
            except RuntimeError:  # the loop is gone (shutdown)
                gen.cancel()

        def pump() -> None:
            try:
                for item in gen:
                    put("item", item)
                put("end", None)
            except BaseException as e:  # noqa: BLE001 - handed to the event loop
                put("error", e)

        fut = loop.run_in_executor(state.executor, pump)
        first = True
        try:
            while True:
                kind, value = await q.get()
                if kind == "end":
                    if state.metrics is not None:
                        state.metrics.usage(self.request.scope, _total_usage(gen.replies))
                    return
                if kind == "error":
                    raise value
                if first and state.metrics is not None:
                    state.metrics.first_token(self.request.scope)
                first = False
                yield value
        finally:
            gen.cancel()
            watcher.cancel()
            try:
                await asyncio.shield(fut)
            finally:
                state.scheduler.release(self.ticket)


# -- responses --------------------------------------------------------------------------------------


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _finish(reason: str) -> str:
    return "stop" if reason == "cancelled" else reason


def _delta_dict(d: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if d.reasoning_content:
        out["reasoning_content"] = d.reasoning_content
    if d.content:
        out["content"] = d.content
    if d.tool_calls:
        calls = []
        for tc in d.tool_calls:
            c: dict[str, Any] = {"index": tc.index}
            if tc.id is not None:
                c["id"] = tc.id
                c["type"] = "function"
            fn: dict[str, Any] = {}
            if tc.name is not None:
                fn["name"] = tc.name
            fn["arguments"] = tc.arguments
            c["function"] = fn
            calls.append(c)
        out["tool_calls"] = calls
    return out


def _error_event(e: BaseException) -> str:
    if isinstance(e, APIError):
        return _sse(e.body())
    log.exception("generation failed", exc_info=e)
    return _sse({"error": {"message": f"generation failed: {e}", "type": "server_error", "param": None, "code": None}})


def _seeded(sampling: Sampling, index: int) -> Sampling:
    """Choice ``index``'s sampling: ``seed + index`` (reproducible, distinct choices)."""
    return sampling if sampling.seed is None or index == 0 else dataclasses.replace(sampling, seed=sampling.seed + index)


def _total_usage(replies: list[Any]) -> dict[str, Any]:
    """The prompt once (as OpenAI counts it), the completion tokens of every choice."""
    done = [r for r in replies if r is not None]
    if not done:
        return {}
    first = done[0].usage
    usage = dataclasses.replace(first, completion_tokens=sum(r.usage.completion_tokens for r in done))
    out: dict[str, Any] = usage.to_dict()
    return out


class _LogprobCursor:
    """Per choice: how many of its tokens' log-probabilities went out already."""

    def __init__(self, job: Job, text_of: TokenText | None) -> None:
        self.gens = job.gen.gens
        self.text_of = text_of
        self.sent = [0] * len(self.gens)
        self.offset = [0] * len(self.gens)

    def take(self, index: int, upto: int | None = None) -> list[Any]:
        res = self.gens[index].source.result
        end = len(res.logprobs) if upto is None else min(upto, len(res.logprobs))
        got: list[Any] = res.logprobs[self.sent[index] : end]
        self.sent[index] = max(self.sent[index], end)
        return got

    def chat(self, index: int, upto: int | None = None, *, final: bool = False) -> dict[str, Any] | None:
        """``{"content": [...]}`` of the tokens not sent yet (None in a stream's last chunk when
        every token went out already)."""
        if self.text_of is None:
            return None
        entries = self.take(index, upto)
        if final and not entries:
            return None
        return {"content": chat_logprobs(entries, self.text_of)}

    def completion(self, index: int, upto: int | None, text: str) -> dict[str, Any] | None:
        if self.text_of is None:
            return None
        out = completion_logprobs(self.take(index, upto), self.text_of, self.offset[index])
        self.offset[index] += len(text)
        return out


async def _chat_stream(job: Job, model: str, include_usage: bool, text_of: TokenText | None = None) -> AsyncIterator[str]:
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    gens = job.gen.gens
    cursor = _LogprobCursor(job, text_of)

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> str:
        obj: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        }
        if include_usage:
            obj["usage"] = None
        return _sse(obj)

    started = [False] * len(gens)
    finished = [False] * len(gens)

    def finish(index: int) -> Iterable[str]:
        finished[index] = True
        reply = gens[index].reply
        if reply is None:
            return
        if not started[index]:
            started[index] = True
            yield chunk(index, {"role": "assistant", "content": ""})
        yield chunk(index, {}, _finish(reply.finish_reason), cursor.chat(index, final=True))

    current = 0
    try:
        async for index, d, upto in job.items():
            while current < index:  # the choices before this one are complete
                for c in finish(current):
                    yield c
                current += 1
            if not started[index]:
                started[index] = True
                yield chunk(index, {"role": "assistant", "content": ""})
            delta = _delta_dict(d)
            if delta:
                yield chunk(index, delta, logprobs=cursor.chat(index, upto))
    except Exception as e:  # noqa: BLE001 - the status is sent already: the error goes in the stream
        yield _error_event(e)
        yield "data: [DONE]\n\n"
        return
    if gens[0].reply is None:  # cancelled while waiting
        return
    for index in range(len(gens)):
        if not finished[index]:
            for c in finish(index):
                yield c
    if include_usage:
        usage = _total_usage(job.gen.replies)
        yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage})
    yield "data: [DONE]\n\n"


async def _completion_stream(
    job: Job, model: str, include_usage: bool, with_ids: bool, text_of: TokenText | None = None
) -> AsyncIterator[str]:
    cid = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    gens = job.gen.gens
    cursor = _LogprobCursor(job, text_of)

    def chunk(index: int, text: str, ids: list[int] | None, finish: str | None = None, logprobs: Any = None) -> str:
        choice: dict[str, Any] = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
        if with_ids:
            choice["token_ids"] = ids or []
        obj: dict[str, Any] = {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": [choice]}
        if include_usage:
            obj["usage"] = None
        return _sse(obj)

    finished = [False] * len(gens)

    def finish(index: int) -> Iterable[str]:
        finished[index] = True
        reply = gens[index].reply
        if reply is not None:
            yield chunk(index, "", [], _finish(reply.finish_reason), cursor.completion(index, None, ""))

    current = 0
    try:
        async for index, (text, ids), upto in job.items():
            while current < index:
                for c in finish(current):
                    yield c
                current += 1
            yield chunk(index, text, ids, logprobs=cursor.completion(index, upto, text))
    except Exception as e:  # noqa: BLE001
        yield _error_event(e)
        yield "data: [DONE]\n\n"
        return
    if gens[0].reply is None:
        return
    for index in range(len(gens)):
        if not finished[index]:
            for c in finish(index):
                yield c
    if include_usage:
        usage = _total_usage(job.gen.replies)
        yield _sse({"id": cid, "object": "text_completion", "created": created, "model": model, "choices": [], "usage": usage})
    yield "data: [DONE]\n\n"


async def _drain(job: Job) -> None:
    async for _ in job.items():
        pass


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _JobStream(StreamingResponse):
    """An SSE response that gives its queue place back even when it never got to stream (the client
    was gone before the headers went out)."""

    def __init__(self, content: AsyncIterator[str], job: Job, headers: dict[str, str] | None = None) -> None:
        super().__init__(content, media_type="text/event-stream", headers={**_SSE_HEADERS, **(headers or {})})
        self.job = job

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.abandon()


# -- the app ----------------------------------------------------------------------------------------


def _json_position(doc: Any, pos: Any) -> str:
    """`` (line L, column C)`` of character ``pos`` of a request body, or ``""``."""
    if isinstance(doc, bytes):
        doc = doc.decode("utf-8", "replace")
    if not isinstance(doc, str) or not isinstance(pos, int) or not 0 <= pos <= len(doc):
        return ""
    return f" (line {doc.count(chr(10), 0, pos) + 1}, column {pos - doc.rfind(chr(10), 0, pos)})"


def _validation_message(errors: Iterable[dict[str, Any]], body: Any = None) -> tuple[str, str | None, str]:
    errs = list(errors)
    if not errs:
        return "invalid request", None, "invalid_request"
    e = errs[0]
    if e.get("type") == "extra_forbidden":
        name = ".".join(str(x) for x in e.get("loc") or () if x != "body")
        return (
            f"unrecognized request field {name!r}: chatfmt refuses a field it would otherwise ignore",
            name or None,
            "unrecognized_field",
        )
    if e.get("type") == "json_invalid":
        loc = tuple(e.get("loc") or ())
        where = _json_position(body, loc[1] if len(loc) > 1 else None)
        return f"the body is not valid JSON: {e.get('ctx', {}).get('error', e.get('msg'))}{where}", None, "invalid_json"
    # a union field fails once per member: report the location those errors share
    common = tuple(e.get("loc") or ())
    for other in errs[1:]:
        loc = tuple(other.get("loc") or ())
        if loc[:2] != common[:2]:
            continue
        k = 0
        while k < min(len(common), len(loc)) and common[k] == loc[k]:
            k += 1
        common = common[:k]
    param = loc_to_param(common)
    msg = str(e.get("msg", "invalid value"))
    if param is None and e.get("type") == "missing":
        return "the request needs a JSON body", None, "invalid_request"
    more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
    return (f"{param}: {msg}" if param else msg) + more, param, "invalid_request"


def create_app(engine: Engine | None = None, config: ServerConfig | None = None, **options: Any) -> FastAPI:
    """The server app for ``engine`` (default: the built-in default model on the auto backend).

    ``options`` are :class:`ServerConfig` fields (``api_key``, ``max_queue``, ``max_body_bytes``,
    ``max_tokens_limit``, ``model_aliases``, ``allowed_hosts``, ``cors_allow_origins``,
    ``body_timeout``). Header read timeouts and the connection limit belong to the HTTP server: see
    :func:`chatfmt.server.transport.uvicorn_config`."""
    if config is None:
        config = ServerConfig(**options)
    elif options:
        config = dataclasses.replace(config, **options)
    if engine is None:
        from ..inference.backends import load_backend
        from .engines import LocalEngine

        engine = LocalEngine(load_backend())
    check_origins(config.cors_allow_origins)  # a malformed origin fails here, not at the first request
    if config.body_timeout is not None and not config.body_timeout > 0:
        raise ServerConfigError(f"body_timeout must be more than 0 seconds (None: no limit), got {config.body_timeout}")
    state = ServerState(engine, config)
    unread = unread_template_kwargs(engine.format, config.template_kwargs)
    if unread:  # a default that changes no prompt: said once, at start (and per request in X-Chatfmt-Warning)
        warn_not_rendered(engine.format.info.name, unread)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="chatfmt", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.chatfmt = state

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        msg, param, code = _validation_message(exc.errors(), exc.body)
        return JSONResponse(APIError(400, msg, param=param, code=code).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err = APIError(404, f"no such route: {request.method} {request.url.path}", code="not_found")
        elif exc.status_code == 405:
            err = APIError(405, f"method {request.method} not allowed on {request.url.path}", code="method_not_allowed")
        else:
            err = APIError(exc.status_code, str(exc.detail), code="http_error")
        return JSONResponse(err.body(), status_code=err.status, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        err = APIError(500, f"internal error: {type(exc).__name__}", type="server_error", code="internal_error")
        return JSONResponse(err.body(), status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        s = state.scheduler
        return {
            "status": "ok",
            **engine.describe(),
            "queue": {
                "running": s.running, "waiting": s.waiting, "max_queue": s.max_queue, "slots": s.slots,
                "expected_wait_s": round(s.expected_wait(), 2),
            },
            "uptime_s": round(time.time() - state.started, 1),
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        ids = [engine.model_id, *config.model_aliases]
        created = int(state.started)
        return {
            "object": "list",
            "data": [{"id": i, "object": "model", "created": created, "owned_by": "chatfmt", "max_model_len": engine.n_ctx} for i in ids],
        }

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        state.check_model(model_id)
        return {"id": model_id, "object": "model", "created": int(state.started), "owned_by": "chatfmt", "max_model_len": engine.n_ctx}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
        model_id = state.check_model(req.model)
        prep = await run_in_threadpool(state.timed, request, state.prepare_chat, req)
        if engine.checks_prompt:  # a proxy whose upstream tokenizes the text itself
            await run_in_threadpool(engine.check_prompt, prep.ids, prep.text)
        gens = [
            ChatGeneration(
                engine.source(prep.ids, prep.text, _seeded(prep.sampling, i)),
                prep.parser if i == 0 else state.chat_parser(prep),
                prep.sampling.stop_texts,
            )
            for i in range(req.n)
        ]
        job = Job(state, Choices(gens), request)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        headers = warning_headers(prep.warnings)
        text_of = TokenText(engine.tokenizer) if prep.sampling.logprobs else None
        if req.stream:
            return _JobStream(with_keepalive(_chat_stream(job, model_id, include_usage, text_of), config.sse_keepalive), job, headers)
        await _drain(job)
        replies = job.gen.replies
        if any(r is None for r in replies):  # the client left
            return JSONResponse({}, status_code=499)
        cursor = _LogprobCursor(job, text_of)
        body: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_id,
            "choices": [
                {"index": i, "message": r.message(), "logprobs": cursor.chat(i), "finish_reason": _finish(r.finish_reason)}
                for i, r in enumerate(replies)
            ],
            "usage": _total_usage(replies),
        }
        if prep.warnings:
            body["warnings"] = prep.warnings
        return JSONResponse(body, headers=headers) if headers else body

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest, request: Request) -> Any:
        model_id = state.check_model(req.model)
        for name, bad in (("echo", req.echo), ("suffix", req.suffix is not None), ("best_of", (req.best_of or 1) > 1)):
            if bad:
                raise bad_request(f"{name} is not supported", param=name)
        ids = await run_in_threadpool(state.timed, request, state.completion_ids, req)
        sampling = state.sampling(req, len(ids))
        text = engine.tokenizer.decode(ids) if engine.prompt_mode == "text" else ""
        if engine.checks_prompt:
            await run_in_threadpool(engine.check_prompt, ids, text)
        gens = [TextGeneration(engine.source(ids, text, _seeded(sampling, i)), sampling.stop_texts) for i in range(req.n)]
        job = Job(state, Choices(gens), request)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        text_of = TokenText(engine.tokenizer) if sampling.logprobs else None
        if req.stream:
            stream = _completion_stream(job, model_id, include_usage, req.return_token_ids, text_of)
            return _JobStream(with_keepalive(stream, config.sse_keepalive), job)
        await _drain(job)
        replies = job.gen.replies
        if any(r is None for r in replies):
            return JSONResponse({}, status_code=499)
        cursor = _LogprobCursor(job, text_of)
        choices = []
        for i, reply in enumerate(replies):
            choice: dict[str, Any] = {
                "index": i,
                "text": reply.text,
                "logprobs": cursor.completion(i, None, reply.text),
                "finish_reason": _finish(reply.finish_reason),
            }
            if req.return_token_ids:
                choice["token_ids"] = reply.completion_ids
            choices.append(choice)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_id,
            "choices": choices,
            "usage": _total_usage(replies),
        }

    @app.post("/v1/render", response_model=None)
    async def render(req: RenderRequest) -> Any:
        model_id = state.check_model(req.model)
        r = await run_in_threadpool(lambda: state.render(req, add_generation_prompt=req.add_generation_prompt))
        body = {
            "model": model_id,
            "format": engine.format.info.name,
            "prompt": r.text,
            "prompt_token_ids": r.ids,
            "num_tokens": len(r.ids),
            "tools_rendered": r.tools_rendered,
            "not_rendered": list(r.not_rendered),
            "warnings": r.warnings,
        }
        return JSONResponse(body, headers=warning_headers(r.warnings))

    @app.post("/v1/tokenize")
    async def tokenize(req: TokenizeRequest) -> dict[str, Any]:
        state.check_model(req.model)
        ids = await run_in_threadpool(lambda: state.tokenize(req.prompt, special=req.special))
        return {"tokens": ids, "count": len(ids), "max_model_len": engine.n_ctx}

    @app.post("/v1/detokenize")
    async def detokenize(req: DetokenizeRequest) -> dict[str, Any]:
        state.check_model(req.model)
        n = engine.tokenizer.vocab_size
        bad = [t for t in req.tokens if t >= n]
        if bad:
            raise bad_request(f"token id(s) {bad[:5]} are outside the vocabulary ({n})", param="tokens")
        return {"prompt": engine.tokenizer.decode(req.tokens)}

    from .webpage import add_web_page

    add_web_page(app, state)  # GET / (the page), /static/*, POST /v1/render/tokens

    app.add_middleware(Guard, api_key=config.api_key, max_body_bytes=config.max_body_bytes, body_timeout=config.body_timeout)
    app.add_middleware(OriginGuard, allowed_hosts=config.allowed_hosts, cors_allow_origins=config.cors_allow_origins)
    if state.metrics is not None:

        @app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            assert state.metrics is not None
            body, content_type = state.metrics.exposition()
            return Response(body, media_type=content_type)

        from .metrics import MetricsMiddleware

        app.add_middleware(MetricsMiddleware, metrics=state.metrics, routes=[getattr(r, "path", "") for r in app.routes])
    app.add_middleware(AccessLog)  # outermost: logs what the guards refused too
    return app
