"""One plugin surface: every kind of extension chatfmt has is a :class:`Registry`, filled the same way
for chatfmt's own built-ins and for installed packages.

A registry loads on first use: first chatfmt's built-ins (its own modules hand their declarations to
the registry's ``add`` hook), then every Python entry point of the registry's group, through the same
hook. Entry points are read by every process that asks, so a plugin reaches ``prepare --workers``'
spawned workers and Ray workers without any registration call being repeated there.

The groups (entry name = the name the thing is chosen by):

=======================  =================================================================
``chatfmt.formats``      a zero-argument callable returning a :class:`~chatfmt.ChatFormat`
                         (or a :class:`~chatfmt.formats.family.Family`)
``chatfmt.parsers``      ``factory(tools) -> Grammar``, a ``Grammar`` or a ``ParserSpec``
``chatfmt.backends``     a ``BackendSpec`` or ``factory(model_path, **options) -> Backend``
``chatfmt.tokenizers``   a ``TokenizerKind`` (``accepts(path)`` + ``load(path)``)
``chatfmt.record_kinds`` a ``RecordKind`` (``parse`` + optional ``detect``) or a parser callable
``chatfmt.upstreams``    an ``UpstreamKind`` instance or class
=======================  =================================================================

A plugin that fails to import does not take chatfmt down: it is reported once with a
:class:`~chatfmt.errors.PluginWarning` naming the distribution and the entry point, and asking for
its name later raises an error that carries the import failure.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Generic, TypeVar, cast

from .errors import PluginError, PluginWarning

T = TypeVar("T")

#: the entry-point groups, by registry kind
GROUPS = {
    "formats": "chatfmt.formats",
    "parsers": "chatfmt.parsers",
    "backends": "chatfmt.backends",
    "tokenizers": "chatfmt.tokenizers",
    "record_kinds": "chatfmt.record_kinds",
    "upstreams": "chatfmt.upstreams",
}


def normalize(name: str) -> str:
    """Names are matched case-insensitively, ``_`` and ``-`` alike."""
    return name.strip().lower().replace("_", "-")


@dataclass(frozen=True)
class Origin:
    """Where a registration came from: ``chatfmt`` for a built-in, else the distribution and the
    entry point (``acme-plugin: acme-chat = acme_plugin:make_format``)."""

    dist: str = "chatfmt"
    entry_point: str = ""

    @property
    def builtin(self) -> bool:
        return self.dist == "chatfmt" and not self.entry_point

    def __str__(self) -> str:
        return self.dist if not self.entry_point else f"{self.dist}: {self.entry_point}"


class Registry(Generic[T]):
    """Names (and aliases) to registered objects of one kind.

    ``builtins`` names the modules whose import (or whose ``register_builtins(registry)``) registers
    chatfmt's own objects; ``adapt(name, obj, origin)`` turns what an entry point holds into the
    registered object (and its aliases) and is what built-ins go through too.
    """

    def __init__(
        self,
        kind: str,
        *,
        builtins: Callable[[Registry[T]], None],
        adapt: Callable[[str, object], tuple[T, tuple[str, ...]]] | None = None,
        unknown: Callable[[str, list[str]], Exception] | None = None,
        normalize_names: bool = True,
    ) -> None:
        self.kind = kind
        self.group = GROUPS[kind]
        self._builtins = builtins
        self._adapt = adapt
        self._unknown = unknown
        self._norm: Callable[[str], str] = normalize if normalize_names else (lambda s: s)
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._origins: dict[str, Origin] = {}
        self._broken: dict[str, str] = {}
        self._loaded = False
        self._loading = False
        #: bumped by every change of what is registered (for callers that cache what they derive)
        self.generation = 0

    # -- registering ------------------------------------------------------------------------------

    def register(self, name: str, obj: T, aliases: tuple[str, ...] = (), *, origin: Origin | None = None) -> T:
        """Register ``obj`` under ``name`` and ``aliases``; a later registration of a name wins."""
        key = self._norm(name)
        self._items[key] = obj
        self._origins[key] = origin or Origin()
        self.generation += 1
        self._broken.pop(key, None)
        for alias in aliases:
            a = self._norm(alias)
            if a != key:
                self._aliases[a] = key
        return obj

    def add(self, name: str, obj: object, *, origin: Origin | None = None) -> T:
        """Register what a plugin (or a built-in module) declares under ``name``, adapted to this
        kind (``adapt``): the one hook built-ins and entry points share."""
        if self._adapt is None:
            return self.register(name, cast(T, obj), origin=origin)  # a registry without adapt takes objects as they are
        value, aliases = self._adapt(name, obj)
        return self.register(name, value, aliases, origin=origin)

    def unregister(self, name: str) -> None:
        self.pop(name)

    def pop(self, name: str, default: T | None = None) -> T | None:
        """Remove ``name`` (and its aliases); the object it was registered with, or ``default``."""
        key = self.resolve(name)
        if key is None:
            return default
        obj = self._items.pop(key)
        self._origins.pop(key, None)
        self.generation += 1
        for a in [a for a, k in self._aliases.items() if k == key]:
            del self._aliases[a]
        return obj

    # -- loading ----------------------------------------------------------------------------------

    def ensure_loaded(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            self._builtins(self)
            self._load_entry_points()
            self._loaded = True
        finally:
            self._loading = False

    def _load_entry_points(self) -> None:
        for ep in entry_points(self.group):
            dist = ep.dist.name if ep.dist is not None else "?"
            origin = Origin(dist, f"{ep.name} = {ep.value}")
            try:
                obj = ep.load()
                self.add(ep.name, obj, origin=origin)
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the others
                reason = f"{type(exc).__name__}: {exc}"
                self._broken[self._norm(ep.name)] = f"the {self.kind[:-1].replace('_', ' ')} plugin {origin} failed to load ({reason})"
                warnings.warn(PluginWarning(self._broken[self._norm(ep.name)]), stacklevel=4)

    def reload(self) -> None:
        """Forget what is registered and load again (built-ins and entry points)."""
        self._items.clear()
        self._aliases.clear()
        self._origins.clear()
        self._broken.clear()
        self._loaded = False
        self.generation += 1
        self.ensure_loaded()

    # -- looking up -------------------------------------------------------------------------------

    def resolve(self, name: str) -> str | None:
        """The canonical name ``name`` (or an alias) stands for, or ``None``."""
        self.ensure_loaded()
        key = self._norm(name)
        if key in self._items:
            return key
        return self._aliases.get(key)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.resolve(name) is not None

    def get(self, name: str) -> T:
        """The object registered under ``name`` (or an alias); an unknown name raises the registry's
        error, naming close matches, or the import failure of a plugin that declared it."""
        key = self.resolve(name)
        if key is not None:
            return self._items[key]
        broken = self._broken.get(self._norm(name))
        if broken is not None:
            raise PluginError(broken)
        if self._unknown is not None:
            raise self._unknown(name, self.names())
        raise PluginError(f"unknown {self.kind[:-1].replace('_', ' ')} {name!r}; known: {', '.join(self.names())}")

    def names(self) -> list[str]:
        """Canonical names, sorted."""
        self.ensure_loaded()
        return sorted(self._items)

    def aliases(self) -> dict[str, str]:
        self.ensure_loaded()
        return dict(self._aliases)

    def items(self) -> Iterator[tuple[str, T]]:
        self.ensure_loaded()
        return iter(list(self._items.items()))

    def values(self) -> list[T]:
        """The registered objects, in registration order (built-ins first, then plugins)."""
        self.ensure_loaded()
        return list(self._items.values())

    def broken(self) -> dict[str, str]:
        """Entry points of this group that failed to load: name -> the reason (as warned)."""
        self.ensure_loaded()
        return dict(self._broken)

    def origin(self, name: str) -> Origin:
        key = self.resolve(name)
        return self._origins.get(key, Origin()) if key else Origin()

    def close_matches(self, name: str, n: int = 3) -> list[str]:
        import difflib

        self.ensure_loaded()
        return difflib.get_close_matches(self._norm(name), [*self._items, *self._aliases], n=n)


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """The installed entry points of ``group``, deduplicated by name (the first distribution wins,
    as an editable install can list its metadata twice)."""
    seen: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        seen.setdefault(ep.name, ep)
    return list(seen.values())


def import_modules(package: str, names: list[str] | None = None) -> list[object]:
    """Import the public modules of ``package`` (or the named ones), sorted by name."""
    import pkgutil

    pkg = importlib.import_module(package)
    if names is None:
        names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"{package}.{n}") for n in names]


__all__ = ["GROUPS", "Origin", "Registry", "entry_points", "import_modules", "normalize"]
