"""``load_format``: get a format from a built-in name, a template file, a tokenizer_config.json, a
model directory or a GGUF file; ``from_template`` for a template string."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import FormatError, UnknownFormatError
from . import registry
from .base import ChatFormat
from .jinja import JinjaFormat

SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


def from_template(
    template: str,
    bos_token: str | None = None,
    eos_token: str | None = None,
    *,
    name: str = "jinja",
    strict: bool = False,
    timeout: float | None = None,
    max_output: int | None = None,
    **special_tokens: str,
) -> JinjaFormat:
    """A format from a Jinja chat template string; special tokens become template variables."""
    opts: dict[str, Any] = {}
    if timeout is not None:
        opts["timeout"] = timeout
    if max_output is not None:
        opts["max_output"] = max_output
    return JinjaFormat(
        template,
        name=name,
        bos_token=bos_token,
        eos_token=eos_token,
        special_tokens=special_tokens,
        strict=strict,
        **opts,
    )


def _token_text(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(value, str):
        return value
    content = value.get("content") if isinstance(value, dict) else None
    return content if isinstance(content, str) else None


def _tool_use_of(templates: dict[str, str], template: str | None, picked: str) -> str | None:
    """With no template named by the caller, the default one hands over to ``tool_use`` when tools
    are given (transformers' rule)."""
    if template is None and picked == "default":
        return templates.get("tool_use")
    return None


def _pick_template(templates: dict[str, str], template: str | None, source: str) -> tuple[str, str]:
    if template is not None:
        if template not in templates:
            raise FormatError(
                f"no chat template named {template!r} (available: {', '.join(sorted(templates)) or 'none'})",
                source=source,
            )
        return template, templates[template]
    if "default" in templates:
        return "default", templates["default"]
    if len(templates) == 1:
        return next(iter(templates.items()))
    raise FormatError(
        f"several chat templates and none named 'default'; pick one with template=... "
        f"(available: {', '.join(sorted(templates))})",
        source=source,
    )


def _templates_from_config(config: dict[str, Any], source: str) -> dict[str, str]:
    ct = config.get("chat_template")
    if ct is None:
        return {}
    if isinstance(ct, str):
        return {"default": ct}
    if isinstance(ct, list):
        out = {}
        for i, entry in enumerate(ct):
            if not (isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("template"), str)):
                raise FormatError(f"chat_template entry {i} must be an object with 'name' and 'template'", source=source)
            out[entry["name"]] = entry["template"]
        return out
    raise FormatError("chat_template must be a string or a list of named templates", source=source)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(f"invalid JSON: {e.msg} (column {e.colno})", source=str(path), line=e.lineno) from None
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror}", source=str(path)) from None
    if not isinstance(data, dict):
        raise FormatError("expected a JSON object", source=str(path))
    return data


