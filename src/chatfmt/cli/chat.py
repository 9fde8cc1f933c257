"""``chatfmt chat``: talk to a model in its exact chat format.

Three modes:

* interactive (stdin is a terminal, no ``-p``): a prompt_toolkit prompt with history, the reply
  streamed token by token (reasoning dim, tool calls yellow), and slash commands (``/help``);
* ``-p "question"``: answer once, the reply's content on stdout (``--json``: the whole message);
* stdin is not a terminal and no ``-p``: all of stdin is one question, answered as with ``-p``.
"""

from __future__ import annotations

import json
import sys
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from ..errors import ChatfmtError, ChatfmtWarning
from .common import (
    BackendOption,
    DeviceOption,
    DtypeOption,
    FormatOption,
    NCtxOption,
    NGpuLayersOption,
    TemplateKwargOption,
    ThreadsOption,
    chatfmt_warnings,
    fail,
    machine_options,
    read_json_input,
    template_kwargs_option,
    user_errors,
    warn,
)

USER_STYLE = "bold green"
ASSISTANT_STYLE = "bold cyan"
REASONING_STYLE = "dim italic"
TOOL_STYLE = "yellow"
NOTICE_STYLE = "dim"
ERROR_STYLE = "bold red"
CONTROL_STYLE = "bold underline magenta"
GENERATED_STYLE = "underline"
HISTORY_FILE = "chat_history"


# -- loading ----------------------------------------------------------------------------------


