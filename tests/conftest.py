"""Shared fixtures: a throw-away PostgreSQL server on 127.0.0.1 for the multi-worker tests."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """Start PostgreSQL (Debian's package; .ci/run installs it) in a temporary cluster."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    bindir = os.path.dirname(bins[-1])
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's default PostgreSQL driver)
    except ImportError:
        pytest.skip("psycopg is not installed")
    root = tempfile.mkdtemp(prefix="archlab-pg-")
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    os.makedirs(sock)
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(as_user + [f"{bindir}/initdb", "-D", data, "-U", "archlab", "--auth=trust"], check=True, capture_output=True)
    subprocess.run(as_user + [f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(root, "log"), "-w", "start", "-o",
                              f"-p {port} -k {sock} -c listen_addresses=127.0.0.1"], check=True, capture_output=True)
    try:
        for _ in range(50):
            if subprocess.run([f"{bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        subprocess.run([f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "archlab", "studies"], check=True,
                       capture_output=True)
        yield f"postgresql://archlab@127.0.0.1:{port}/studies"
    finally:
        subprocess.run(as_user + [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
