from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient

from app.demo import write_demo_weights
from app.http_limits import uvicorn_config
from app.main import create_app
from app.settings import Settings


# Defined here, once: a session fixture imported into several modules is one instance per module
# (each a 570 MB folder kept until the session ends).
@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """Demo weights (random models in upstream's layout, every version) shared by the HTTP tests;
    read-only: a test that changes a weights root makes its own."""
    root = tmp_path_factory.mktemp("demo-weights")
    write_demo_weights(root, seed=0)
    return root


@pytest.fixture(scope="session")
def names(demo_root):
    """The demo root's weight choices, as ``/change_choices`` lists them."""
    with TestClient(create_app(Settings(weights_root=demo_root))) as c:
        return c.post("/change_choices").json()


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


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free local port for the block; yields its base URL. For tests
    that need a real connection (a client that disconnects, curl)."""
    # The server the CLI runs (uvicorn_config: head and body limits), on a free port.
    server = uvicorn.Server(uvicorn_config(app, app.state.settings, host="127.0.0.1", port=0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
