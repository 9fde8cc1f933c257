"""Fuzzing with hypothesis: the message parsers, the TOML format loader and the Jinja loader raise
only their documented error types (ChatfmtError subclasses: ValidationError, SpecError/FormatError,
TemplateError) on arbitrary and on mutated valid input -- never KeyError, TypeError, RecursionError
or the like. The spec loader and rendered formats are also checked to render what they load.

Default runs are bounded; ``-m slow`` runs the large profile (1000 examples a target;
``CHATFMT_HYPOTHESIS=full``: 3000). A libFuzzer harness (atheris) for the
same targets is ``tests/security/fuzz_targets.py`` (run by hand, see its docstring)."""

from __future__ import annotations

import contextlib
import copy
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt import messages as msgs
from chatfmt.errors import ChatfmtError
from chatfmt.formats.export import to_toml
from chatfmt.formats.spec_toml import parse_spec

from ..conftest import hypothesis_mode

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
#: the large profiles (``-m slow``): 1000 examples each, 3000 with ``CHATFMT_HYPOTHESIS=full``
SLOW = settings(
    max_examples=3000 if hypothesis_mode() == "full" else 1000,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)

# -- strategies -------------------------------------------------------------------------------------

KEYS = [
    "role",
    "content",
    "messages",
    "conversations",
    "from",
    "value",
    "tools",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "id",
    "type",
    "loss",
    "weight",
    "instruction",
    "input",
    "output",
    "prompt",
    "response",
    "system",
    "history",
    "reasoning_content",
    "thinking",
    "tool_call_id",
    "parameters",
    "text",
    "image_url",
    "human",
    "gpt",
    "user",
    "assistant",
    "tool",
    "function_call",
    "observation",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(KEYS),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), children, max_size=6),
    ),
    max_leaves=40,
)

