"""The :class:`~chatfmt.formats.base.FormatInfo` shape many built-ins share: one token ends every
turn, stops generation and is the EOS."""

from __future__ import annotations

from typing import Any

from ..base import FormatInfo


def eos_info(
    name: str, group: str, description: str, reference: str, *, eos: str, bos: str | None = None,
    tokens: dict[str, str] | None = None, **changes: Any,
) -> FormatInfo:
    """A format's info whose turns all end with ``eos`` (also its one stop string); ``changes`` are
    the other :class:`FormatInfo` fields (``supports_tools``, ...)."""
    return FormatInfo(name=name, family=group, description=description, stop=(eos,), end_of_turn=(eos,),
                      bos_token=bos, eos_token=eos, reference=reference, special_tokens=dict(tokens or {}), **changes)


__all__ = ["eos_info"]
