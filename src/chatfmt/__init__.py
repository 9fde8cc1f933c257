"""chatfmt: the exact chat serialization of LLMs.

Public API::

    import chatfmt
    fmt = chatfmt.load_format("qwen2.5")            # a built-in, a .jinja, a tokenizer_config.json,
                                                     # a model directory or a .gguf
    text = fmt.render(messages, add_generation_prompt=True)
    segs = fmt.render_segments(messages)            # control/content pieces, message index, trained
    chat = chatfmt.Chat()                           # a real model (default: SmolLM2-135M-Instruct)
    print(chat.send("What is the capital of France?"))
"""

from __future__ import annotations

from . import hf
from .compat import check_tokenizer
from .encode import Encoded, encode_batch
from .errors import (
    APIError,
    BackendCrashError,
    BackendError,
    BackendFallbackWarning,
    BodyError,
    ChatfmtError,
    ChatfmtWarning,
    ConstraintError,
    ContextOverflowError,
    DatasetInfoError,
    EmptyConversationError,
    FormatError,
    HubError,
    HubFileNotFoundError,
    HubGatedRepoError,
    HubNotCachedError,
    HubRepoNotFoundError,
    InputError,
    InspectError,
    LengthError,
    NotRenderedWarning,
    OutputError,
    ParserError,
    PluginError,
    PluginWarning,
    ProtoError,
    ServerConfigError,
    SpecError,
    TemplateError,
    TemplateFailure,
    TemplateLimitError,
    TokenizerError,
    TokenizerMismatchError,
    ToolCallWarning,
    UnknownFormatError,
    ValidationError,
    WorkerError,
)
from .formats.base import ChatFormat, FormatInfo
from .formats.loader import from_template, list_formats, load_format
from .inference import Chat, load_backend
from .messages import Conversation, Message, ToolCall, as_conversation
from .segments import Rendered, Segment
from .tokenizers import Tokenizer, load_tokenizer
from .train import prepare, prepare_dataset

__version__ = "0.1.0"

__all__ = [
    "hf",
    "Chat",
    "load_backend",
    "ChatFormat",
    "ChatfmtError",
    "ChatfmtWarning",
    "NotRenderedWarning",
    "Conversation",
    "FormatError",
    "FormatInfo",
    "Message",
    "Rendered",
    "Segment",
    "TemplateError",
    "TemplateLimitError",
    "TokenizerMismatchError",
    "ToolCall",
    "UnknownFormatError",
    "ValidationError",
    "as_conversation",
    "from_template",
    "list_formats",
    "load_format",
    "load_tokenizer",
    "Tokenizer",
    "Encoded",
    "encode_batch",
    "check_tokenizer",
    "prepare",
    "prepare_dataset",
    # every exception and warning class chatfmt raises (chatfmt.errors)
    "TemplateFailure",
    "SpecError",
    "EmptyConversationError",
    "BackendError",
    "BackendCrashError",
    "HubError",
    "HubRepoNotFoundError",
    "HubFileNotFoundError",
    "HubGatedRepoError",
    "HubNotCachedError",
    "ServerConfigError",
    "PluginError",
    "BackendFallbackWarning",
    "PluginWarning",
    "LengthError",
    "ContextOverflowError",
    "TokenizerError",
    "ProtoError",
    "ParserError",
    "BodyError",
    "InputError",
    "OutputError",
    "WorkerError",
    "InspectError",
    "DatasetInfoError",
    "APIError",
    "ToolCallWarning",
    "ConstraintError",
]