VALID_RECORDS = [
    {
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get",
                    "description": "d",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
    },
    {
        "conversations": [
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a", "loss": False},
        ],
        "tools": [],
    },
    {"conversations": [{"from": "human", "value": "u"}, {"from": "gpt", "value": "a"}]},
    {"instruction": "i", "input": "x", "output": "o"},
    {"prompt": "p", "response": "r"},
    {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "part"}]},
            {"role": "assistant", "content": "a", "reasoning_content": "r"},
        ]
    },
]


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated_records(draw):
    rec = copy.deepcopy(draw(st.sampled_from(VALID_RECORDS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(rec) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = rec
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "delete", "dup"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
    return rec


def _parse_all(obj) -> None:
    for fn in (
        msgs.parse_record,
        msgs.parse_openai,
        msgs.parse_conversations,
        msgs.parse_sharegpt,
        msgs.parse_alpaca,
        msgs.parse_prompt_response,
        msgs.validate_tools,
        msgs.detect_kind,
    ):
        with contextlib.suppress(ChatfmtError):
            fn(obj)
    try:
        conv = msgs.parse_record(obj)
    except ChatfmtError:
        return
    # what parses is a conversation of known roles ...
    assert isinstance(conv, msgs.Conversation) and conv.messages
    assert all(m.role in ("system", "user", "assistant", "tool") for m in conv.messages), conv.messages
    # ... that renders with a built-in (its framing around every message), or is refused with a ChatfmtError
    try:
        text = chatfmt.load_format("chatml").render(conv, add_generation_prompt=True)
    except ChatfmtError:
        return
    assert text.endswith("<|im_start|>assistant\n")
    assert text.count("<|im_start|>") >= len(conv.messages) + 1


# -- what must be accepted: valid input of every kind parses, and the result is checked -------------

plain_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def valid_openai_records(draw):
    """An OpenAI-style record: an optional system message, then user/assistant turns, any text."""
    messages = [{"role": "system", "content": draw(plain_text)}] if draw(st.booleans()) else []
    for k in range(draw(st.integers(1, 6))):
        messages.append({"role": "user" if k % 2 == 0 else "assistant", "content": draw(plain_text)})
    return {"messages": messages}


def test_every_valid_seed_record_is_accepted():
    for rec in VALID_RECORDS:
        conv = msgs.parse_record(copy.deepcopy(rec))
        assert conv.messages, rec
        chatfmt.load_format("chatml").render(conv, add_generation_prompt=True)


@FAST
@given(valid_openai_records())
def test_valid_openai_records_are_accepted_and_render_as_chatml_defines(rec):
    conv = msgs.parse_record(copy.deepcopy(rec))  # must not raise
    assert [(m.role, m.content) for m in conv.messages] == [
        (m["role"], m["content"]) for m in rec["messages"]
    ]
    # ChatML as OpenAI's ChatML document defines it: every message framed, nothing else
    expected = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in rec["messages"])
    assert (
        chatfmt.load_format("chatml").render(conv, add_generation_prompt=True)
        == expected + "<|im_start|>assistant\n"
    )


@FAST
@given(json_values)
def test_message_parsers_on_arbitrary_json_raise_only_chatfmt_errors(obj):
    _parse_all(obj)


@FAST
@given(mutated_records())
def test_message_parsers_on_mutated_records_raise_only_chatfmt_errors(obj):
    _parse_all(obj)


@FAST
@given(st.text(max_size=200))
def test_message_parsers_on_arbitrary_json_text(text):
    try:
        obj = json.loads(text)
    except ValueError:
        obj = text
    _parse_all(obj)


@pytest.mark.slow
@SLOW
@given(st.one_of(json_values, mutated_records()))
def test_message_parsers_large_profile(obj):
    _parse_all(obj)


# -- TOML format loader ---------------------------------------------------------------------------

SPEC_SEEDS = [to_toml(chatfmt.load_format(n)) for n in ("chatml", "llama-3", "zephyr", "smollm2")] + [
    p.read_text()
    for p in sorted((Path(__file__).resolve().parents[2] / "examples" / "formats").glob("*.toml"))
]


SEED_NAMES = ("chatml", "llama-3", "zephyr", "smollm2")
SPEC_CONV = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]


@pytest.mark.parametrize("name", SEED_NAMES)
def test_each_seed_spec_loads_and_renders_like_its_builtin(name):
    spec = parse_spec(to_toml(chatfmt.load_format(name)))
    for agp in (False, True):
        conv = SPEC_CONV if not agp else SPEC_CONV[:1]
        assert spec.render(conv, add_generation_prompt=agp) == chatfmt.load_format(name).render(
            conv, add_generation_prompt=agp
        )


@FAST
@given(
    st.sampled_from(SEED_NAMES),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=15),
)
def test_a_valid_spec_with_any_name_is_accepted_and_renders_the_same(name, new_name):
    """A valid spec edited validly (its name: any text, TOML-escaped) loads and renders as before."""
    text = to_toml(chatfmt.load_format(name))
    line = f"name = {json.dumps(name)}\n"
    assert text.count(line) == 1
    spec = parse_spec(text.replace(line, f"name = {json.dumps(new_name, ensure_ascii=False)}\n"))
    assert spec.render(SPEC_CONV) == chatfmt.load_format(name).render(SPEC_CONV)


def _load_spec(text: str) -> None:
    try:
        fmt = parse_spec(text)
    except ChatfmtError:
        return
    with contextlib.suppress(ChatfmtError):
        fmt.render(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
            add_generation_prompt=False,
        )


toml_scalars = st.one_of(
    st.integers(-5, 5).map(str),
    st.booleans().map(lambda b: str(b).lower()),
    st.text(max_size=10).map(json.dumps),
    st.sampled_from(['"""x\ny"""', "[]", "{}", '["a", 1]', "1.5", "nan", "inf", "1979-05-27", '{ a = "b" }']),
)
toml_keys = st.sampled_from(
    [
        "name",
        "extends",
        "bos",
        "eos",
        "stop",
        "roles",
        "user",
        "assistant",
        "system",
        "tool",
        "prefix",
        "suffix",
        "tools",
        "tool_calls",
        "generation_prompt",
        "system_placement",
        "strip",
        "x",
        "roles.user.prefix",
        "roles.assistant.suffix",
    ]
)


@st.composite
def toml_documents(draw):
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["kv", "table", "array_table", "junk"]))
        if kind == "kv":
            lines.append(f"{draw(toml_keys)} = {draw(toml_scalars)}")
        elif kind == "table":
            lines.append(f"[{draw(toml_keys)}]")
        elif kind == "array_table":
            lines.append(f"[[{draw(toml_keys)}]]")
        else:
            lines.append(draw(st.text(max_size=20)))
    return "\n".join(lines)


@st.composite
def mutated_specs(draw):
    text = draw(st.sampled_from(SPEC_SEEDS or ['name = "x"\n']))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 20)))
        text = text[:i] + draw(st.one_of(st.text(max_size=10), toml_scalars, toml_keys)) + text[j:]
    return text