def _load_tools(path: str | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    data, name = read_json_input(path)
    if isinstance(data, dict) and isinstance(data.get("tools"), list):
        data = data["tools"]  # a saved conversation: take its tools
    if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
        fail(f"{name}: expected a JSON list of tool definitions")
    return data


def _response_format(json_schema: str | None, json_object: bool) -> dict[str, Any] | None:
    """``--json-schema FILE`` / ``--json-object`` as an OpenAI ``response_format``. The file holds a
    JSON Schema (enforced as written), or an OpenAI ``json_schema`` object (``{"name", "schema",
    "strict"}``; ``strict: true`` also closes objects without ``additionalProperties``)."""
    if json_schema is not None and json_object:
        fail("--json-schema and --json-object exclude each other")
    if json_object:
        return {"type": "json_object"}
    if json_schema is None:
        return None
    data, name = read_json_input(json_schema)
    if isinstance(data, dict) and data.get("type") == "json_schema" and isinstance(data.get("json_schema"), dict):
        return data  # a whole response_format
    if isinstance(data, dict) and isinstance(data.get("schema"), (dict, bool)) and "name" in data:
        return {"type": "json_schema", "json_schema": data}
    if not isinstance(data, (dict, bool)):
        fail(f"{name}: expected a JSON Schema (an object)")
    return {"type": "json_schema", "json_schema": {"name": Path(name).stem or "schema", "schema": data}}


def _check_response_format(response_format: dict[str, Any], source: str) -> None:
    """An unsupported schema feature: one line naming the file and the feature, exit 2 (before the
    model is loaded)."""
    from ..errors import ConstraintError
    from ..inference.constrain import check_response_format

    try:
        check_response_format(response_format)
    except ConstraintError as e:
        msg = str(e)
        if e.param and msg.startswith(f"{e.param}: "):
            msg = msg[len(e.param) + 2 :]
        fail(f"{source}: {msg}")


def _make_chat(
    model: str | Path | None,
    backend: str,
    format: str | None,
    system: str | None,
    tools: list[dict[str, Any]],
    max_new_tokens: int,
    temperature: float,
    seed: int | None,
    ctx: int | None,
    allow_missing_tokens: bool = False,
    template_kwargs: dict[str, Any] | None = None,
    machine: dict[str, Any] | None = None,
) -> Any:
    from ..inference import Chat

    options: dict[str, Any] = {"n_ctx": ctx} if ctx is not None else {}
    options.update(machine or {})  # --threads, --device, --dtype, --n-gpu-layers
    with user_errors(), chatfmt_warnings():  # auto skipping a backend that crashes here: one line
        return Chat(
            model,
            backend=backend,
            format=format,
            system=system,
            tools=tools,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            allow_missing_tokens=allow_missing_tokens,
            template_kwargs=template_kwargs,
            **options,
        )


def not_rendered_lines(chat: Any) -> list[str]:
    """What the chat's format leaves out of its prompts (the tools, template keywords), one line each."""
    from ..formats.base import not_rendered_message

    if (not chat.tools and not chat.template_kwargs) or not hasattr(chat.format, "unrendered"):
        return []
    probe = [*chat.messages, {"role": "user", "content": "Hello!"}]
    try:
        missing = chat.format.unrendered(
            probe, tools=chat.tools or None, add_generation_prompt=True, **chat.template_kwargs
        )
    except (ChatfmtError, ValueError):
        return []
    return [not_rendered_message(chat.format.name, name) for name in missing]


# -- one question -------------------------------------------------------------------------------


def reply_json(reply: Any) -> dict[str, Any]:
    """The ``--json`` output: the assistant message with every field present, why it ended and the
    token usage."""
    return {
        "role": "assistant",
        "content": reply.content,
        "reasoning_content": reply.reasoning_content,
        "tool_calls": reply.tool_calls,
        "finish_reason": reply.finish_reason,
        "usage": reply.usage.to_dict(),
        "warnings": list(reply.warnings),
    }


def _answer_once(chat: Any, question: str, as_json: bool) -> None:
    """Answer ``question``: content streamed to stdout (tool calls as ``tool call: name(args)``
    lines), or with ``as_json`` the whole reply as one JSON object. Errors: one line, exit 2."""
    out = sys.stdout
    wrote = False
    with user_errors(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ChatfmtWarning)
        for delta in chat.stream(question):
            if as_json or not delta.content:
                continue
            out.write(delta.content)
            out.flush()
            wrote = True
    reply = chat.last_reply
    if as_json:
        typer.echo(json.dumps(reply_json(reply), ensure_ascii=False))
        return
    for call in reply.tool_calls:
        fn = call["function"]
        out.write(("\n" if wrote else "") + f"tool call: {fn['name']}({fn['arguments']})")
        wrote = True
    if wrote:
        out.write("\n")
    out.flush()


# -- the interactive session ------------------------------------------------------------------


def safe_text(text: str) -> str:
    """``text`` with terminal control characters (other than newline and tab) shown as
    ``<U+XXXX>``, so model output or a prompt cannot send escape sequences to the terminal."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf") else f"<U+{ord(ch):04X}>" for ch in text
    )


def tokens_view(chat: Any, *, last_turn: bool = False) -> Text:
    """What the model sees, control tokens marked, with the token counts and ids. ``last_turn``:
    the prompt of the last reply as it was fitted and fed, then the tokens generated (underlined);
    otherwise the prompt the model would get now to write the next assistant turn."""
    from ..train.inspect import decode_pieces

    if last_turn:
        prompt, generated = list(chat.last_fit.ids), list(chat.last_reply.completion_ids)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ChatfmtWarning)
            prompt, generated = chat.prompt_ids(), []
    ids = prompt + generated
    control = set(chat.tokenizer.special_tokens.values())
    text = Text()
    for k, (tid, (piece, _partial)) in enumerate(zip(ids, decode_pieces(chat.tokenizer, ids))):
        style = CONTROL_STYLE if tid in control else (GENERATED_STYLE if k >= len(prompt) else None)
        text.append(safe_text(piece), style=style)
    n_control = sum(1 for t in prompt if t in control)
    summary = f"\n{len(prompt)} prompt tokens ({n_control} control, marked)"
    if last_turn:
        summary += f" + {len(generated)} generated (underlined)"
    summary += f", format {chat.format.name}, context {chat.backend.n_ctx}, up to {chat.params.max_tokens} new"
    fit = chat.last_fit
    if fit is not None and fit.dropped_messages:
        summary += f"; {fit.dropped_messages} oldest message(s) left out to fit"
    text.append(summary + "\n", style=NOTICE_STYLE)
    text.append("prompt ids: " + " ".join(map(str, prompt)), style=NOTICE_STYLE)
    if last_turn:
        text.append("\ngenerated ids: " + " ".join(map(str, generated)), style=NOTICE_STYLE)
    return text


@dataclass(frozen=True)
class Command:
    """A slash command of the REPL: ``run(repl, argument) -> True`` to quit."""

    name: str
    usage: str
    help: str
    run: Callable[[Repl, str], bool | None]


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str, help: str, aliases: Sequence[str] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a REPL slash command (``name`` without the slash)."""

    def deco(fn: Callable[[Repl, str], bool | None]) -> Callable[[Repl, str], bool | None]:
        cmd = Command(name, usage, help, fn)
        for n in (name, *aliases):
            COMMANDS[n] = cmd
        return fn

    return deco


class Repl:
    """The interactive loop: read a line, run a command or stream the model's reply."""

    def __init__(self, chat: Any, console: Console, session: Any = None) -> None:
        self.chat = chat
        self.console = console
        self.session = session if session is not None else _prompt_session()
        #: the conversation and format right after the last reply (``/tokens`` shows that turn while
        #: they are unchanged)
        self.after_reply: tuple[list[Any], Any] | None = None

    # -- output helpers
    def notice(self, message: str) -> None:
        self.console.print(Text(message, style=NOTICE_STYLE))

    def error(self, message: str) -> None:
        self.console.print(Text(f"error: {message}", style=ERROR_STYLE))

    def banner(self) -> None:
        chat = self.chat
        from ..hub import origin

        path = Path(chat.backend.model_path)
        repo = origin(path)  # a Hub snapshot: the repo id, not the commit hash
        name = (f"{repo}:{path.name}" if path.is_file() else repo) if repo else (path.name or chat.backend.model_path)
        self.console.print(
            Text.assemble(
                ("chatfmt chat", "bold"),
                f": {name} on {chat.backend.name}, format {chat.format.name}, context {chat.backend.n_ctx} tokens",
            )
        )
        self.notice("/help lists the commands; Esc Enter adds a line; Ctrl-C stops a reply; Ctrl-D or /quit exits")

    # -- the loop
    def run(self) -> None:
        from prompt_toolkit.formatted_text import FormattedText

        self.banner()
        prompt = FormattedText([(f"{_ptk_style(USER_STYLE)}", "you"), ("", "> ")])
        while True:
            try:
                line = self.session.prompt(prompt)
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            if self.handle(line):
                break

    def handle(self, line: str) -> bool:
        """One input line; True to quit."""
        text = line.strip()
        if not text:
            return False
        if text.startswith("/") and not text.startswith("//"):
            name, _, arg = text[1:].partition(" ")
            cmd = COMMANDS.get(name.lower())
            if cmd is None:
                self.error(f"unknown command /{name}; /help lists the commands")
                return False
            return bool(cmd.run(self, arg.strip()))
        if text.startswith("//"):
            line = line.lstrip()[1:]  # "//x" sends "/x"
        self.ask(line)
        return False

    def ask(self, question: str) -> None:
        """Send ``question`` and stream the reply; on an error or Ctrl-C the question is taken back."""
        chat = self.chat
        before = list(chat.messages)
        printer = _DeltaPrinter(self.console)
        printer.label()
        stream = chat.stream(question)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ChatfmtWarning)
                for delta in stream:
                    printer.show(delta)
        except KeyboardInterrupt:
            stream.close()
            chat.messages = before
            self.after_reply = None  # chat.last_fit is now the interrupted prompt's
            printer.end()
            self.notice("[stopped; the question was not added to the conversation]")
            return
        except ChatfmtError as e:
            chat.messages = before
            self.after_reply = None
            printer.end()
            self.error(str(e))
            return
        printer.end()
        self.after_reply = (list(chat.messages), chat.format)
        reply = chat.last_reply
        if reply.finish_reason == "length":
            self.notice(f"[cut off at {chat.params.max_tokens} new tokens (--max-new-tokens)]")
        for w in reply.warnings:
            self.notice(f"[warning: {w}]")
        if reply.tool_calls:
            self.notice("[tool calls are shown, not run: chatfmt chat runs no tools]")
        fit = chat.last_fit
        if fit is not None and fit.dropped_messages:
            self.notice(
                f"[history: the {fit.dropped_messages} oldest message(s) after the system prompt were left out "
                f"of the prompt to fit the context ({chat.backend.n_ctx} tokens); /tokens shows what the model sees]"
            )


