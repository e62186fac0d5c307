"""Files squeezr writes with torch (models, exports, resume states): crash-safe and checked.

Every such file is written through :func:`write_atomically`, so a crash leaves the previous
file or the new one, never half of one, and read through :func:`load_torch_file`, so a
damaged or foreign file is a one-line :class:`~squeezr.dbx.errors.UserError` saying what to do
instead of an unpickling traceback. The model files, the trainer's resume state and the
pruning state all share this one pair.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import atomic_path


def write_atomically(
    path: str | os.PathLike[str], write: Callable[[Path], None], *, make_folder: bool = False
) -> Path:
    """Let ``write`` fill a temporary file next to ``path``, then rename it into place.

    The folder must exist (a UserError otherwise: a mistyped output path should not grow
    folders) unless ``make_folder``, for files squeezr places itself.
    """
    target = Path(path)
    if make_folder:
        target.parent.mkdir(parents=True, exist_ok=True)
    elif not target.parent.is_dir():
        raise UserError(f"cannot write {target}: folder {target.parent} does not exist")
    with atomic_path(target) as tmp:
        write(tmp)
    return target


def save_torch_file(obj: Any, path: str | os.PathLike[str], *, make_folder: bool = False) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`write_atomically`)."""
    return write_atomically(path, lambda tmp: torch.save(obj, tmp), make_folder=make_folder)


def load_torch_file(path: str | os.PathLike[str], what: str, remedy: str) -> Any:
    """What ``torch.load`` reads from ``path`` (tensors on the CPU, weights-only unpickling).

    A missing, truncated or foreign file is a UserError naming ``what`` it should have been
    (e.g. "resume state") and the ``remedy`` (e.g. "delete it to start over").
    """
    source = Path(path)
    if not source.is_file():
        raise UserError(f"{what} {source} not found; {remedy}")
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message here advises weights_only=False, which is no advice for a user
        reason = "damaged, or not a file squeezr wrote"
        raise UserError(f"cannot read {what} {source} ({reason}); {remedy}") from None
    except Exception as exc:  # a truncated archive, an I/O error, ...
        text = str(exc).strip()
        reason = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
        raise UserError(f"cannot read {what} {source} ({reason}); {remedy}") from None
