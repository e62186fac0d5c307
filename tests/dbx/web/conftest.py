"""Fixtures of the web UI page tests: the sample repository and the UI app over it."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from web_sample import TOKEN, build_repository

from squeezr import dbx
from squeezr.dbx.server.web import LocalSource, create_app


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dbx.Repository:
    return build_repository(tmp_path_factory.mktemp("web") / "experiments")


@pytest.fixture
def client(sample: dbx.Repository) -> TestClient:
    """A test client that carries the token."""
    app = create_app(LocalSource(sample.path), TOKEN)
    return TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})
