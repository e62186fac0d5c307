"""``dbx sync SRC DST``: copy experiments between repositories, local folders or servers.

``plan.py`` decides, purely, what to copy from two inventories; ``local.py`` and ``http.py``
are the transports (a folder, a server); ``apply.py`` carries a plan out. Every action is
idempotent, so a sync that is interrupted is simply run again. Merge rules: docs/dbx.md.
"""

from squeezr.dbx.sync.apply import sync, transport

__all__ = ["sync", "transport"]
