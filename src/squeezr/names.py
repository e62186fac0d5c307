"""Names users type for things with a fixed set of keys (network presets, datasets).

``ResNet-110``, ``resnet_110`` and `` RESNET110 `` all mean ``resnet110``; the same rule
serves every such name so that flags, Python arguments and recorded params read alike.
:func:`plural` names a count of things in messages ("1 block", "2 blocks").
"""

from __future__ import annotations

from collections.abc import Iterable

from squeezr.dbx.errors import UserError


def normalised_key(name: str, known: Iterable[str], what: str) -> str:
    """The key of ``known`` that ``name`` means: case, surrounding blanks, ``-`` and ``_``
    are ignored. An unknown name is a UserError calling it a ``what`` and listing the keys."""
    keys = list(known)

    def plain(text: str) -> str:
        return str(text).strip().lower().replace("-", "").replace("_", "")

    found = {plain(k): k for k in keys}.get(plain(name))
    if found is None:
        raise UserError(f"unknown {what} {name!r}; choose one of {', '.join(keys)}")
    return found


def plural(count: int, word: str, many: str | None = None) -> str:
    """``"1 block"``, ``"3 blocks"``: a count with its noun (``many``: an irregular plural)."""
    return f"{count} {word if count == 1 else many or word + 's'}"
