"""A family declaration: everything chatfmt knows about one chat format, in one object.

A built-in module (``chatfmt/formats/builtin/*.py``) declares ``FAMILIES = [Family(...), ...]``; a
plugin's ``chatfmt.formats`` entry point returns a :class:`~chatfmt.ChatFormat` (wrapped in a
``Family`` with what its :class:`~chatfmt.FormatInfo` says) or a ``Family``. Detection, lint, export,
the known-template fast path of :class:`~chatfmt.formats.jinja.JinjaFormat`, ``parser_for_format``,
``chatfmt formats`` and the server read this object; nothing else keys on family names.

A family renders from exactly one source: a native builder (``make``, a zero-argument callable
returning a :class:`~chatfmt.formats.base.ChatFormat`) or a declarative spec (``spec``, a
:class:`~chatfmt.formats.spec.FormatSpec`, rendered by ``SpecFormat``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..errors import PluginError

if TYPE_CHECKING:
    from .base import ChatFormat, FormatInfo
    from .spec import FormatSpec

#: the package whose folders ``official/`` (the official chat templates families are pinned against)
#: and ``templates/`` (chatfmt's Jinja exports of built-ins) hold the files families name
BUILTIN_PACKAGE = "chatfmt.formats.builtin"


@dataclass(frozen=True)
class TemplateKwarg:
    """A template keyword argument a family reads (``enable_thinking``, ``date_string``, ...)."""

    name: str
    type: str = "bool"
    default: Any = None
    help: str = ""

    def __str__(self) -> str:
        return f"{self.name}: {self.type} = {self.default!r}"


@dataclass(frozen=True)
class Pin:
    """An official chat template the family renders identically: plain conversations always, tool
    lists, calls and results too with ``tools=True`` (``False``: its tool rendering differs).

    ``file`` is the template as published, read from the folder ``folder`` of the Python package
    ``package`` (chatfmt's own: ``chatfmt/formats/builtin/official/``, sources in ``SOURCES.md``
    there; a plugin names its own package); its sha256 is computed from the file, so a template
    that is edited stops matching. :class:`~chatfmt.formats.jinja.JinjaFormat` renders plain conversations of that exact
    template with the family's built-in; ``parser_for_format`` gives it the family's parser."""

    repo: str
    file: str
    tools: bool = True
    package: str = BUILTIN_PACKAGE
    folder: str = "official"

    @cached_property
    def text(self) -> str:
        return resources.files(self.package).joinpath(self.folder, self.file).read_text("utf-8")

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Family:
    """One chat format family member (a format name) and all chatfmt knows about it.

    - ``make`` / ``spec``: how it renders (exactly one of them);
    - ``aliases``: other names it is chosen by (Hub repo names among them);
    - ``parser``: the registered output parser for what its models generate (tool calls,
      reasoning); ``None`` lets :func:`chatfmt.toolcalls.parser_name_for_format` decide from the
      format's info (``think`` for a reasoning format, else ``plain``);
    - ``kwargs``: the template keyword arguments it reads, typed, with defaults;
    - ``pins``: the official templates it is pinned against;
    - ``export``: the file name of its Jinja export (in ``chatfmt/formats/builtin/templates/``);
    - ``reference``: where its exactness comes from (vendor code, official template);
    - ``origin``: set by the registry (``chatfmt`` or the plugin distribution).
    """

    name: str
    make: Callable[[], ChatFormat] | None = None
    spec: FormatSpec | None = None
    aliases: tuple[str, ...] = ()
    parser: str | None = None
    kwargs: tuple[TemplateKwarg, ...] = ()
    pins: tuple[Pin, ...] = ()
    export: str | None = None
    reference: str = ""
    #: chatfmt's grouping of related formats (``qwen``, ``llama``); defaults to the format's info
    group: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if (self.make is None) == (self.spec is None):
            raise PluginError(
                f"family {self.name!r} must render from exactly one source: a native builder (make=) or a "
                "declarative spec (spec=)"
            )

    def create(self) -> ChatFormat:
        """A fresh format object of this family."""
        if self.spec is not None:
            from .spec import SpecFormat

            fmt: ChatFormat = SpecFormat(self.spec)
        else:
            assert self.make is not None
            fmt = self.make()
        from .base import ChatFormat

        if not isinstance(fmt, ChatFormat):
            raise PluginError(
                f"format {self.name!r}: its factory returned {type(fmt).__name__}, not a chatfmt ChatFormat"
            )
        return fmt

    @cached_property
    def info(self) -> FormatInfo:
        """The format's :class:`~chatfmt.FormatInfo` (control tokens, stop and end-of-turn markers)."""
        return self.create().info

    @property
    def description(self) -> str:
        return self.info.description

    @property
    def export_template(self) -> str | None:
        """The family's Jinja export (its ``export`` body, written by
        :func:`chatfmt.formats.builtin._jinja.export` with a fresh instance's variables), if it has one."""
        if self.export is None:
            return None
        from .builtin import _jinja

        return _jinja.export(self)

    def kwarg_names(self) -> frozenset[str]:
        return frozenset(k.name for k in self.kwargs)


def as_family(name: str, obj: object) -> tuple[Family, tuple[str, ...]]:
    """What a ``chatfmt.formats`` entry point (or a built-in module) holds, as a registered family:
    a :class:`Family`, or a zero-argument callable returning a ChatFormat (a class counts)."""
    if isinstance(obj, Family):
        return obj, obj.aliases
    if callable(obj):
        return Family(name=name, make=obj), ()
    raise PluginError(
        f"format plugin {name!r}: expected a zero-argument callable returning a ChatFormat, or a Family; "
        f"got {type(obj).__name__}"
    )


__all__ = ["Family", "Pin", "TemplateKwarg", "as_family"]
