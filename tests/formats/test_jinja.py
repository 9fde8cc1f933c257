"""Jinja chat templates render exactly as transformers renders them, and their segments are right.

The reference is transformers' real entry point: a ``PreTrainedTokenizerFast`` built from a tiny
``tokenizers`` WordLevel model with ``<s>``/``</s>`` as BOS/EOS, and
``tok.apply_chat_template(conv, chat_template=src, tokenize=False, ...)``. Every template in the
shared test data (``chat_template`` is parametrized by ``tests/conftest.py``) meets every
conversation in ``tests/data/conversations.json``. ``strftime_now`` is frozen to the same instant in
both renderers (their module-level ``datetime`` is patched), so date-printing templates are compared
byte for byte too.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import json
import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import transformers.utils.chat_template_utils as hf_chat  # noqa: E402
from tokenizers import Tokenizer, models  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

import chatfmt.formats.sandbox as sandbox  # noqa: E402
from chatfmt import TemplateError, from_template  # noqa: E402
from chatfmt.errors import NotRenderedWarning  # noqa: E402
from chatfmt.formats.jinja import KNOWN_TURN_ENDS, ChatfmtWarning  # noqa: E402
from chatfmt.segments import CONTENT  # noqa: E402

CORPUS = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "conversations.json").read_text(encoding="utf-8")
)
CASES = CORPUS["conversations"]
BOS, EOS = "<s>", "</s>"
FROZEN_NOW = _dt.datetime(2025, 1, 15, 12, 0, 0)


class _FrozenDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FROZEN_NOW if tz is None else FROZEN_NOW.replace(tzinfo=tz)


@contextlib.contextmanager
def frozen_clock_in_both_renderers():
    """``strftime_now`` reads ``datetime.now()`` from each renderer's module: freeze both."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hf_chat, "datetime", _FrozenDatetime)
        mp.setattr(sandbox, "datetime", _FrozenDatetime)
        yield


@pytest.fixture(scope="module", autouse=True)
def frozen_clock():
    with frozen_clock_in_both_renderers():
        yield


def make_reference_tokenizer() -> PreTrainedTokenizerFast:
    model = models.WordLevel({"<unk>": 0, BOS: 1, EOS: 2}, unk_token="<unk>")
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(model), bos_token=BOS, eos_token=EOS)


@pytest.fixture(scope="module")
def reference_tokenizer() -> PreTrainedTokenizerFast:
    return make_reference_tokenizer()


def render_options(case: dict) -> dict:
    tools = CORPUS["tools"][case["tools"]] if case.get("tools") else None
    return {
        "tools": tools,
        "add_generation_prompt": case.get("add_generation_prompt", False),
        "continue_final_message": case.get("continue_final_message", False),
        **case.get("kwargs", {}),
    }


def messages_of(case: dict) -> list[dict]:
    return copy.deepcopy(case["messages"])


def reference_render(tok: PreTrainedTokenizerFast, source: str, case: dict) -> str | Exception:
    try:
        return tok.apply_chat_template(
            messages_of(case), chat_template=source, tokenize=False, **render_options(case)
        )
    except Exception as e:  # whatever transformers raises is the expected outcome
        return e


def chatfmt_format(source: str):
    return from_template(source, bos_token=BOS, eos_token=EOS, strict=True)


def chatfmt_render(fmt, case: dict) -> str | Exception:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ChatfmtWarning)
            warnings.simplefilter("ignore", NotRenderedWarning)  # tools a template leaves out: said, not an error
            return fmt.render(messages_of(case), **render_options(case))
    except (TemplateError, ValueError) as e:
        return e


@pytest.fixture(scope="module")
def renders(reference_tokenizer):
    """Cache: (template id, case id) -> (reference, chatfmt text or error, segments or None)."""
    cache: dict = {}

    def get(template, case):
        key = (template.id, case["id"])
        if key not in cache:
            ref = reference_render(reference_tokenizer, template.source, case)
            try:
                fmt = chatfmt_format(template.source)
            except TemplateError as e:
                cache[key] = (ref, e, None)
                return cache[key]
            got = chatfmt_render(fmt, case)
            segs = None
            if isinstance(got, str):
                segs = fmt.render_segments(messages_of(case), **render_options(case))
            cache[key] = (ref, got, segs)
        return cache[key]

    return get