def _special_tokens_from_config(config: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key in SPECIAL_TOKEN_KEYS:
        text = _token_text(config.get(key))
        if text is not None:
            out[key] = text
    return out


def _load_tokenizer_config(path: Path, template: str | None, extra_templates: dict[str, str] | None = None, **opts: Any) -> JinjaFormat:
    config = _read_json(path)
    templates = _templates_from_config(config, str(path))
    if extra_templates:
        templates = {**extra_templates, **templates} if not templates else {**templates, **{k: v for k, v in extra_templates.items() if k not in templates}}
    if not templates:
        raise FormatError("no chat_template in this tokenizer_config.json", source=str(path))
    tname, text = _pick_template(templates, template, str(path))
    tokens = _special_tokens_from_config(config)
    stm = path.parent / "special_tokens_map.json"
    if stm.is_file():
        try:
            for k, v in _special_tokens_from_config(_read_json(stm)).items():
                tokens.setdefault(k, v)
        except FormatError:
            pass
    name = path.parent.name or "jinja"
    if tname != "default":
        name = f"{name}:{tname}"
    return JinjaFormat(
        text, name=name, special_tokens=tokens, source=str(path), tool_use_template=_tool_use_of(templates, template, tname), **opts
    )


def _load_directory(path: Path, template: str | None, **opts: Any) -> JinjaFormat:
    templates: dict[str, str] = {}
    main = path / "chat_template.jinja"
    if main.is_file():
        templates["default"] = main.read_text(encoding="utf-8")
    extra_dir = path / "additional_chat_templates"
    if extra_dir.is_dir():
        for f in sorted(extra_dir.glob("*.jinja")):
            templates[f.stem] = f.read_text(encoding="utf-8")
    legacy = path / "chat_template.json"
    if not templates and legacy.is_file():
        data = _read_json(legacy)
        templates.update(_templates_from_config(data, str(legacy)))
    cfg = path / "tokenizer_config.json"
    if cfg.is_file():
        config = _read_json(cfg)
        for k, v in _templates_from_config(config, str(cfg)).items():
            templates.setdefault(k, v)
        tokens = _special_tokens_from_config(config)
    else:
        tokens = {}
    stm = path / "special_tokens_map.json"
    if stm.is_file():
        for k, v in _special_tokens_from_config(_read_json(stm)).items():
            tokens.setdefault(k, v)
    if not templates:
        raise FormatError(
            "no chat template here (looked for chat_template.jinja, additional_chat_templates/, "
            "chat_template.json and tokenizer_config.json)",
            source=str(path),
        )
    tname, text = _pick_template(templates, template, str(path))
    from ..hub import origin

    # a Hub cache snapshot (models--ORG--NAME/snapshots/<commit>) is named NAME, as a clone would be
    base = (origin(path) or path.name).rsplit("/", 1)[-1]
    name = base if tname == "default" else f"{base}:{tname}"
    return JinjaFormat(
        text, name=name, special_tokens=tokens, source=str(path), tool_use_template=_tool_use_of(templates, template, tname), **opts
    )


def _load_gguf(path: Path, template: str | None, **opts: Any) -> JinjaFormat:
    from ..gguf_meta import read_gguf_chat_metadata

    meta = read_gguf_chat_metadata(path)
    templates = meta.templates
    if not templates:
        raise FormatError("no tokenizer.chat_template in this GGUF file's metadata", source=str(path))
    tname, text = _pick_template(templates, template, str(path))
    name = path.stem
    if tname != "default":
        name = f"{name}:{tname}"
    return JinjaFormat(
        text,
        name=name,
        special_tokens=meta.special_tokens,
        source=str(path),
        tool_use_template=_tool_use_of(templates, template, tname),
        **opts,
    )


def _sibling_tokens(template: Path) -> dict[str, str]:
    """The special tokens of the tokenizer_config.json (and special_tokens_map.json) beside a bare
    template file, if there are any (an unreadable one gives none)."""
    tokens: dict[str, str] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        f = template.parent / name
        if f.is_file():
            try:
                for k, v in _special_tokens_from_config(_read_json(f)).items():
                    tokens.setdefault(k, v)
            except FormatError:
                pass
    return tokens


def tokenizer_special_tokens(tokenizer: Any) -> dict[str, str]:
    """``bos_token`` / ``eos_token`` (and ``unk_token`` / ``pad_token`` where known) of a tokenizer."""
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = getattr(tokenizer, key, None)
        if isinstance(value, str) and value:
            out[key] = value
    return out


def with_tokenizer_tokens(fmt: ChatFormat, tokenizer: Any) -> ChatFormat:
    """``fmt`` with the special tokens a Jinja template reads taken from ``tokenizer`` where the
    format has none of its own (a bare .jinja); other formats are returned as they are."""
    if not isinstance(fmt, JinjaFormat) or tokenizer is None:
        return fmt
    reads = fmt.template_variables
    wanted = {k: v for k, v in tokenizer_special_tokens(tokenizer).items() if k in reads and k not in fmt.special_tokens}
    return fmt.with_special_tokens(wanted) if wanted else fmt  # the same object when nothing is missing


def load_format(name_or_path: str | Path | ChatFormat, *, template: str | None = None, **options: Any) -> ChatFormat:
    """Load a chat format.

    ``name_or_path`` is a built-in name (``chatfmt formats`` lists them), a ``.jinja`` file, a
    ``tokenizer_config.json`` (string ``chat_template`` or a list of named templates), a model
    directory (``chat_template.jinja``, ``additional_chat_templates/*.jinja`` or
    ``tokenizer_config.json``), a ``.gguf`` file (metadata only, no weights loaded) or a ``.toml``
    declarative format (:mod:`chatfmt.formats.spec`; the Jinja options do not apply to it).
    A Hugging Face Hub id (``ORG/NAME[@REVISION][:FILE.gguf]``, not a local path) is read from the
    Hub or its cache: the tokenizer and config files only (see :mod:`chatfmt.hub`).
    ``template`` picks a named template (e.g. ``"tool_use"``). Options for Jinja formats:
    ``strict``, ``timeout``, ``max_output``.
    """
    if isinstance(name_or_path, ChatFormat):
        return name_or_path
    text = str(name_or_path)
    path = Path(text).expanduser()
    is_pathlike = isinstance(name_or_path, Path) or "/" in text or "\\" in text or path.suffix in (".jinja", ".json", ".gguf", ".toml", ".j2")
    if not is_pathlike and registry.is_builtin(text):
        if template is not None:
            raise FormatError(f"built-in format {text!r} has no named templates")
        return registry.get(text)
    from ..hub import hub_ref, resolve

    ref = None if isinstance(name_or_path, Path) else hub_ref(text)
    if ref is not None:  # ORG/NAME[@REV][:FILE] that is not a local path: the Hub (see chatfmt.hub)
        local = resolve(ref, "tokenizer")
        if local.is_dir():
            return _load_directory(local, template, **options)
        return _load_gguf(local, template, **options)
    if path.exists():
        if path.is_dir():
            return _load_directory(path, template, **options)
        suffix = path.suffix.lower()
        if suffix == ".gguf":
            return _load_gguf(path, template, **options)
        if suffix == ".json":
            return _load_tokenizer_config(path, template, **options)
        if suffix == ".toml":
            if template is not None:
                raise FormatError("a TOML format has no named templates", source=str(path))
            from .spec_toml import load_spec

            return load_spec(path)
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise FormatError(f"cannot read template: {e}", source=str(path)) from None
        return JinjaFormat(source, name=path.stem, source=str(path), special_tokens=_sibling_tokens(path), **options)
    if is_pathlike:
        raise FormatError("no such file or directory", source=text)
    return registry.get(text)  # raises UnknownFormatError with suggestions


def list_formats() -> list[ChatFormat]:
    """Every built-in format, instantiated, sorted by name."""
    return [registry.get(n) for n in registry.names()]


__all__ = ["from_template", "list_formats", "load_format", "with_tokenizer_tokens", "UnknownFormatError"]
