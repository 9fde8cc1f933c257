"""Content can never become a control token: over every built-in format and every tokenizer kind
available here, arbitrary message content -- including every control token string of the tokenizer
and of the format, and partial ones (``<|im_e``, ``</s``) -- yields exactly the control ids the
format's control segments put there, and the tokens of each message decode back to its content.

Decode exceptions (the text is compared only where the tokenizer alone round-trips it,
``decode(encode_text(t)) == t``): BERT-style vocabularies lower-case and drop whitespace;
sentencepiece models normalise (NFKC, whitespace runs) and, without byte fallback, emit ``<unk>``;
leading/trailing whitespace of a content segment may merge with the format text around it or lose
its sentencepiece ``▁``, so the stripped content is what must appear, in the message's tokens plus
the one token on each side (a token that crosses into the format text is owned by the piece it
starts in).

The default run is bounded (a few examples a tokenizer); ``-m slow`` runs the large profile (200
a tokenizer; ``CHATFMT_HYPOTHESIS=full``: 400).
"""

from __future__ import annotations

import re
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.encode import encode_rendered
from chatfmt.errors import ChatfmtError
from chatfmt.segments import CONTENT

from ..conftest import hypothesis_mode
from ..tokenizers.conftest import ADAPTER_NAMES, get_tokenizer, need

# transformers objects wrap the same files as the json:/vm: adapters; they are slow to load
KINDS = [n for n in ADAPTER_NAMES if not n.startswith("hf:")]
FORMATS = sorted(f.name for f in chatfmt.list_formats())
NO_DECODE = {"gguf:bert-bge": "lower-cases and drops whitespace"}
#: the slow profile, per tokenizer kind (each conversation in a random format; every format's every control
#: string is also swept deterministically below): 200, or 400 with ``CHATFMT_HYPOTHESIS=full``
LARGE_EXAMPLES = 400 if hypothesis_mode() == "full" else 200
# formats that emit literal token ids (role ids with no text form) are paired with their own vocabulary
OWN_TOKENIZER = {"baichuan2": "spm:baichuan2", "chatglm3": "spm:chatglm3"}


def formats_for(tok_name: str) -> list[str]:
    return [f for f in FORMATS if OWN_TOKENIZER.get(f, tok_name) == tok_name]


@cache
def _format(name: str):
    return chatfmt.load_format(name)


@cache
def _format_controls(name: str) -> tuple[str, ...]:
    """Control texts the format emits (from a probe render), split on anything alphanumeric-free."""
    fmt = _format(name)
    probe = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "A"},
    ]
    try:
        rendered = fmt.render_segments(probe, add_generation_prompt=False)
    except ChatfmtError:
        rendered = fmt.render_segments(probe[1:], add_generation_prompt=False)
    out = set()
    for seg in rendered.segments:
        if seg.kind != CONTENT and seg.text:
            out.update(p for p in re.split(r"\s+", seg.text) if p)
    return tuple(sorted(out))


def _partials(tokens: list[str]) -> list[str]:
    out = []
    for t in tokens:
        if len(t) > 1:
            out += [t[: len(t) // 2], t[: len(t) - 1], t[1:], t[len(t) // 2 :]]
    return out


def content_strategy(tok, fmt_name: str) -> st.SearchStrategy[str]:
    return _content_strategy(tok, fmt_name)


@cache
def _content_strategy(tok, fmt_name: str) -> st.SearchStrategy[str]:
    # built once per tokenizer and format (hypothesis validates and flattens a strategy on first use)
    specials = sorted(t for t in tok.special_tokens if t)
    pieces = specials + list(_format_controls(fmt_name))
    parts = st.one_of(
        st.text(max_size=8),
        st.sampled_from(pieces),
        st.sampled_from(_partials(pieces) or ["<"]),
        st.sampled_from(["\n", " ", "  ", "<", "|", ">", "▁", "Ġ", "\u3000", "é", "🦙"]),
    )
    return st.lists(parts, max_size=8).map("".join)


def _expected_controls(rendered, tok) -> list[int]:
    """The control ids the format's control segments carry: literal ids, and control token texts
    found in control text (longest first, as the encoder splits them)."""
    ctrl = tok.control_ids
    specials = tok.special_tokens
    toks = sorted((t for t in specials if t), key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, toks))) if toks else None
    out: list[int] = []
    for seg in rendered.segments:
        if seg.token_ids is not None:
            out.extend(i for i in seg.token_ids if i in ctrl)
        elif seg.kind != CONTENT and pattern is not None:
            out.extend(
                specials[m.group(0)] for m in pattern.finditer(seg.text) if specials[m.group(0)] in ctrl
            )
    return out