def renderable(template, renders):
    """The (case, text, segments) triples that transformers and chatfmt both render (whether they agree
    is the equivalence test's business)."""
    out = []
    for case in CASES:
        ref, got, segs = renders(template, case)
        if isinstance(ref, str) and isinstance(got, str):
            out.append((case, got, segs))
    return out


# -- equivalence ----------------------------------------------------------------------------------


def test_template_renders_like_transformers_apply_chat_template(chat_template, renders, template_coverage):
    failures = []
    renderable_pairs = equal = both_raise = 0
    for case in CASES:
        ref, got, _ = renders(chat_template, case)
        if isinstance(ref, str):
            renderable_pairs += 1
            if got == ref:
                equal += 1
            else:
                failures.append(
                    f"{case['id']}: transformers rendered, chatfmt gave {got!r:.300}\nexpected {ref!r:.300}"
                )
        elif isinstance(got, str):
            failures.append(
                f"{case['id']}: transformers raised {ref!r:.200} but chatfmt rendered {got!r:.200}"
            )
        else:
            both_raise += 1
    template_coverage["templates"].add(chat_template.id)
    template_coverage["pairs"] += renderable_pairs
    template_coverage["equal"] += equal
    template_coverage["both_raise"] += both_raise
    assert not failures, "\n".join(failures)


def test_strftime_now_is_frozen_in_both_renderers(reference_tokenizer):
    src = "{{ strftime_now('%d %b %Y') }}|{{ messages[0].content }}"
    conv = [{"role": "user", "content": "x"}]
    assert reference_tokenizer.apply_chat_template(conv, chat_template=src, tokenize=False) == "15 Jan 2025|x"
    assert chatfmt_format(src).render(conv) == "15 Jan 2025|x"


def test_continue_final_message_with_generation_prompt_is_refused_like_transformers(reference_tokenizer):
    src = "{% for m in messages %}{{ m.content }}{% endfor %}"
    conv = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    with pytest.raises(ValueError):
        reference_tokenizer.apply_chat_template(
            conv, chat_template=src, tokenize=False, add_generation_prompt=True, continue_final_message=True
        )
    with pytest.raises(ValueError):
        chatfmt_format(src).render(conv, add_generation_prompt=True, continue_final_message=True)


def test_special_tokens_are_template_variables_that_kwargs_override(reference_tokenizer):
    src = "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"
    conv = [{"role": "user", "content": "x"}]
    for kwargs in ({}, {"eos_token": "<END>"}):
        want = reference_tokenizer.apply_chat_template(conv, chat_template=src, tokenize=False, **kwargs)
        assert chatfmt_format(src).render(conv, **kwargs) == want
    assert chatfmt_format(src).render(conv, eos_token="<END>") == "<s>x<END>"


# -- segments -------------------------------------------------------------------------------------


