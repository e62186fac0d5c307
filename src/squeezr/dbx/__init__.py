"""dbx: experiment management that works from any Python script or the shell.

Pure Python: importing this package must never import torch or pandas (tested).
See docs/dbx.md (user guide), docs/dbx-format.md (on-disk format) and
../shared/spec/dbx.md.
"""

from squeezr.dbx.frames import frame
from squeezr.dbx.store import Experiment, Repository, create, open, resume

__all__ = ["Experiment", "Repository", "create", "frame", "open", "resume"]
