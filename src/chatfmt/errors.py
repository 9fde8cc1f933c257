"""Exception types. Every error says what was wrong and where (file, line, message index)."""

from __future__ import annotations

from typing import Any


class ChatfmtError(Exception):
    """Base class of every error chatfmt raises on bad input."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        super().__init__(self._full())

    def _where(self) -> str:
        parts = []
        if self.source:
            parts.append(str(self.source))
        if self.line is not None:
            parts.append(str(self.line) if self.source else f"line {self.line}")
        return ":".join(parts)

    def _full(self) -> str:
        where = self._where()
        return f"{where}: {self.message}" if where else self.message

    def __str__(self) -> str:  # recomputed so that source/line set after construction show up
        return self._full()

    def located(self, *, source: str | None = None, line: int | None = None) -> ChatfmtError:
        """Fill in the file and line if they are not known yet; returns self for chaining."""
        if self.source is None and source is not None:
            self.source = source
        if self.line is None and line is not None:
            self.line = line
        return self


class ValidationError(ChatfmtError, ValueError):
    """A conversation or record broke a rule; names the message index (or the tool index, for a bad
    tool definition) and the rule."""

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        rule: str = "invalid",
        tool: int | None = None,
        source: str | None = None,
        line: int | None = None,
    ) -> None:
        self.index = index
        self.rule = rule
        self.tool = tool
        super().__init__(message, source=source, line=line)

    def _full(self) -> str:
        text = self.message if self.tool is None else f"tool {self.tool}: {self.message}"
        text = text if self.index is None else f"message {self.index}: {text}"
        where = self._where()
        return f"{where}: {text}" if where else text


class FormatError(ChatfmtError, ValueError):
    """A format could not be loaded or is malformed (bad TOML key, unknown built-in, missing template)."""


class UnknownFormatError(FormatError, KeyError):
    """A format name that is neither a built-in nor a readable path."""

    def __str__(self) -> str:
        return self._full()


class TemplateError(ChatfmtError):
    """A Jinja chat template failed: it raised (with its own message), is invalid, or broke a limit."""


class TemplateLimitError(TemplateError):
    """A template exceeded its time or output-size budget, or tried something the sandbox forbids."""


class TemplateFailure(ChatfmtError):
    """A built-in format that writes a template's tool rendering in Python reached a point where the
    template raises (a malformed tool definition); the format reports it as a :class:`ValidationError`
    naming the tool."""


class SpecError(FormatError):
    """A declarative (TOML) format spec is invalid; names the file, the line and the key path
    (``roles.user.prefix``) of the offending key."""

    def __init__(
        self, message: str, *, key: str | None = None, source: str | None = None, line: int | None = None
    ) -> None:
        self.key = key
        super().__init__(message, source=source, line=line)

    def _full(self) -> str:
        text = f"{self.key}: {self.message}" if self.key else self.message
        where = self._where()
        return f"{where}: {text}" if where else text


class EmptyConversationError(ValidationError):
    """A prompt was asked for a conversation that has no messages yet."""

    def __init__(self, message: str = "the conversation is empty: add a message first") -> None:
        super().__init__(message, rule="empty-conversation")


class BackendError(ChatfmtError):
    """A backend could not be loaded (missing library, unreadable model) or failed to generate."""


class BackendCrashError(BackendError):
    """A native backend killed the process that ran it (a signal such as SIGSEGV or SIGILL) when
    chatfmt tried it in a child process; the message names the signal and how to repair the build."""

    def __init__(self, message: str, *, backend: str, signal: int | None = None) -> None:
        self.backend = backend
        self.signal = signal
        super().__init__(message)


class HubError(ChatfmtError):
    """A Hugging Face Hub model id (``ORG/NAME[@REVISION][:FILE]``, see :mod:`chatfmt.hub`) could not
    be made local: the source is the id as given, the message one line saying why."""


class HubRepoNotFoundError(HubError):
    """No such model repository (or revision) on the Hub, or a private one without a token."""


class HubFileNotFoundError(HubError):
    """The repository holds no such file (a ``:FILE`` named, or one its index lists)."""


class HubGatedRepoError(HubError):
    """A gated repository and no token with access (``HF_TOKEN`` or ``hf auth login``)."""


class HubNotCachedError(HubError):
    """``HF_HUB_OFFLINE`` is set and the id (or the files it needs) is not in the Hub cache."""


class ServerConfigError(ChatfmtError, ValueError):
    """A server option that cannot work: an origin that is not ``scheme://host[:port]``, a timeout or
    limit below what it needs."""


class TokenizerMismatchError(ChatfmtError, ValueError):
    """A format relies on a token the tokenizer does not hold as that token: a role marker or
    BOS/EOS it writes as one special token is absent, or a literal id it writes (Baichuan2's 195)
    is another token there. Raised before any work; ``allow_missing_tokens=True`` (CLI:
    ``--allow-missing-tokens``) skips the check. ``token`` is the first missing token's text,
    ``token_ids`` the literal ids the format writes for it (``None``: written as text)."""

    def __init__(
        self,
        message: str,
        *,
        format: str | None = None,
        tokenizer: str | None = None,
        token: str | None = None,
        token_ids: tuple[int, ...] | None = None,
    ) -> None:
        self.format = format
        self.tokenizer = tokenizer
        self.token = token
        self.token_ids = token_ids
        super().__init__(message)


class PluginError(ChatfmtError):
    """A plugin (an installed package's entry point) could not be loaded, declares something
    malformed, or a name no registry knows was asked for; the message names the distribution and
    the entry point."""


class ChatfmtWarning(UserWarning):
    """Something worked only after a documented adjustment: a template rendered after its input was
    normalised, a conversation was shortened to fit the context, malformed model output was kept as
    text."""


class BackendFallbackWarning(ChatfmtWarning):
    """``backend="auto"`` skipped a backend that does not work on this machine (it crashed when
    tried in a child process) and used the next one; the message says why and how to fix it."""


class NotRenderedWarning(ChatfmtWarning):
    """A format leaves out of the prompt something the caller gave: the tools or documents (the
    template never reads them, or renders the same without them) or a template keyword argument it
    does not read. ``names`` lists what was left out (``"tools"``, ``"documents"``, keyword names)."""

    def __init__(self, message: str, names: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.names = names


class PluginWarning(ChatfmtWarning):
    """An installed plugin failed to load; chatfmt goes on without it (the message names the
    distribution, the entry point and the failure)."""


class LengthError(ValidationError):
    """A conversation does not fit ``max_length`` under the chosen truncation strategy."""


class ContextOverflowError(ChatfmtError):
    """The conversation cannot fit the context even with only the system prompt and the newest round."""


class TokenizerError(ChatfmtError, ValueError):
    """A tokenizer could not be loaded (unknown or malformed file, missing library) or could not
    encode a text under the contract (a control id would have come out of plain text)."""


class ProtoError(ChatfmtError, ValueError):
    """Bytes that are not a sentencepiece model."""


class ParserError(ChatfmtError, ValueError):
    """An output parser was misconfigured (unknown parser name, marker key missing from a grammar)."""


class BodyError(ChatfmtError, ValueError):
    """A tool-call body could not be parsed (bad JSON, no name, not a call)."""


class InputError(ChatfmtError):
    """An input path that does not exist or names no dataset files."""


class OutputError(ChatfmtError):
    """The output (or its rejects file) cannot be written: missing or read-only directory, full disk."""


class WorkerError(ChatfmtError):
    """A worker process of the local engine died (killed from outside, or by the out-of-memory killer)."""


class InspectError(ChatfmtError, ValueError):
    """A file or row that is not a readable ``chatfmt prepare`` output (names the file and row)."""


class DatasetInfoError(ChatfmtError):
    """A ``dataset_info.json`` (or a dataset named in it) that cannot be read exactly."""


class ConstraintError(ChatfmtError, ValueError):
    """A structured-output request that cannot be enforced: a JSON schema using a feature the grammar
    engine does not implement, or a chat format whose tool-call syntax cannot be constrained.
    ``param`` names the request field (``response_format``, ``tool_choice``)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class APIError(ChatfmtError):
    """An error answered to a client of ``chatfmt serve`` (status, OpenAI error type, the offending
    parameter, a code); :mod:`chatfmt.server.errors` builds them and turns them into response bodies."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ToolCallWarning(ChatfmtWarning):
    """Issued (besides ``ParsedOutput.warnings``) when ``warn=True`` and output was malformed."""


# Control-flow signals. They never reach a caller, and derive from BaseException on purpose: code
# between the raise and the handler (a template's own error handling, a library's ``except
# Exception``) must not swallow them, so they cannot sit under ChatfmtError.


class RenderDeadline(BaseException):
    """Raised asynchronously inside a template render that ran past its deadline; the sandbox turns
    it into :class:`TemplateLimitError`."""


class StopSignal(BaseException):
    """A stop signal (SIGTERM, SIGHUP) arrived during ``chatfmt prepare``: raised in the main thread by
    the handler, so that cleanup runs on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