def check_conversation(tok_name: str, fmt_name: str, contents: list[str]) -> bool:
    """Returns False when the format refuses the conversation (nothing to check)."""
    tok = get_tokenizer(tok_name)
    fmt = _format(fmt_name)
    roles = ["system", "user", "assistant", "user", "assistant"]
    messages = [{"role": r, "content": c} for r, c in zip(roles, contents, strict=False)]
    try:
        rendered = fmt.render_segments(messages, add_generation_prompt=True)
    except ChatfmtError:
        try:
            rendered = fmt.render_segments(messages[1:], add_generation_prompt=True)
        except ChatfmtError:
            return False
    ids, _labels, owners = encode_rendered(rendered, tok)
    ctrl = tok.control_ids
    got = [i for i in ids if i in ctrl]
    assert got == _expected_controls(rendered, tok), (
        f"control ids from content: {[tok.id_to_token(i) for i in got]}"
    )
    if tok_name in NO_DECODE:
        return True
    for seg in rendered.segments:
        if seg.kind != CONTENT or seg.message is None or seg.token_ids is not None:
            continue
        text = seg.text.strip()
        if not text or tok.decode(tok.encode_text(text)) != text:
            continue
        owned = [k for k, m in enumerate(owners) if m == seg.message]
        if not owned:
            continue  # all of it merged into tokens that start in the format's text
        # a token that crosses the boundary with the format text belongs to the piece it starts in
        decoded = tok.decode(ids[max(owned[0] - 1, 0) : owned[-1] + 2])
        assert text in decoded, f"message {seg.message}: {text!r} not in {decoded!r}"
    return True


def _run(tok_name: str, max_examples: int) -> None:
    tok = get_tokenizer(tok_name)  # skips when the data is absent
    outcomes: list[bool] = []

    @settings(
        max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(data=st.data())
    def prop(data):
        fmt_name = data.draw(st.sampled_from(formats_for(tok_name)), label="format")
        contents = data.draw(
            st.lists(content_strategy(tok, fmt_name), min_size=2, max_size=5), label="contents"
        )
        outcomes.append(check_conversation(tok_name, fmt_name, contents))

    prop()
    # not vacuous: most conversations are rendered and checked, not refused by their format
    assert outcomes and 2 * sum(outcomes) >= len(outcomes), f"{sum(outcomes)} of {len(outcomes)} checked"


@pytest.mark.parametrize("tok_name", KINDS)
def test_content_never_yields_a_control_id_and_decodes_back(tok_name):
    _run(tok_name, max_examples=12)


@pytest.mark.slow
@pytest.mark.parametrize("tok_name", KINDS)
def test_content_never_yields_a_control_id_and_decodes_back_large(tok_name):
    _run(tok_name, max_examples=LARGE_EXAMPLES)


@pytest.mark.parametrize("fmt_name", FORMATS)
def test_every_format_with_every_control_string_of_a_byte_level_tokenizer(fmt_name):
    """Deterministic sweep: every built-in format, content made of every control token string of the
    Qwen2.5 vocabulary (or the format's own) and the format's own control texts, whole and cut."""
    tok_name = OWN_TOKENIZER.get(fmt_name, "vm:qwen2.5")
    tok = get_tokenizer(tok_name)
    pieces = sorted(t for t in tok.special_tokens if t) + list(_format_controls(fmt_name))
    everything = "".join(pieces) + " " + " ".join(_partials(pieces))
    assert check_conversation(
        tok_name, fmt_name, ["sys " + everything, everything, everything[::-1], "x" + everything]
    )


def test_the_property_catches_content_parsed_for_control_tokens():
    """The check is not vacuous: with ``allow_special_in_content`` the encoder turns typed control
    tokens into control ids, and the comparison notices."""
    need("tokenizers")
    tok = get_tokenizer("vm:qwen2.5")
    fmt = _format("qwen2.5")
    rendered = fmt.render_segments([{"role": "user", "content": "hi<|im_end|>"}], add_generation_prompt=True)
    ids, _, _ = encode_rendered(rendered, tok, allow_special_in_content=True)
    got = [i for i in ids if i in tok.control_ids]
    assert got != _expected_controls(rendered, tok)
