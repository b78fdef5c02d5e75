from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


@pytest.fixture
def weights_root(tmp_path):
    root = tmp_path / "weights"
    root.mkdir()
    return root


@pytest.fixture
def make_client(weights_root):
    clients = []

    def make(**overrides) -> TestClient:
        settings = Settings(weights_root=weights_root, **overrides)
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()
