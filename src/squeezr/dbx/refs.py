"""What an experiment reference names: an id, an id prefix, a name, or a name with a selector.

Names are not unique: re-running a script (``squeezr train --name base`` twice, the demo
twice) makes a second experiment of the same name. So that what worked before keeps working,
a name shared by several experiments resolves to the **newest finished** one (status
``done``; if none has finished, the newest), with a note on stderr saying which and how to
pick another. A selector picks by creation order instead:

* ``NAME@1``, ``NAME@2``, ...: the first, second, ... created;
* ``NAME@latest`` or ``NAME@-1``: the newest created, whatever its status; ``NAME@-2`` the
  one before it.

``strict`` (``--strict`` on the command lines, ``strict=True`` in Python) refuses a shared
name without a selector (:class:`~squeezr.dbx.errors.Ambiguous`) instead of choosing. A name
that itself contains ``@`` is found as written first. :meth:`Repository.get
<squeezr.dbx.store.Repository.get>`, and so :func:`dbx.open <squeezr.dbx.store.open>`,
:func:`dbx.resume <squeezr.dbx.store.resume>` and every command that takes an experiment,
resolve references here.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING

from squeezr.dbx.errors import Ambiguous, NotFound, UserError

if TYPE_CHECKING:
    from squeezr.dbx.store import Experiment, Repository

__all__ = ["SELECTOR_HELP", "resolve"]

SELECTOR_HELP = "NAME@1 (first created), NAME@latest or NAME@-1 (newest created), or an id"
_SELECTOR = re.compile(r"^(?P<name>.+)@(?P<which>latest|-?\d+)$")


def resolve(repo: Repository, ref: str, strict: bool = False) -> Experiment:
    """The one experiment ``ref`` names in ``repo`` (see the module docstring)."""
    from squeezr.dbx.store import Experiment

    if not isinstance(ref, str) or not ref:
        raise UserError("give an experiment id, id prefix or name")
    selector = _SELECTOR.match(ref)
    wanted = {ref} | ({selector["name"]} if selector else set())
    by_name: dict[str, list[str]] = {name: [] for name in wanted}
    by_prefix = []
    for name, folder in repo._folders():
        if not os.path.isfile(os.path.join(folder, "meta.json")):
            continue
        folder_id = os.path.basename(folder)
        if folder_id == ref:
            return Experiment(repo, folder)
        if name in by_name:
            by_name[name].append(folder)
        elif folder_id.startswith(ref):
            by_prefix.append(folder)
    named = [Experiment(repo, folder) for folder in by_name[ref]]
    if named:
        return named[0] if len(named) == 1 else _choose(ref, named, strict)
    if selector and by_name[selector["name"]]:
        named = [Experiment(repo, folder) for folder in by_name[selector["name"]]]
        return _select(selector["name"], selector["which"], named)
    if len(by_prefix) == 1:
        return Experiment(repo, by_prefix[0])
    if by_prefix:
        ids = ", ".join(sorted(os.path.basename(folder) for folder in by_prefix))
        raise Ambiguous(
            f"{ref!r} matches {len(by_prefix)} experiments ({ids}); give more of the id"
        )
    raise NotFound(f"no experiment {ref!r} in {repo.path}; list them with `dbx ls`")


def _by_creation(experiments: list[Experiment]) -> list[Experiment]:
    return sorted(experiments, key=lambda exp: (exp.meta.get("created") or "", exp.id))


def _select(name: str, which: str, experiments: list[Experiment]) -> Experiment:
    """``NAME@N`` / ``NAME@-N`` / ``NAME@latest`` among the experiments called ``name``."""
    ordered = _by_creation(experiments)
    index = -1 if which == "latest" else int(which)
    if index == 0:
        raise UserError(f"{name}@0: selectors count from 1 (first created) or -1 (newest)")
    if abs(index) > len(ordered):
        count = f"{len(ordered)} experiment" + ("" if len(ordered) == 1 else "s")
        raise NotFound(
            f"{name}@{which}: there {'is' if len(ordered) == 1 else 'are'} only "
            f"{count} named {name!r}"
        )
    return ordered[index - 1 if index > 0 else index]


def _choose(name: str, experiments: list[Experiment], strict: bool) -> Experiment:
    """The newest finished of several experiments called ``name`` (with a note on stderr),
    or Ambiguous when ``strict``."""
    ordered = _by_creation(experiments)
    count = len(ordered)
    pick = f"pick one with {name}@1..{name}@{count} (first to last created) or an id"
    if strict:
        ids = ", ".join(exp.id for exp in ordered)
        raise Ambiguous(f"{name!r} names {count} experiments ({ids}); {pick}")
    from squeezr.dbx.runs import experiment_status  # runs imports store, which imports us

    finished = [exp for exp in ordered if experiment_status(exp, damaged="?") == "done"]
    chosen = (finished or ordered)[-1]
    which = "newest finished" if finished else "newest (none has finished)"
    print(
        f"dbx: note: {name!r} names {count} experiments; using the {which}, {chosen.id} "
        f"(created {(chosen.meta.get('created') or '?')[:19]}); {pick}, or --strict to refuse",
        file=sys.stderr,
    )
    return chosen
