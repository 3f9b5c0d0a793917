"""Run one router worker in-process: ``run(path)`` blocks until SIGTERM/SIGINT (or a crash)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from cdx.topology import default_topology_path, load_topology


def _exit(_signum: int, _frame: object) -> None:
    sys.exit(0)


def run(path: Path | None = None, *, datadir: Path | None = None, loglevel: str = "info",
        web_port: int | None = None, reload_interval: float = 1.0, session_timeout: float = 10.0,
        instance_id: str | None = None) -> int:
    """Load the topology, build the faust app (``streams.app.build``) and run its worker.

    Returns the worker's exit code. When a topology change needs a restart (new source topics,
    another Kafka), the worker stops gracefully and the process re-executes itself.
    """
    import faust

    from streams.app import build

    # until faust installs its handlers, SIGTERM/SIGINT just end the process (nothing consumed yet)
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    p = path if path is not None else default_topology_path()
    topology = load_topology(p)
    own_datadir = datadir is None
    if datadir is None:
        datadir = Path(tempfile.mkdtemp(prefix="cdx-router-"))
    rt = build(topology, path=p, datadir=datadir, web_port=web_port, reload_interval=reload_interval,
               session_timeout=session_timeout, instance_id=instance_id)
    worker = faust.Worker(rt.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    code: int = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        rt.router.close()
        if own_datadir:
            shutil.rmtree(datadir, ignore_errors=True)
    if rt.restart and code == 0:
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return code
