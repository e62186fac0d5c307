"""Shared fixtures for dbx tests: a fresh repository and an environment without $DBX_REPO."""

from __future__ import annotations

from pathlib import Path

import pytest

from squeezr import dbx


@pytest.fixture(autouse=True)
def _no_dbx_repo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not pick up a repository from the developer's environment."""
    monkeypatch.delenv("DBX_REPO", raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> dbx.Repository:
    """An empty repository at ``tmp_path / "experiments"``."""
    return dbx.Repository.init(tmp_path / "experiments")
