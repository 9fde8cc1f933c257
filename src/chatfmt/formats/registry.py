"""The format registry: names and aliases to :class:`~chatfmt.formats.family.Family` declarations.

Built-ins come from the public modules of ``chatfmt.formats.builtin`` (each declares
``FAMILIES``), installed plugins from the ``chatfmt.formats`` entry-point group; both go through the
same hook (:meth:`chatfmt.plugins.Registry.add`). Modules are imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import UnknownFormatError
from ..plugins import Origin, Registry, import_modules
from .family import Family, as_family

if TYPE_CHECKING:
    from .base import ChatFormat

BUILTIN_PACKAGE = "chatfmt.formats.builtin"


def _builtins(reg: Registry[Family]) -> None:
    for mod in import_modules(BUILTIN_PACKAGE):
        for fam in getattr(mod, "FAMILIES", ()):
            reg.add(fam.name, fam)
        for entry in getattr(mod, "FORMATS", ()):  # the older (name, factory, aliases) shape
            name, factory, aliases = entry
            reg.add(name, Family(name=name, make=factory, aliases=tuple(aliases)))


def _unknown(name: str, known: list[str]) -> Exception:
    close = FAMILIES.close_matches(name)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return UnknownFormatError(f"unknown format {name!r}{hint}; `chatfmt formats` lists the built-ins")


#: every known format family: chatfmt's built-ins and installed plugins
FAMILIES: Registry[Family] = Registry("formats", builtins=_builtins, adapt=as_family, unknown=_unknown)


def register(
    name: str, factory: Callable[[], ChatFormat] | Family, aliases: tuple[str, ...] = ()
) -> None:
    """Register a format under ``name`` (and ``aliases``) in this process; later registrations win.
    To reach every process (``prepare --workers``, Ray), declare a ``chatfmt.formats`` entry point."""
    fam = factory if isinstance(factory, Family) else Family(name=name, make=factory, aliases=tuple(aliases))
    FAMILIES.register(name, fam, tuple(aliases) or fam.aliases, origin=Origin("runtime"))


def names() -> list[str]:
    """Canonical names of all registered formats, sorted."""
    return FAMILIES.names()


def aliases() -> dict[str, str]:
    return FAMILIES.aliases()


def resolve(name: str) -> str | None:
    return FAMILIES.resolve(name)


def family(name: str) -> Family:
    """The family declaration of ``name``; raises :class:`UnknownFormatError`."""
    return FAMILIES.get(name)


def get(name: str) -> ChatFormat:
    """Instantiate the format ``name``; raises :class:`UnknownFormatError`."""
    return FAMILIES.get(name).create()


def is_builtin(name: str) -> bool:
    return resolve(name) is not None


def family_of(fmt: object) -> Family | None:
    """The registered family a format object belongs to: by its name (a built-in or plugin
    instance), or by its template when that is one a family is pinned against."""
    info = getattr(fmt, "info", None)
    name = getattr(info, "name", None)
    if isinstance(name, str) and name:
        key = resolve(name)
        if key is not None:
            return FAMILIES.get(key)
    template = getattr(fmt, "template", None)
    if isinstance(template, str):
        return pinned_family(template)
    return None


def pinned_family(template: str) -> Family | None:
    """The family pinned against this exact template text (by sha256), if any."""
    import hashlib

    return pinned_templates().get(hashlib.sha256(template.encode("utf-8")).hexdigest())


def pinned_templates() -> dict[str, Family]:
    """sha256 of every official template a family is pinned against -> that family (each file is
    hashed once)."""
    pins: dict[str, Family] = {}
    for _, fam in FAMILIES.items():
        for pin in fam.pins:
            pins.setdefault(pin.sha256, fam)
    return pins


__all__ = ["FAMILIES", "aliases", "family", "family_of", "get", "is_builtin", "names", "pinned_family", "register", "resolve"]
