"""dbx: experiment management that works from any Python script or the shell.

Pure Python: importing this package must never import torch (tested).
See docs/dbx.md and ../shared/spec/dbx.md.
"""
