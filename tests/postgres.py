"""A throwaway PostgreSQL server for tests, as replicas sharing ``GSV_DATABASE_URL`` use one.

``initdb`` in a temp folder, trust auth, 127.0.0.1 on a free port and a unix socket in that folder;
stopped and removed at the end. Its binaries are required, not optional: without them the test fails
(CI's ``.ci/run`` installs them). initdb and postgres refuse to run as root; as root they run as the
``postgres`` system user, or ``nobody`` where there is none.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

PG_USER = "gsv"  # the server's superuser (initdb -U), trusted without a password


def _pg_bin() -> Path:
    """The folder of ``initdb``/``pg_ctl``: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if candidates and (candidates[-1] / "pg_ctl").exists():
        return candidates[-1]
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) are not installed: neither on PATH nor under "
        "/usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: apt-get install postgresql; .ci/run does).",
        pytrace=False,
    )


def _server_user() -> str | None:
    """Who runs the server: ``None`` (this user) unless this is root, which postgres refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    pytest.fail(
        "running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL", pytrace=False
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], user: str | None, cwd: Path, log: Path | None = None) -> None:
    command = (["runuser", "-u", user, "--"] if user else []) + args
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=90)
    if result.returncode != 0:
        server_log = log.read_text(errors="replace") if log and log.exists() else ""
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}\n{server_log}",
            pytrace=False,
        )


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A running throwaway server for the block; yields its base URL (plain ``postgresql://``, no
    database: see :func:`create_database`)."""
    bin_dir = _pg_bin()
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="gsv-pg-"))  # short: a unix socket's path has ~100 bytes
    data, log = root / "data", root / "server.log"
    if user:
        info = pwd.getpwnam(user)
        os.chown(root, info.pw_uid, info.pw_gid)
    port = free_port()
    started = False
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER, "-E", "UTF8",
              "--locale=C", "--no-sync"], user, root)  # fmt: skip
        options = f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
             user, root, log)  # fmt: skip
        started = True
        yield f"postgresql://{PG_USER}@127.0.0.1:{port}"
    finally:
        if started:
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], user, root, log)
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: str, name: str) -> str:
    """A fresh, empty database ``name`` on ``server`` (dropped first if it exists); its URL."""
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"
