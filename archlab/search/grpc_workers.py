"""Many workers through Optuna's gRPC storage proxy, started by one command.

Optuna's maintainers point users with many workers to a gRPC storage proxy in front of one
RDB storage (PostgreSQL): the workers talk gRPC to the proxy, the proxy holds the database
connections and caches. ``archlab study run STUDY --storage postgresql://... --workers N
--grpc`` starts the proxy in this process (127.0.0.1, a free port) and N worker processes
that use it (``grpc://127.0.0.1:PORT`` as their storage), then watches them.

The proxy carries no heartbeats, so this process stands in for them: every trial records
the worker that runs it (``worker`` user attribute, a process id); when a worker dies
(killed, out of memory), its running trials are failed and their choices queued again, so
the study loses nothing, and a trial whose choices another trial already holds (complete
or running) is pruned instead of trained twice. ``archlab study serve`` runs a proxy alone,
for workers on other machines.
"""

from __future__ import annotations

import multiprocessing
import socket
import threading
import time
from typing import Any

import optuna

from archlab.errors import ConfigError
from archlab.search.runner import recover

POLL_S = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require_grpc() -> None:
    try:
        import grpc  # noqa: F401
    except ImportError:
        raise ConfigError("--grpc", "needs grpcio (pip install 'archlab[studies]')") from None


def start_proxy(storage: Any, host: str = "127.0.0.1", port: int | None = None) -> int:
    """Optuna's gRPC storage proxy for an RDB storage, served by a daemon thread of this process (it ends with the
    process); its port. Clients wait until it is ready."""
    _require_grpc()
    port = port or free_port()
    thread = threading.Thread(target=optuna.storages.run_grpc_proxy_server, args=(optuna.storages.get_storage(storage),),
                              kwargs={"host": host, "port": port}, daemon=True, name=f"grpc-proxy-{port}")
    thread.start()
    return port


def serve(storage: Any, host: str, port: int) -> None:
    """Run a proxy in the foreground until interrupted (``archlab study serve``)."""
    _require_grpc()
    optuna.storages.run_grpc_proxy_server(optuna.storages.get_storage(storage), host=host, port=port)


def proxy_storage(url: str) -> Any:
    """``grpc://HOST:PORT`` as Optuna's GrpcStorageProxy (waits for the server to be ready)."""
    from optuna.storages import GrpcStorageProxy

    host, _, port = url[len("grpc://"):].partition(":")
    try:
        storage = GrpcStorageProxy(host=host, port=int(port or 13000))
        storage.wait_server_ready(timeout=30)
    except ImportError:
        raise ConfigError("storage", "grpc:// storages need grpcio (pip install 'archlab[studies]')") from None
    except Exception as exc:
        raise ConfigError("storage", f"no gRPC storage proxy answers at {host}:{port} ({type(exc).__name__})") from None
    return storage


def run_grpc_workers(cfg: Any, url: str, *, workers: int, until: int | None, timeout: float | None,
                     log: Any = lambda m: None) -> optuna.Study:
    """Start a proxy for ``url`` and ``workers`` processes on it; recover the trials of any that dies."""
    from archlab.search.runner import open_study, storage_for
    from archlab.search.searches import worker_process

    port = start_proxy(storage_for(cfg, url))
    proxy_url = f"grpc://127.0.0.1:{port}"
    # the proxy thread serves until this process ends
    study = open_study(cfg, proxy_url)
    context = multiprocessing.get_context("spawn")
    procs = {}
    for i in range(workers):
        p = context.Process(target=worker_process, args=(cfg, proxy_url, until, timeout, i))
        p.start()
        procs[p.pid] = p
    done: set[int] = set()
    while len(done) < len(procs):
        time.sleep(POLL_S)
        for pid, p in list(procs.items()):
            if pid in done or p.is_alive():
                continue
            done.add(pid)
            if p.exitcode != 0:
                again = recover(study, pid)
                log(f"worker {pid} exited with {p.exitcode}; trials queued again: {again or 'none'}")
                if len(done) == len(procs) and again:  # nobody left to take them: one more worker
                    q = context.Process(target=worker_process, args=(cfg, proxy_url, until, timeout, len(procs)))
                    q.start()
                    procs[q.pid] = q
    return open_study(cfg, url)  # the storage itself, for whatever reads the result