def _texts(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        parts = [p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return [*parts, "".join(parts)]
    return []


def _content_sources(message: dict) -> list[str]:
    """What a content segment of ``message`` may be a piece of: its content or reasoning, stripped or
    not, or their JSON-escaped form (templates that ``tojson`` a tool result keep it content)."""
    out = []
    for field in ("content", "reasoning_content", "thinking", "reasoning"):
        for t in _texts(message.get(field)):
            out += [t, t.strip(), json.dumps(t, ensure_ascii=False)[1:-1]]
    return out


def test_segments_join_to_the_render_and_content_segments_come_from_their_message(chat_template, renders):
    failures = []
    for case, text, rendered in renderable(chat_template, renders):
        if rendered.text != text:
            failures.append(f"{case['id']}: segments join to {rendered.text!r:.200}, render is {text!r:.200}")
            continue
        for seg in rendered.segments:
            if seg.kind != CONTENT:
                continue
            msg = case["messages"][seg.message]
            if not any(seg.text in src for src in _content_sources(msg)):
                failures.append(
                    f"{case['id']}: content segment {seg.text!r} is not from message {seg.message}"
                )
    assert not failures, "\n".join(failures)


def _placeholder_messages(messages: list[dict]) -> list[dict]:
    """The same conversation with each message's content core replaced by one private-use character
    repeated to the same length (edge whitespace kept), so lengths and stripping are unchanged."""
    out = []
    for i, m in enumerate(messages):
        m = copy.deepcopy(m)
        c = m.get("content")
        if isinstance(c, str) and c.strip():
            core = c.strip()
            m["content"] = c[: len(c) - len(c.lstrip())] + chr(0xE000 + i) * len(core) + c[len(c.rstrip()) :]
        out.append(m)
    return out


def test_content_spans_sit_where_the_template_put_the_content(chat_template, renders):
    """Oracle: render the conversation with every message's content replaced by a same-length run of a
    per-message private-use character; where that run lands is where the content must be found, even
    when several messages say the same thing (``same_text_every_role``)."""
    fmt = chatfmt_format(chat_template.source)
    failures = []
    for case, text, rendered in renderable(chat_template, renders):
        try:
            ph = fmt.render(_placeholder_messages(case["messages"]), **render_options(case))
        except (TemplateError, ValueError):
            continue
        if len(ph) != len(text):
            continue  # the template treats the content itself (length-dependent logic)
        spans = rendered.content_spans()
        for i, m in enumerate(case["messages"]):
            c = m.get("content")
            if not (isinstance(c, str) and c.strip()):
                continue
            mark = chr(0xE000 + i)
            core = c.strip()
            at = ph.find(mark * len(core))
            if at < 0 or ph.count(mark) != len(core):
                continue  # not inserted exactly once, verbatim
            ok = any(text[s:e] in (c, core) and s + text[s:e].index(core) == at for s, e in spans.get(i, []))
            if not ok:
                got = [text[s:e] for s, e in spans.get(i, [])]
                failures.append(f"{case['id']}: message {i} content expected at {at}, spans {got!r:.200}")
    assert not failures, "\n".join(failures)


def test_trained_segments_belong_to_assistant_messages(chat_template, renders):
    failures = []
    for case, _, rendered in renderable(chat_template, renders):
        for seg in rendered.segments:
            if seg.trained and (seg.message is None or case["messages"][seg.message]["role"] != "assistant"):
                failures.append(f"{case['id']}: trained {seg.text!r:.60} belongs to message {seg.message}")
    assert not failures, "\n".join(failures)


def _drop_none(messages: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if v is not None} for m in messages]


def test_generation_blocks_are_exactly_the_trained_text(
    generation_chat_template, renders, reference_tokenizer
):
    """``{% generation %}`` templates: trained characters are the blocks transformers reports for
    ``return_assistant_tokens_mask`` (its own char indices, from ``render_jinja_template``)."""
    chat_template = generation_chat_template
    failures = []
    compared = 0
    for case, text, rendered in renderable(chat_template, renders):
        opts = render_options(case)
        if opts.pop("continue_final_message"):
            continue  # transformers refuses continue_final_message with an assistant mask
        tools = opts.pop("tools")
        agp = opts.pop("add_generation_prompt")
        _, indices = hf_chat.render_jinja_template(
            conversations=[_drop_none(messages_of(case))],
            tools=tools,
            chat_template=chat_template.source,
            return_assistant_tokens_mask=True,
            add_generation_prompt=agp,
            **{**reference_tokenizer.special_tokens_map, **opts},
        )
        compared += 1
        want = {p for s, e in indices[0] for p in range(s, min(e, len(text)))}
        got = {p for s, e, seg in rendered.char_spans() if seg.trained for p in range(s, e)}
        if got != want:
            failures.append(f"{case['id']}: trained {sorted(got)[:5]}... != generation {sorted(want)[:5]}...")
    assert not failures, "\n".join(failures)
    assert compared >= 5


# templates that insert message content verbatim (or trimmed), and the token that ends their turns
VERBATIM_TEMPLATES = {
    "qwen2.5/tokenizer_config.json": "<|im_end|>",
    "templates/llama.cpp-c392e50/Qwen-Qwen2.5-7B-Instruct.jinja": "<|im_end|>",
    "templates/llama.cpp-c392e50/meta-llama-Llama-3.1-8B-Instruct.jinja": "<|eot_id|>",
    "templates/llama.cpp-0c1e570/meta-llama-Llama-3.3-70B-Instruct.jinja": "<|eot_id|>",
    "llama3/tokenizer_config.json": "<|eot_id|>",
    "templates/ollama-template-index/extracted/00-chatml.jinja": "<|im_end|>",
    "mistral-7b-instruct-v0.3/tokenizer_config.json": EOS,
    "templates/mistral-common-tests-chat_templates/v7.jinja": EOS,
    "gemma/tokenizer_config.json": "<end_of_turn>",
    "templates/llama.cpp-c392e50/google-gemma-2-2b-it.jinja": "<end_of_turn>",
    "phi-3-mini/tokenizer_config.json": "<|end|>",
}


def _template_source(testdata, template_id: str) -> str:
    path = testdata(*template_id.split("/"))
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))["chat_template"]
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("template_id", sorted(VERBATIM_TEMPLATES))
def test_verbatim_templates_give_exact_content_spans_and_train_content_through_turn_end(
    template_id, testdata, reference_tokenizer
):
    """Where a template inserts content as is (or trimmed), each message's content span is exactly that
    content; an assistant turn is trained from its content through its end-of-turn token, never its
    header."""
    fmt = chatfmt_format(_template_source(testdata, template_id))
    turn_end = VERBATIM_TEMPLATES[template_id]
    checked = 0
    for case in CASES:
        if isinstance(reference_render(reference_tokenizer, fmt.template, case), Exception):
            continue
        msgs = case["messages"]
        rendered = fmt.render_segments(messages_of(case), **render_options(case))
        text = rendered.text
        spans = rendered.content_spans()
        shown = fmt.render(_placeholder_messages(msgs), **render_options(case))  # which contents are shown
        for i, m in enumerate(msgs):
            c = m.get("content")
            if isinstance(c, str) and c.strip() and chr(0xE000 + i) in shown and m["role"] != "tool":
                assert [text[s:e] for s, e in spans.get(i, [])] in ([c], [c.strip()]), (case["id"], i)
                checked += 1
            if m["role"] != "assistant" or (case.get("continue_final_message") and i == len(msgs) - 1):
                continue
            mine = [s for s in rendered.segments if s.message == i]
            trained = "".join(s.text for s in mine if s.trained)
            if not trained:
                continue  # the template dropped this turn (e.g. an empty final message)
            first = next(s for s in mine if s.trained)
            if isinstance(c, str) and c.strip():
                assert first.kind == CONTENT, (case["id"], i, first)  # no header in the trained text
            assert turn_end in trained, (case["id"], i, trained)
            untrained_header = "".join(s.text for s in mine if not s.trained)
            assert turn_end not in untrained_header or m.get("tool_calls"), (case["id"], i)
    assert checked >= 20


