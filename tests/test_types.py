"""The typed seams: exceptions in one module, results that unpack as the tuples they were, the
protocols chatfmt's own objects satisfy."""

from __future__ import annotations

import ast
import builtins
import importlib
import json
from pathlib import Path

import pytest

import chatfmt
from chatfmt import errors
from chatfmt.formats.base import CheckedRender
from chatfmt.inference.chat import StopTokens, stop_tokens
from chatfmt.segments import Rendered
from chatfmt.toolcalls import get_parser
from chatfmt.toolcalls.types import MergedDeltas, ParserFinish, merge_deltas
from chatfmt.types import FormatLike, OutputParserLike, TokenizerLike, WholeTextEncoder

SRC = Path(chatfmt.__file__).parent
#: BaseException signals that never reach a caller (see errors.py): not exported from chatfmt
SIGNALS = {"RenderDeadline", "StopSignal"}


def _exception_classes() -> list[type[BaseException]]:
    return [
        obj
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    ]


def test_every_exception_class_is_defined_in_errors_py():
    """No module of chatfmt but errors.py defines a class deriving from an exception (found by
    parsing the sources, so a class in a module nobody imports is caught too)."""
    exception_names = {c.__name__ for c in _exception_classes()} | {
        n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)
    }
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & exception_names:
                    offenders.append(f"{path.relative_to(SRC)}: class {node.name}")
    assert offenders == []


def test_every_error_derives_from_chatfmt_error_or_warning_and_is_exported():
    for cls in _exception_classes():
        if cls.__name__ in SIGNALS:
            assert not issubclass(cls, Exception), cls  # must pass through `except Exception`
            continue
        assert issubclass(cls, (errors.ChatfmtError, errors.ChatfmtWarning)), cls
        assert getattr(chatfmt, cls.__name__) is cls
        assert cls.__name__ in chatfmt.__all__


@pytest.mark.parametrize(
    ("module", "name", "bases"),
    [
        ("chatfmt.encode", "LengthError", (errors.ValidationError, ValueError)),
        ("chatfmt.inference.prompt", "ContextOverflowError", ()),
        ("chatfmt.tokenizers.base", "TokenizerError", (ValueError,)),
        ("chatfmt.tokenizers._spm_proto", "ProtoError", (ValueError,)),
        ("chatfmt.toolcalls.parser", "ParserError", (ValueError,)),
        ("chatfmt.toolcalls.parser", "ToolCallWarning", (UserWarning,)),
        ("chatfmt.toolcalls.bodies", "BodyError", (ValueError,)),
        ("chatfmt.train.readers", "InputError", ()),
        ("chatfmt.train.pipeline", "OutputError", ()),
        ("chatfmt.train.pipeline", "WorkerError", ()),
        ("chatfmt.train.inspect", "InspectError", (ValueError,)),
        ("chatfmt.train.dataset_info", "DatasetInfoError", ()),
        ("chatfmt.server.errors", "APIError", ()),
    ],
)
def test_errors_are_still_importable_where_they_were_defined(module, name, bases):
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(errors, name)
    for base in bases:  # `except ValueError` (etc.) clauses keep catching them
        assert issubclass(cls, base)


def test_api_error_keeps_its_fields_and_body():
    from chatfmt.server.errors import APIError, queue_full

    e = queue_full(3, retry_after=2)
    assert isinstance(e, APIError) and isinstance(e, chatfmt.ChatfmtError)
    assert (e.status, e.type, e.code, e.headers) == (429, "rate_limit_error", "queue_full", {"Retry-After": "2"})
    assert e.body()["error"]["code"] == "queue_full"


def test_render_checked_is_a_named_tuple_that_unpacks_as_before():
    fmt = chatfmt.load_format("chatml")
    out = fmt.render_checked([{"role": "user", "content": "hi"}], add_generation_prompt=True, nonsense_kwarg=1)
    assert isinstance(out, CheckedRender)
    rendered, missing = out
    assert isinstance(rendered, Rendered) and rendered is out.rendered
    assert missing == out.not_rendered == ("nonsense_kwarg",)
    assert out.rendered.text == fmt.render([{"role": "user", "content": "hi"}], add_generation_prompt=True)


def test_parser_finish_and_merge_deltas_are_named_tuples():
    parser = get_parser("plain")
    deltas = parser.feed("hello")
    finished = parser.finish()
    assert isinstance(finished, ParserFinish)
    last, message = finished
    assert last is finished.deltas and message is finished.output
    assert message.content == "hello"
    merged = merge_deltas(deltas + last)
    assert isinstance(merged, MergedDeltas)
    content, reasoning, calls = merged
    assert (content, reasoning, calls) == ("hello", "", {}) == (merged.content, merged.reasoning, merged.calls)
    assert parser.finish().output is message  # a repeated finish: no deltas, the same message


def _tiny_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    from chatfmt.tokenizers.hf_json import HFTokenizer

    tk = tokenizers.Tokenizer(tokenizers.models.BPE(vocab={"h": 0, "i": 1, "hi": 2}, merges=[("h", "i")]))
    tk.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    return HFTokenizer(json.loads(tk.to_str()), eos_token="<|im_end|>")


def test_stop_tokens_is_a_named_tuple():
    fmt = chatfmt.load_format("chatml")
    tok = _tiny_tokenizer()
    out = stop_tokens(fmt, tok, extra=("STOP",))
    assert isinstance(out, StopTokens)
    ids, texts = out
    assert ids == out.ids and tok.special_tokens["<|im_end|>"] in ids
    assert texts == out.texts and "STOP" in texts


def test_chatfmt_objects_satisfy_the_protocols():
    fmt = chatfmt.load_format("chatml")
    tok = _tiny_tokenizer()
    assert isinstance(fmt, FormatLike)
    assert isinstance(tok, TokenizerLike)
    assert isinstance(get_parser("hermes"), OutputParserLike)
    whole = tok.whole_text_backend()  # declared on the base class; a tokenizers backend has one
    assert whole is not None and hasattr(whole, "encode_batch")
    enc = whole.encode_batch(["<|im_start|>hi"], add_special_tokens=False)[0]
    assert enc.ids == [tok.special_tokens["<|im_start|>"], 2]
    _: WholeTextEncoder = whole


def test_the_base_tokenizer_has_no_whole_text_backend_by_default():
    from chatfmt.tokenizers.base import Tokenizer

    assert Tokenizer.whole_text_backend(object()) is None
