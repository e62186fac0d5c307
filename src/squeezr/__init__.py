"""squeezr: block-by-block pruning of residual networks, with dbx experiment management.

This module deliberately imports nothing heavy: ``import squeezr.dbx`` must not load torch.
Import the pruning modules (``squeezr.models``, ``squeezr.train``, ...) directly.
"""

__version__ = "0.1.0"