def test_same_text_in_every_role_is_attributed_to_the_right_message(testdata):
    fmt = chatfmt_format(_template_source(testdata, "qwen2.5/tokenizer_config.json"))
    msgs = [
        {"role": "system", "content": "hi"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "hi"},
    ]
    rendered = fmt.render_segments(msgs, add_generation_prompt=True)
    text = rendered.text
    starts = [m.start() for m in re.finditer("hi", text)]
    assert len(starts) == 4
    assert rendered.content_spans() == {i: [(s, s + 2)] for i, s in enumerate(starts)}
    for i, role in enumerate(["system", "user", "assistant", "user"]):
        s = starts[i]
        assert text[:s].endswith(f"<|im_start|>{role}\n")
    assert rendered.trained_text() == "hi<|im_end|>"


def test_tool_call_only_assistant_turn_is_trained_without_its_header(testdata):
    """An assistant turn with no content (only tool calls) has no content span to anchor it; it is
    anchored where the generation prompt ends and trained through its end-of-turn token."""
    fmt = chatfmt_format(_template_source(testdata, "qwen2.5/tokenizer_config.json"))
    case = next(c for c in CASES if c["id"] == "tool_calls_content_none_parallel")
    rendered = fmt.render_segments(messages_of(case), **render_options(case))
    trained = [s for s in rendered.segments if s.trained]
    assert {s.message for s in trained} == {1}
    body = "".join(s.text for s in trained)
    assert body.startswith("<tool_call>\n") and body.endswith("</tool_call><|im_end|>")
    header = "".join(s.text for s in rendered.segments if s.message == 1 and not s.trained)
    assert header == "\n<|im_start|>assistant\n"