class _DeltaPrinter:
    """Streams deltas: content plain, reasoning dim, tool calls yellow; a change of kind (and each
    tool call) starts a new line."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.kind: str | None = None
        self.at_line_start = False
        self.tool_open = False

    def label(self) -> None:
        self.console.print(Text("assistant", style=ASSISTANT_STYLE), end="> ")

    def _close_tool(self) -> None:
        if self.tool_open:
            self.console.print(Text(")", style=TOOL_STYLE), end="")
            self.tool_open = False
            self.at_line_start = False

    def _write(self, text: str, style: str | None, kind: str, *, new_item: bool = False) -> None:
        if kind != "tool" or new_item:
            self._close_tool()
            if self.kind is not None and (self.kind != kind or new_item) and not self.at_line_start:
                self.console.print()
                self.at_line_start = True
        self.kind = kind
        if text:
            self.console.print(Text(safe_text(text), style=style or ""), end="")
            self.at_line_start = text.endswith("\n")

    def show(self, delta: Any) -> None:
        if delta.reasoning_content:
            self._write(delta.reasoning_content, REASONING_STYLE, "reasoning")
        if delta.content:
            self._write(delta.content, None, "content")
        for call in delta.tool_calls:
            if call.name is not None:
                self._write(f"tool call: {call.name}(", TOOL_STYLE, "tool", new_item=True)
                self.tool_open = True
            self._write(call.arguments, TOOL_STYLE, "tool")

    def end(self) -> None:
        self._close_tool()
        self.console.print()


def _ptk_style(rich_style: str) -> str:
    """prompt_toolkit's spelling of a simple Rich style ("bold green" -> "bold ansigreen")."""
    return " ".join(w if w in ("bold", "italic", "underline") else f"ansi{w}" for w in rich_style.split())


