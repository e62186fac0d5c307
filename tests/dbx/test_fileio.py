"""Crash-safe writes: a temporary file beside the target, renamed over it or removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from squeezr.dbx.fileio import atomic_path, atomic_write, file_matches


def test_atomic_write_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    atomic_write(target, "old")
    atomic_write(target, b"new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["results.json"]


def test_atomic_path_removes_the_temporary_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_text("kept")
    with pytest.raises(RuntimeError, match="export failed"), atomic_path(target) as tmp:
        tmp.write_text("half")
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.pt.")
        raise RuntimeError("export failed")
    assert target.read_text() == "kept" and os.listdir(tmp_path) == ["model.pt"]


def test_files_get_the_mode_of_the_umask_at_write_time(tmp_path: Path) -> None:
    code = (
        "import os, sys; from pathlib import Path; "
        "from squeezr.dbx.fileio import atomic_write; "
        "modes = []\n"
        "for mask in (0o077, 0o002):\n"
        "    os.umask(mask); path = Path(sys.argv[1], oct(mask))\n"
        "    atomic_write(path, 'x'); modes.append(oct(path.stat().st_mode & 0o777))\n"
        "print(*modes)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["0o600", "0o664"]


def test_file_matches_checks_size_and_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_matches(path, 3, digest)
    assert not file_matches(path, 4, digest)
    assert not file_matches(path, 3, "0" * 64)