def test_text_parts_rendered_as_a_python_list_are_still_content(testdata):
    """A template that prints a list of text parts as Python ``repr`` still gets each part located as
    content of its own message (not as control text of the next one)."""
    fmt = chatfmt_format(
        _template_source(testdata, "templates/llama.cpp-c392e50/meta-llama-Llama-3.1-8B-Instruct.jinja")
    )
    case = next(c for c in CASES if c["id"] == "content_text_parts")
    rendered = fmt.render_segments(messages_of(case), **render_options(case))
    text = rendered.text
    assert "[{'type': 'text', 'text': 'Describe a cat.'}" in text
    user = [text[s:e] for s, e in rendered.content_spans()[1]]
    assert user == ["Describe a cat.", "Be short."]


def test_content_found_by_search_never_splits_a_control_token():
    """When markers cannot be used (this template slices the content), content is searched for in
    order; a short content like ``<`` or ``a`` must not be found inside ``<|im_start|>``."""
    src = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content[:2] }}<|im_end|>\n{% endfor %}"
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "<"}]
    rendered = chatfmt_format(src).render_segments(msgs)
    text = rendered.text
    assert text == "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n<<|im_end|>\n"
    user_at = text.index("user\n") + 5
    assistant_at = text.index("assistant\n") + 10
    assert rendered.content_spans() == {0: [(user_at, user_at + 1)], 1: [(assistant_at, assistant_at + 1)]}
    assert rendered.trained_text() == "<<|im_end|>"


def test_content_that_contains_the_marker_characters_is_still_located(testdata):
    fmt = chatfmt_format(_template_source(testdata, "qwen2.5/tokenizer_config.json"))
    msgs = [
        {"role": "user", "content": "a\U000f00001\U000f0001b"},
        {"role": "assistant", "content": "\U000f00020\U000f0001 <"},
    ]
    rendered = fmt.render_segments(msgs)
    spans = rendered.content_spans()
    assert [rendered.text[s:e] for s, e in spans[0]] == [msgs[0]["content"]]
    assert [rendered.text[s:e] for s, e in spans[1]] == [msgs[1]["content"]]


def test_turn_end_after_a_generation_block_belongs_to_the_assistant(testdata):
    fmt = chatfmt_format(_template_source(testdata, "templates/llama.cpp-0c1e570/LFM2.5-8B-A1B.jinja"))
    msgs = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    rendered = fmt.render_segments(msgs)
    trained = [s for s in rendered.segments if s.trained]
    assert {s.message for s in trained} == {1}
    assert rendered.trained_text() == "b<|im_end|>\n"


# -- robustness retry -----------------------------------------------------------------------------

STRICT_ARGS = (
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n"
    "{% for tc in m.tool_calls or [] %}"
    "{% if tc.function.arguments is string %}{{ raise_exception('tool arguments must be a mapping') }}{% endif %}"
    "{% for k, v in tc.function.arguments.items() %}[{{ k }}={{ v }}]{% endfor %}"
    "{% endfor %}{% endfor %}"
)
STRICT_CONTENT = (
    "{% for m in messages %}"
    "{% if m.content is not defined %}{{ raise_exception('message ' ~ loop.index0 ~ ' has no content') }}{% endif %}"
    "{% if m.content is not string %}{{ raise_exception('content must be a string') }}{% endif %}"
    "<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
)
ARGS_AS_STRING = [
    {"role": "user", "content": "weather?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}
        ],
    },
]
CONTENT_NONE = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]
TEXT_PARTS = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]


@pytest.mark.parametrize(
    ("template", "messages", "normalisation", "raised", "normalised"),
    [
        (
            STRICT_ARGS,
            ARGS_AS_STRING,
            "tool-call arguments parsed from JSON string",
            "tool arguments must be a mapping",
            "user: weather?\nassistant: \n[location=Paris]",
        ),
        (
            STRICT_CONTENT,
            CONTENT_NONE,
            "null content as empty string",
            "message 1 has no content",
            "<user>hi</user><assistant></assistant>",
        ),
        (STRICT_CONTENT, TEXT_PARTS, "text parts joined", "content must be a string", "<user>a\nb</user>"),
    ],
    ids=["arguments-json-string", "content-none", "content-text-parts"],
)
def test_non_strict_render_retries_after_a_named_normalisation_and_strict_raises_the_template_message(
    template, messages, normalisation, raised, normalised, reference_tokenizer
):
    with pytest.raises(Exception, match=re.escape(raised)):
        reference_tokenizer.apply_chat_template(
            copy.deepcopy(messages), chat_template=template, tokenize=False
        )
    with pytest.raises(TemplateError, match=re.escape(raised)):
        from_template(template, strict=True).render(copy.deepcopy(messages))
    with pytest.warns(ChatfmtWarning, match=re.escape(normalisation)) as record:
        text = from_template(template).render(copy.deepcopy(messages))
    assert raised in str(record[0].message)  # the warning also says what failed
    assert text == normalised
    # segments follow the same retry
    with pytest.warns(ChatfmtWarning):
        assert from_template(template).render_segments(copy.deepcopy(messages)).text == normalised