def _prompt_session() -> Any:
    """A prompt_toolkit session: history kept in the cache directory (in memory when that is not
    writable); Esc Enter (or Alt-Enter) inserts a newline."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings

    from ..models import cache_dir

    history: Any
    try:
        d = cache_dir()
        d.mkdir(parents=True, exist_ok=True)
        path = d / HISTORY_FILE
        path.touch(exist_ok=True)
        history = FileHistory(str(path))
    except OSError:
        history = InMemoryHistory()
    kb = KeyBindings()

    @kb.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    return PromptSession(history=history, key_bindings=kb)


# -- the commands -------------------------------------------------------------------------------


@command("help", "/help", "this list", aliases=("?",))
def _help(repl: Repl, arg: str) -> None:
    seen: list[Command] = []
    for cmd in COMMANDS.values():
        if cmd not in seen:
            seen.append(cmd)
    width = max(len(c.usage) for c in seen)
    for c in seen:
        repl.console.print(Text.assemble((c.usage.ljust(width), "bold"), "  ", c.help))
    repl.notice("Anything else is sent to the model (start it with // to send a line beginning with /).")


@command("quit", "/quit", "leave (also /exit, Ctrl-D)", aliases=("exit", "q"))
def _quit(repl: Repl, arg: str) -> bool:
    return True


@command("reset", "/reset", "forget the conversation (the system prompt stays)")
def _reset(repl: Repl, arg: str) -> None:
    repl.chat.reset()
    repl.notice("conversation cleared" + (" (system prompt kept)" if repl.chat.system is not None else ""))


@command("system", "/system [TEXT|--clear]", "show, set or clear the system prompt")
def _system(repl: Repl, arg: str) -> None:
    chat = repl.chat
    if not arg:
        if chat.system is None:
            repl.notice("no system prompt (the format's default applies, if it has one)")
        else:
            repl.console.print(Text(safe_text(chat.system)))
        return
    chat.system = None if arg == "--clear" else arg
    repl.notice("system prompt cleared" if chat.system is None else "system prompt set")


@command("save", "/save FILE", 'write the conversation as {"messages", "tools"} JSON (chatfmt render reads it)')
def _save(repl: Repl, arg: str) -> None:
    if not arg:
        repl.error("/save needs a file name")
        return
    path = Path(arg).expanduser()
    try:
        repl.chat.save(path)
    except OSError as e:
        repl.error(f"{path}: {e.strerror or e}")
        return
    repl.notice(f"saved {len(repl.chat.messages)} message(s) to {path}")


@command("format", "/format [NAME|FILE]", "show or switch the chat format (a built-in name, .jinja, .toml, .gguf, ...)")
def _format(repl: Repl, arg: str) -> None:
    if not arg:
        repl.notice(f"format: {repl.chat.format.name}")
        return
    try:
        repl.chat.set_format(arg)
    except (ChatfmtError, OSError) as e:
        repl.error(str(e))
        return
    repl.notice(f"format: {repl.chat.format.name}")
    for line in not_rendered_lines(repl.chat):
        repl.notice(f"[warning: {line}]")


@command(
    "tokens",
    "/tokens",
    "what the model saw for the last reply (and generated), or, after a change, what it would see now: "
    "control tokens marked, counts and ids",
)
def _tokens(repl: Repl, arg: str) -> None:
    chat = repl.chat
    last = repl.after_reply
    last_turn = last is not None and chat.last_reply is not None and last[0] == chat.messages and last[1] is chat.format
    if not last_turn and not chat.messages:
        repl.notice("nothing to show yet: the conversation is empty (the first question starts it)")
        return
    try:
        repl.console.print(tokens_view(chat, last_turn=last_turn))
    except ChatfmtError as e:
        repl.error(str(e))


# -- the command --------------------------------------------------------------------------------


def chat_cmd(
    model: str = typer.Option(
        None, "--model", "-m", help="A .gguf file, a model directory or a Hub id ORG/NAME[@REV][:FILE.gguf] (default: SmolLM2-135M-Instruct)."
    ),
    gguf_file: str = typer.Option(None, "--gguf-file", help="The GGUF file to run in --model's directory or Hub repository."),
    backend: BackendOption = "auto",
    format: FormatOption = None,
    system: str = typer.Option(None, "--system", "-s", help="System prompt."),
    tools: str = typer.Option(None, "--tools", help="A JSON file with tool definitions to offer (calls are shown, not run)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Most tokens a reply may have."),
    temperature: float = typer.Option(0.7, "--temperature", help="Sampling temperature; 0 is greedy."),
    seed: int = typer.Option(None, "--seed", help="Random seed for sampling."),
    ctx: NCtxOption = None,
    prompt: str = typer.Option(None, "--prompt", "-p", help="Answer this question once and exit."),
    as_json: bool = typer.Option(False, "--json", help="With -p (or a question on stdin): print the whole reply as JSON."),
    allow_missing_tokens: bool = typer.Option(
        False, "--allow-missing-tokens", help="Chat even if the model's tokenizer lacks a token the format relies on (refused by default)."
    ),
    template_kwarg: TemplateKwargOption = None,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    n_gpu_layers: NGpuLayersOption = None,
    json_schema: str = typer.Option(
        None,
        "--json-schema",
        help="Every reply is JSON valid against this JSON Schema file (or an OpenAI json_schema object with name/schema/strict).",
    ),
    json_object: bool = typer.Option(False, "--json-object", help="Every reply is a JSON object."),
) -> None:
    """Chat with a model in its exact format: interactive, or one question with -p (or on stdin)."""
    if max_new_tokens < 1:
        fail(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0:
        fail(f"--temperature must be >= 0, got {temperature}")
    if ctx is not None and ctx < 2:
        fail(f"--ctx must be at least 2, got {ctx}")
    question = prompt
    if question is None and not sys.stdin.isatty():
        question = sys.stdin.read().strip()  # the whole of stdin, without the final newline
        if not question:
            fail("no question: stdin is empty (give one with -p, or run in a terminal to chat)")
    if question is None and as_json:
        fail("--json needs a question: -p QUESTION or one on stdin")
    template_kwargs = template_kwargs_option(template_kwarg)
    tool_list = _load_tools(tools)
    response_format = _response_format(json_schema, json_object)
    if response_format is not None:
        _check_response_format(response_format, json_schema or "--json-object")
    model_ref: str | Path | None = model
    if gguf_file is not None:
        from ..hub import with_gguf_file

        with user_errors():
            model_ref = with_gguf_file(model, gguf_file)
    if question is None:
        Console(stderr=True, highlight=False).print(Text("loading the model ...", style=NOTICE_STYLE))
    chat = _make_chat(
        model_ref, backend, format, system, tool_list, max_new_tokens, temperature, seed, ctx, allow_missing_tokens, template_kwargs,
        machine_options(threads, device, dtype, n_gpu_layers),
    )
    for line in not_rendered_lines(chat):
        warn(line)
    if response_format is not None:
        chat.response_format = response_format
    if question is not None:
        _answer_once(chat, question, as_json)
        return
    Repl(chat, Console(highlight=False, soft_wrap=True)).run()