@FAST
@given(st.one_of(toml_documents(), st.text(max_size=300)))
def test_toml_loader_on_arbitrary_documents_raises_only_spec_errors(text):
    _load_spec(text)


@FAST
@given(mutated_specs())
def test_toml_loader_on_mutated_valid_specs_raises_only_spec_errors(text):
    _load_spec(text)


def test_toml_extends_cannot_read_arbitrary_files_as_code(tmp_path):
    """``extends`` of a path that is not a spec is a clean error, not a crash."""
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ChatfmtError):
        chatfmt.load_format(tmp_path / "a.toml")
    (tmp_path / "c.toml").write_text('extends = "/etc/passwd"\n')
    with pytest.raises(ChatfmtError):
        chatfmt.load_format(tmp_path / "c.toml")


@pytest.mark.slow
@SLOW
@given(st.one_of(toml_documents(), mutated_specs()))
def test_toml_loader_large_profile(text):
    _load_spec(text)


# -- Jinja loader ---------------------------------------------------------------------------------

JINJA_PIECES = [
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "{%-",
    "-%}",
    " for m in messages ",
    " endfor ",
    " if ",
    " endif ",
    " else ",
    " set x = ",
    " macro f(a) ",
    " endmacro ",
    " call f(1) ",
    " endcall ",
    "m.content",
    "m['role']",
    "|tojson",
    "|join(',')",
    "|map(attribute='role')",
    "|length",
    "loop.index",
    "namespace(a=1)",
    "range(3)",
    "raise_exception('x')",
    "'str'",
    "1",
    "[1, 2]",
    "{'a': 1}",
    "(",
    ")",
    "[",
    "]",
    " ~ ",
    " + ",
    " * ",
    " ** ",
    " % ",
    " == ",
    " in ",
    "__class__",
    ".",
    "bos_token",
    "tools",
    "add_generation_prompt",
    " recursive ",
    "loop(",
    "caller()",
    "self",
    " filter upper ",
    " endfilter ",
    " raw ",
    " endraw ",
    " break ",
    " continue ",
    " generation ",
    " endgeneration ",
]
SEED_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content|trim }} [/INST]"
    "{% elif m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}</s>{% endif %}{% endfor %}"
)


def _render_template(src: str) -> None:
    try:
        fmt = chatfmt.from_template(src, bos_token="<s>", eos_token="</s>", timeout=0.5, max_output=100_000)
        fmt.render(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
            add_generation_prompt=True,
        )
        fmt.render_segments([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    except ChatfmtError:
        pass


@st.composite
def jinja_sources(draw):
    if draw(st.booleans()):
        return "".join(draw(st.lists(st.sampled_from(JINJA_PIECES) | st.text(max_size=4), max_size=25)))
    text = SEED_TEMPLATE
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        text = text[:i] + draw(st.sampled_from(JINJA_PIECES) | st.text(max_size=4)) + text[j:]
    return text


literal_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="{}%#"), max_size=12)


@st.composite
def valid_jinja_sources(draw):
    """SEED_TEMPLATE with literal text inserted between its tags: always a valid template."""
    out = []
    for part in re.split(r"(?<=\}\}|%\})", SEED_TEMPLATE):  # after each closing tag
        out.append(part)
        if draw(st.booleans()):
            out.append(draw(literal_text))
    return "".join(out)


@FAST
@given(valid_jinja_sources())
def test_valid_jinja_templates_are_accepted_and_render_as_transformers_does(src):
    from transformers.utils.chat_template_utils import render_jinja_template

    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    fmt = chatfmt.from_template(
        src, bos_token="<s>", eos_token="</s>", timeout=5, max_output=100_000
    )  # must not raise
    expected = render_jinja_template(
        [conv], chat_template=src, bos_token="<s>", eos_token="</s>", add_generation_prompt=True
    )[0][0]
    assert fmt.render(conv, add_generation_prompt=True) == expected
    assert (
        "".join(seg.text for seg in fmt.render_segments(conv))
        == render_jinja_template([conv], chat_template=src, bos_token="<s>", eos_token="</s>")[0][0]
    )


@FAST
@given(jinja_sources())
def test_jinja_loader_raises_only_template_errors(src):
    _render_template(src)


@pytest.mark.slow
@SLOW
@given(jinja_sources())
def test_jinja_loader_large_profile(src):
    _render_template(src)