@pytest.mark.parametrize(
    ("template_id", "case_id", "raised", "normalisation"),
    [
        (
            "templates/llama.cpp-0c1e570/GLM-4.6.jinja",
            "tool_calls_arguments_json_string",
            "Invalid tool call arguments passed",
            "tool-call arguments parsed from JSON string",
        ),
        (
            "templates/llama.cpp-0c1e570/Spark2.5.jinja",
            "tool_calls_arguments_json_string",
            "tool_call.function.arguments must be a dictionary",
            "tool-call arguments parsed from JSON string",
        ),
        (
            "templates/llama.cpp-0c1e570/Apertus-8B-Instruct.jinja",
            "content_text_parts",
            "Invalid system message",
            "text parts joined",
        ),
        (
            "qwen2.5/tokenizer_config.json",
            "content_none_user",
            "has no attribute 'content'",
            "null content as empty string",
        ),
    ],
)
def test_real_templates_that_reject_a_payload_render_after_normalisation(
    template_id, case_id, raised, normalisation, testdata, reference_tokenizer
):
    source = _template_source(testdata, template_id)
    case = next(c for c in CASES if c["id"] == case_id)
    opts = render_options(case)
    with pytest.raises(TemplateError, match=re.escape(raised)):
        from_template(source, bos_token=BOS, eos_token=EOS, strict=True).render(messages_of(case), **opts)
    with pytest.warns(ChatfmtWarning, match=re.escape(normalisation)):
        text = from_template(source, bos_token=BOS, eos_token=EOS).render(messages_of(case), **opts)
    # the retry equals what transformers renders for the normalised payload
    normalised = messages_of(case)
    for m in normalised:
        if m.get("content") is None:
            m["content"] = ""
        elif isinstance(m["content"], list):
            m["content"] = "\n".join(p["text"] for p in m["content"])
        for tc in m.get("tool_calls") or []:
            if isinstance(tc["function"]["arguments"], str):
                tc["function"]["arguments"] = json.loads(tc["function"]["arguments"])
    assert text == reference_tokenizer.apply_chat_template(
        normalised, chat_template=source, tokenize=False, **opts
    )


