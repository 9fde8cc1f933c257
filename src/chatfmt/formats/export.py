"""Export formats: a declarative spec as an equivalent Hugging Face Jinja chat template, or as TOML.

- :func:`to_jinja` writes a ``chat_template`` that transformers' ``apply_chat_template`` (and
  chatfmt's own :class:`~chatfmt.formats.jinja.JinjaFormat`) renders into exactly the text
  :class:`~chatfmt.formats.spec.SpecFormat` renders, for every conversation the spec accepts:
  system default and placements, tool lists (including the JSON-in-the-system-message fallback of
  formats without tool syntax), tool calls, grouped tool results, separators, EOS placement,
  ``strip``, content given as text parts or ``null``, and the generation prompt. Where the spec
  raises a :class:`~chatfmt.errors.ValidationError` that is the format's own rule (alternation, no
  system prompt, no tool syntax, a merge with no user message), the template calls
  ``raise_exception``; chatfmt's general conversation checks (one system message, first) are not
  repeated. Tool-call arguments given as a JSON string are written as given (a spec re-serialises
  them; they agree when the string is ``json.dumps`` output, as clients send it).
  ``generation=True`` wraps the trained part of assistant turns in ``{% generation %}`` blocks, for
  ``return_assistant_tokens_mask``.
- :func:`to_toml` writes the spec of a TOML format or of a built-in that has one
  (:data:`~chatfmt.formats.spec.BUILTIN_SPECS`); :func:`~chatfmt.formats.spec_toml.load_spec` reads
  it back into a format that renders identically.

Built-ins implemented in Python export their family's hand-written template (``Family.export``,
loaded by :mod:`chatfmt.formats.builtin._jinja` with the instance's
:meth:`~chatfmt.formats.base.ChatFormat.jinja_variables`), verified against the Python format under
transformers; one that no template can reproduce (``jinja_unsupported``: the reason) raises
:class:`~chatfmt.errors.FormatError`, as does any other format without a spec. A Jinja format exports
to Jinja as its own template text.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import FormatError
from . import registry
from .base import ChatFormat
from .family import Family
from .jinja import JinjaFormat
from .spec import FormatSpec, SpecFormat, spec_of, split_closing, split_placeholders
from .spec_toml import spec_to_toml

TARGETS = ("jinja", "toml")

def jinja_str(s: str) -> str:
    """A single-quoted Jinja string literal for ``s``: printable characters as they are, the rest
    escaped (Jinja decodes literals with ``unicode-escape``)."""
    out = []
    for c in s:
        if c.isprintable() and c not in "\\'":
            out.append(c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "'":
            out.append("\\'")
        elif c == "\\":
            out.append("\\\\")
        elif ord(c) < 0x100:
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) < 0x10000:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    return "'" + "".join(out) + "'"


def _cat(*parts: str) -> str:
    """Join Jinja expressions with ``~``, dropping empty literals."""
    kept = [p for p in parts if p and p != "''"]
    return " ~ ".join(kept) if kept else "''"


class _Writer:
    def __init__(self, spec: FormatSpec, generation: bool) -> None:
        self.spec = spec
        self.generation = generation
        self.lines: list[str] = []
        self.depth = 0
        sep, rsep = spec.separator, spec.round_separator
        self.separators = bool(sep) or bool(rsep)
        self.round = rsep is not None and rsep != sep

    # -- emitting --------------------------------------------------------------------------------

    def tag(self, body: str) -> None:
        self.lines.append("    " * self.depth + "{%- " + body + " -%}")

    def out(self, *parts: str) -> None:
        expr = _cat(*parts)
        if expr != "''":
            self.lines.append("    " * self.depth + "{{- " + expr + " -}}")

    def open(self, body: str) -> None:
        self.tag(body)
        self.depth += 1

    def middle(self, body: str) -> None:
        self.depth -= 1
        self.tag(body)
        self.depth += 1

    def close(self, body: str) -> None:
        self.depth -= 1
        self.tag(body)

    def fail(self, message: str) -> None:
        self.out(f"raise_exception({jinja_str(message)})")

    def when(self, condition: str, *parts: str, trained: bool = False) -> None:
        """One output under ``{% if condition %}`` (trained with the assistant turn if ``trained``)."""
        self.open(f"if {condition}")
        (self.trained if trained else self.out)(*parts)
        self.close("endif")

    def fail_if(self, condition: str, message: str) -> None:
        self.when(condition, f"raise_exception({jinja_str(message)})")

    def trained(self, *parts: str) -> None:
        """Output that is trained with an assistant turn (inside a generation block if asked)."""
        if _cat(*parts) == "''":
            return
        if self.generation:
            self.tag("generation")
        self.out(*parts)
        if self.generation:
            self.tag("endgeneration")

    # -- pieces ----------------------------------------------------------------------------------

    def text(self, role: str, var: str = "message") -> str:
        """The content of message ``var`` as the spec writes it for ``role``."""
        return self.stripped(role, f"text_of({var})")

    def stripped(self, role: str, expr: str) -> str:
        return f"({expr} | trim)" if self.spec.strips(role) else expr

    def block_start(self, role: str) -> None:
        """The separator before a block (see FormatSpec.separator_before)."""
        if not self.separators:
            return
        s = self.spec
        if role == "user" and self.round:
            self.open("if ns.prev in ['assistant', 'tool']")
            self.out(jinja_str(s.round_separator or ""))
            if s.separator:
                self.middle("elif ns.blocks")
                self.out(jinja_str(s.separator))
            self.close("endif")
        elif s.separator:
            self.when("ns.blocks", jinja_str(s.separator))
        self.tag("set ns.blocks = ns.blocks + 1")

    # -- the template ----------------------------------------------------------------------------

    def write(self) -> str:
        s = self.spec
        name = s.name.replace("#}", "# }")
        self.lines.append(
            f"{{#- {name}: chat template exported by chatfmt from a declarative format spec. "
            f"Edit the spec and export again rather than this file. -#}}"
        )
        self.macros()
        self.prologue()
        self.out(jinja_str(s.bos))
        ns = "blocks=0, prev=''" + (", items=0" if s.tool_calls is not None and s.tool_calls.mode == "wrap" else "")
        self.tag(f"set ns = namespace({ns})")
        if s.system.placement == "own_block":
            self.system_block()
        if s.tools is not None and s.tools.placement == "own_block":
            self.open("if tools")
            self.block_start("tools")
            self.out("tools_text")
            self.close("endif")
        self.messages()
        self.open("if add_generation_prompt")
        self.block_start("assistant")
        self.out(jinja_str(s.generation_prompt_text))
        self.close("endif")
        return "\n".join(self.lines) + "\n"

    def macros(self) -> None:
        self.open("macro text_of(message)")
        self.open("if message.content is string")
        self.out("message.content")
        self.middle("elif message.content is iterable and message.content is not mapping")
        self.tag("set parts = namespace(text='', count=0)")
        self.open("for part in message.content")
        self.open("if part is mapping and (part.type is not defined or part.type == 'text')")
        self.tag("set parts.text = parts.text ~ ('\\n' if parts.count else '') ~ (part.text if part.text is defined else '')")
        self.tag("set parts.count = parts.count + 1")
        self.close("endif")
        self.close("endfor")
        self.out("parts.text")
        self.close("endif")
        self.close("endmacro")
        tc = self.spec.tool_calls
        if tc is not None and tc.mode == "wrap" and "{arguments}" in tc.template:
            self.open("macro arguments_json(arguments)")
            self.open("if arguments is not defined or arguments is none")
            self.out("'{}'")
            self.middle("elif arguments is string")
            self.out("arguments if arguments | trim else '{}'")
            self.middle("else")
            self.out("arguments | tojson")
            self.close("endif")
            self.close("endmacro")

    def prologue(self) -> None:
        s = self.spec
        name = s.name
        self.fail_if("not messages", "conversation is empty")
        if s.tools_error:
            self.fail_if("tools", s.tools_error)
        self.open("if messages[0].role == 'system'")
        self.tag("set first = 1")
        self.tag("set system_text = text_of(messages[0])")
        self.middle("else")
        self.tag("set first = 0")
        self.tag("set system_text = none")
        self.close("endif")
        if s.tools is None:
            # formats without tool syntax get the list as JSON in the system message
            self.open("if tools")
            self.tag("set system_text = (system_text ~ '\\n\\n' if system_text else '') ~ (tools | tojson)")
            self.close("endif")
            self.tag("set tools_text = ''")
        else:
            t = s.tools
            body = "(tools | tojson)" if t.style == "json" else f"(tools | map('tojson') | join({jinja_str(t.separator)}))"
            self.open("if tools")
            self.tag(f"set tools_text = {_cat(jinja_str(t.preamble), body, jinja_str(t.postamble))}")
            self.middle("else")
            self.tag("set tools_text = ''")
            self.close("endif")
        if s.system.placement == "unsupported":
            self.fail_if("system_text is not none", s.system_error)
        if s.alternating:
            self.open("for message in messages[first:]")
            self.open("if message.role != ('user' if loop.index0 % 2 == 0 else 'assistant')")
            self.fail(
                f"{name} needs user and assistant messages alternating, starting with the user "
                "(after an optional system message)"
            )
            self.middle("elif message.tool_calls")
            self.fail(f"{name} has no tool-call syntax")
            self.close("endif")
            self.close("endfor")
            self.fail_if("first == messages | length", f"{name} needs a user message after the system prompt")
        if s.system.placement == "merge_first_user":
            in_system = "tools_text" if s.tools is not None and s.tools.placement == "system" else "''"
            self.open("if system_text is not none")
            self.tag(f"set merged_system = {_cat(self.stripped('system', 'system_text'), in_system)}")
            if s.system.default:
                self.middle("else")
                self.tag(f"set merged_system = {_cat(jinja_str(s.system.default), in_system)}")
            else:
                if in_system != "''":
                    self.middle("elif tools_text")
                    self.tag("set merged_system = tools_text")
                self.middle("else")
                self.tag("set merged_system = none")
            self.close("endif")
            self.open(
                "if merged_system is not none and (first == messages | length or messages[first].role != 'user')"
            )
            self.fail(f"{name} merges the system prompt into the first user message, which is missing")
            self.close("endif")

    def system_block(self) -> None:
        s = self.spec
        rs = s.roles.system
        in_system = "tools_text" if s.tools is not None and s.tools.placement == "system" else "''"
        self.open("if system_text is not none")
        self.block_start("system")
        self.out(jinja_str(rs.prefix), self.stripped("system", "system_text"), in_system, jinja_str(rs.suffix))
        if s.system.default:
            self.middle("else")
        elif in_system != "''":
            self.middle("elif tools_text")
        if s.system.default or in_system != "''":
            self.block_start("system")
            self.out(jinja_str(rs.prefix), jinja_str(s.system.default), in_system, jinja_str(rs.suffix))
        self.close("endif")

    def messages(self) -> None:
        s = self.spec
        self.open("for i in range(first, messages | length)")
        self.tag("set message = messages[i]")
        self.tag("set role = 'tool' if message.role == 'observation' else message.role")
        # user
        self.open("if role == 'user'")
        self.block_start("user")
        ru = s.roles.user
        if s.system.placement == "merge_first_user":
            self.open("if i == first and merged_system is not none")
            parts = []
            for piece in split_placeholders(s.system.merge_template, ("{system}", "{user}")):
                if piece == "{system}":
                    parts.append("merged_system")
                elif piece == "{user}":
                    parts.append(self.text("user"))
                else:
                    parts.append(jinja_str(piece))
            self.out(jinja_str(ru.prefix), *parts, jinja_str(ru.suffix))
            self.middle("else")
            self.out(jinja_str(ru.prefix), self.text("user"), jinja_str(ru.suffix))
            self.close("endif")
        else:
            self.out(jinja_str(ru.prefix), self.text("user"), jinja_str(ru.suffix))
        # assistant
        self.middle("elif role == 'assistant'")
        self.assistant()
        # tool
        self.middle("elif role == 'tool'")
        self.tool()
        self.middle("else")
        self.out(f"raise_exception({jinja_str(s.name + ': unexpected ')} ~ message.role ~ ' message')")
        self.close("endif")
        if self.round:
            self.tag("set ns.prev = role")
        self.close("endfor")

    def assistant(self) -> None:
        s = self.spec
        ra = s.roles.assistant
        tc = s.tool_calls
        self.block_start("assistant")
        self.out(jinja_str(ra.prefix))
        if tc is None or tc.mode == "error":
            self.fail_if("message.tool_calls", s.tool_call_error)
        if tc is not None and tc.mode == "wrap":
            self.tag(f"set content = {self.text('assistant')}")
            self.open("if message.tool_calls")
            self.tag("set ns.items = 0")
            self.open("if content")
            self.trained("content")
            self.tag("set ns.items = 1")
            self.close("endif")
            self.open("for call in message.tool_calls")
            self.tag("set function = call.function if call.function is defined else call")
            if tc.separator:
                self.when("ns.items", jinja_str(tc.separator), trained=True)
            self.tag("set ns.items = ns.items + 1")
            body = []
            for k, piece in enumerate(split_placeholders(tc.template, ("{name}", "{arguments}"))):
                if k % 2 == 0:
                    body.append(jinja_str(piece))
                elif piece == "{name}":
                    body.append("function.name")
                else:
                    body.append("arguments_json(function.arguments)")
            self.trained(jinja_str(tc.prefix), *body, jinja_str(tc.suffix))
            self.close("endfor")
            self.middle("else")
            self.trained("content")
            self.close("endif")
        else:
            self.trained(self.text("assistant"))
        eos = s.eos if s.eos_placement == "assistant" else ""
        if self.generation:
            head, rest = split_closing(eos + ra.suffix, s.turn_ends)
            self.trained(jinja_str(head))
            self.out(jinja_str(rest))
        else:
            self.out(jinja_str(eos + ra.suffix))
        if s.eos_placement == "end" and s.eos:
            self.when("loop.last", jinja_str(s.eos), trained=True)

    def tool(self) -> None:
        s = self.spec
        trs = s.tool_results
        if trs.style == "user_block":
            ru = s.roles.user
            self.open("if i == first or messages[i - 1].role not in ['tool', 'observation']")
            self.block_start("tool")
            self.out(jinja_str(ru.prefix))
            self.middle("else")
            self.out(jinja_str(trs.separator))
            self.close("endif")
            self.out(jinja_str(trs.prefix), self.text("tool"), jinja_str(trs.suffix))
            self.open("if loop.last or messages[i + 1].role not in ['tool', 'observation']")
            self.out(jinja_str(ru.suffix))
            self.close("endif")
        elif s.roles.tool is None:
            self.fail(f"{s.name} has no tool-result syntax")
        else:
            rt = s.roles.tool
            self.block_start("tool")
            self.out(jinja_str(rt.prefix), jinja_str(trs.prefix), self.text("tool"), jinja_str(trs.suffix), jinja_str(rt.suffix))


def spec_to_jinja(spec: FormatSpec, *, generation: bool = False) -> str:
    """The Jinja chat template equivalent to ``SpecFormat(spec)``."""
    return _Writer(spec, generation).write()


def to_jinja(fmt: ChatFormat, *, generation: bool = False) -> str:
    """An HF-compatible Jinja chat template for ``fmt`` (a spec format, a built-in with a spec, or a
    Jinja format, whose own template is returned); raises :class:`~chatfmt.errors.FormatError`."""
    if isinstance(fmt, JinjaFormat):
        return fmt.template
    if fmt.jinja_unsupported:
        raise FormatError(
            f"format {fmt.info.name!r} cannot be exported as a Jinja template exactly: {fmt.jinja_unsupported}"
        )
    family = None if isinstance(fmt, SpecFormat) else exporting_family(fmt)
    if family is not None:
        if generation:
            raise FormatError(
                f"format {fmt.info.name!r}: {{% generation %}} blocks are written only for declarative "
                "(spec) formats; export without --generation-blocks"
            )
        from .builtin import _jinja

        return _jinja.export(family, fmt)
    return spec_to_jinja(spec_of(fmt), generation=generation)


def exporting_family(fmt: ChatFormat) -> Family | None:
    """The registered family whose Jinja export (``Family.export``) writes ``fmt``: its own family (by
    name), else the family built by its class (an instance renamed with ``with_info``)."""
    family = registry.family_of(fmt)
    if family is not None and family.export is not None:
        return family
    for _, candidate in registry.FAMILIES.items():
        if candidate.export is not None and candidate.make is type(fmt):
            return candidate
    return None


def to_toml(fmt: ChatFormat) -> str:
    """The TOML spec of ``fmt`` (a spec format or a built-in with a spec); raises
    :class:`~chatfmt.errors.FormatError` for any other format."""
    if isinstance(fmt, JinjaFormat):
        raise FormatError(
            f"format {fmt.info.name!r} is a Jinja chat template; a template cannot be turned into a TOML spec"
        )
    spec = spec_of(fmt)
    return spec_to_toml(spec, header=f"chat format {spec.name!r}, exported by chatfmt (chatfmt export --to toml)")


#: where transformers 5 reads and writes a model's chat templates (``save_pretrained``)
CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_into(fmt: ChatFormat, model_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Write ``fmt`` into a model directory the way transformers 5's ``save_pretrained`` saves a
    template, so that ``AutoTokenizer.from_pretrained(model_dir).apply_chat_template`` renders it:
    the Jinja export as ``chat_template.jinja``, and a ``chat_template`` entry of
    ``tokenizer_config.json`` (which that file now replaces) removed, every other key left as it was.
    Named templates that were only in ``tokenizer_config.json`` are kept as
    ``additional_chat_templates/NAME.jinja`` (an existing file there is not overwritten).

    Returns the files written and warnings: a ``tool_use`` template left in the directory (transformers
    renders it instead when tools are given), a processor's ``chat_template.json`` (which processors
    read). Raises :class:`~chatfmt.errors.FormatError` for a format with no Jinja export, or a
    ``model_dir`` that is not a directory, before anything is written."""
    text = to_jinja(fmt)
    root = Path(model_dir)
    if not root.is_dir():
        raise FormatError("not a model directory" if not root.exists() else "not a directory", source=str(root))
    config_path = root / "tokenizer_config.json"
    config: dict[str, Any] | None = None
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"cannot read tokenizer_config.json: {e}", source=str(config_path)) from None
        if not isinstance(config, dict):
            raise FormatError("tokenizer_config.json is not a JSON object", source=str(config_path))
    written: list[Path] = []
    notes: list[str] = []
    _write_atomic(root / CHAT_TEMPLATE_FILE, text)
    written.append(root / CHAT_TEMPLATE_FILE)
    if config is not None and "chat_template" in config:
        old = config.pop("chat_template")
        named = {t.get("name"): t.get("template") for t in old if isinstance(t, dict)} if isinstance(old, list) else {}
        for name, template in named.items():
            if name == "default" or not isinstance(name, str) or not isinstance(template, str):
                continue
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
                notes.append(f"tokenizer_config.json's chat template {name!r} was dropped (not a file name)")
                continue
            target = root / CHAT_TEMPLATE_DIR / f"{name}.jinja"
            if not target.exists():
                target.parent.mkdir(exist_ok=True)
                _write_atomic(target, template)
                written.append(target)
        _write_atomic(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        written.append(config_path)
    tool_use = root / CHAT_TEMPLATE_DIR / "tool_use.jinja"
    if tool_use.is_file():
        notes.append(f"{tool_use} is kept: transformers renders it instead of the exported format when tools are given")
    if config is None and any(root.glob("*.gguf")):
        notes.append(f"{root} holds a .gguf and no tokenizer_config.json: AutoTokenizer.from_pretrained(..., "
                     "gguf_file=...) and llama.cpp read the GGUF's own template, not chat_template.jinja")
    if (root / "chat_template.json").is_file():
        notes.append(f"{root / 'chat_template.json'} is kept: processors (AutoProcessor) read their template from it")
    return written, notes


def export(fmt: ChatFormat, to: str, **options: Any) -> str:
    """``to_jinja`` or ``to_toml`` by name (``"jinja"`` / ``"toml"``)."""
    if to == "jinja":
        return to_jinja(fmt, **options)
    if to == "toml":
        return to_toml(fmt)
    raise ValueError(f"unknown export target {to!r} (expected one of {', '.join(TARGETS)})")


__all__ = ["CHAT_TEMPLATE_DIR", "CHAT_TEMPLATE_FILE", "TARGETS", "export", "export_into", "exporting_family", "jinja_str", "spec_to_jinja", "to_jinja", "to_toml"]