def test_non_strict_render_reraises_when_no_normalisation_applies():
    fmt = from_template("{{ raise_exception('always') }}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChatfmtWarning)
        with pytest.raises(TemplateError, match="always"):
            fmt.render([{"role": "user", "content": "x"}])


def test_non_strict_render_reraises_the_first_error_when_the_retry_fails_too():
    fmt = from_template(
        "{% if messages[0].content is not defined %}{{ raise_exception('first') }}{% endif %}"
        "{{ raise_exception('second') }}"
    )
    with pytest.raises(TemplateError, match="first"):
        fmt.render([{"role": "user", "content": None}])


def test_turn_ends_the_template_uses_become_stop_strings(testdata):
    fmt = chatfmt_format(_template_source(testdata, "qwen2.5/tokenizer_config.json"))
    assert "<|im_end|>" in fmt.info.stop and "<|im_end|>" in fmt.info.end_of_turn
    assert all(t in fmt.template or t == EOS for t in fmt.info.end_of_turn)
    assert set(fmt.info.end_of_turn) <= set(KNOWN_TURN_ENDS) | {EOS}


# -- property: arbitrary conversations ------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# characters that stress the renderer and the segment recovery: whitespace, CJK, Jinja syntax,
# the private-use characters chatfmt uses as markers, and control-token spellings
_TEXT = st.one_of(
    st.text(
        alphabet=st.sampled_from(
            list("ab hi\n\t{}%#'\"\\<>|") + ["你", "é", "\U000f0000", "\U000f0001", "\U000f0002"]
        ),
        max_size=12,
    ),
    st.sampled_from(["hi", " hi ", "<|im_end|>", "<|eot_id|>", "</s>", "[INST]", "{{ x }}", "\n\n"]),
)


@st.composite
def _conversations(draw):
    msgs = []
    if draw(st.booleans()):
        msgs.append({"role": "system", "content": draw(_TEXT)})
    for _ in range(draw(st.integers(1, 3))):
        msgs.append({"role": "user", "content": draw(_TEXT)})
        msgs.append({"role": "assistant", "content": draw(_TEXT)})
    if draw(st.booleans()):
        msgs.pop()
    return msgs


PROPERTY_TEMPLATES = [
    "qwen2.5/tokenizer_config.json",
    "templates/llama.cpp-c392e50/meta-llama-Llama-3.1-8B-Instruct.jinja",
    "templates/ollama-template-index/extracted/00-chatml.jinja",
    "mistral-7b-instruct-v0.3/tokenizer_config.json",
]


@pytest.mark.parametrize("template_id", PROPERTY_TEMPLATES)
def test_arbitrary_conversations_render_like_transformers_with_consistent_segments(
    template_id, testdata, reference_tokenizer
):
    source = _template_source(testdata, template_id)
    fmt = chatfmt_format(source)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(msgs=_conversations(), agp=st.booleans())
    def check(msgs, agp):
        try:
            want = reference_tokenizer.apply_chat_template(
                copy.deepcopy(msgs), chat_template=source, tokenize=False, add_generation_prompt=agp
            )
        except Exception:
            with pytest.raises((TemplateError, ValueError)):
                fmt.render(copy.deepcopy(msgs), add_generation_prompt=agp)
            return
        assert fmt.render(copy.deepcopy(msgs), add_generation_prompt=agp) == want
        rendered = fmt.render_segments(copy.deepcopy(msgs), add_generation_prompt=agp)
        assert rendered.text == want
        for seg in rendered.segments:
            if seg.kind == CONTENT:
                assert any(seg.text in src for src in _content_sources(msgs[seg.message]))
            if seg.trained:
                assert msgs[seg.message]["role"] == "assistant"
        # each content is found where the template put it (see the placeholder oracle above)
        shown = fmt.render(_placeholder_messages(msgs), add_generation_prompt=agp)
        spans = rendered.content_spans()
        for i, m in enumerate(msgs):
            core, mark = m["content"].strip(), chr(0xE000 + i)
            if (
                core
                and len(shown) == len(want)
                and shown.count(mark) == len(core)
                and mark * len(core) in shown
            ):
                at = shown.index(mark)
                assert any(
                    want[a:b] in (m["content"], core) and a + want[a:b].index(core) == at for a, b in spans[i]
                )

    check()


def test_a_jinja_format_pickles_and_renders_the_same_after(testdata):
    import pickle

    from chatfmt import load_format

    fmt = load_format(testdata("qwen2.5", "tokenizer_config.json"))
    msgs = [{"role": "user", "content": "Hi <|im_end|>"}, {"role": "assistant", "content": "Hello."}]
    before = fmt.render_segments(msgs, add_generation_prompt=False)
    fmt.renders("tools")  # caches are left behind and rebuilt
    other = pickle.loads(pickle.dumps(fmt))
    assert other.render_segments(msgs).segments == before.segments and other.template == fmt.template


@pytest.mark.parametrize("key, value", [("weight", 0), ("loss_weight", 0.0), ("training", False), ("train", False)])
def test_a_loss_key_on_a_message_dict_turns_its_training_off_as_in_the_builtin(testdata, key, value):
    import chatfmt

    tok = chatfmt.load_tokenizer(testdata("qwen2.5"))
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", key: value},
            {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    jinja = chatfmt.load_format(testdata("qwen2.5", "tokenizer_config.json")).encode(msgs, tok)
    builtin = chatfmt.load_format("qwen2.5").encode(msgs, tok)
    assert jinja.input_ids == builtin.input_ids and jinja.labels == builtin.labels
    assert tok.decode([i for i, x in zip(jinja.input_ids, jinja.labels) if x != -100]) == "d<|im_end|>"
