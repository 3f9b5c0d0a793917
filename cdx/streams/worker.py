"""Run one router worker in-process: ``run(path)`` blocks until SIGTERM/SIGINT (or a crash)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from cdx.errors import ConfigError
from cdx.streams.routing import RoutingPlan
from cdx.topology import default_topology_path
from cdx.topology.live import LiveTopology


def _exit(_signum: int, _frame: object) -> None:
    sys.exit(0)


def run(path: Path | None = None, *, datadir: Path | None = None, loglevel: str = "info",
        web_port: int | None = None, reload_interval: float = 1.0, session_timeout: float = 10.0,
        instance_id: str | None = None, engine: str = "transactional", key_store: str = "memory") -> int:
    """Run one router worker: ``engine`` ``transactional`` (``cdx.streams.engine``, the default) or ``faust``.

    The transactional engine keeps its key state in ``key_store`` (``memory`` or ``sqlite``, a file
    in ``datadir``). For faust: load the topology, build the faust app (``cdx.streams.app.build``) and run its worker.

    Returns the worker's exit code. When a topology change needs a restart (new source topics,
    another Kafka), the worker stops gracefully and the process re-executes itself.
    """
    if engine not in ("transactional", "faust"):
        raise ConfigError(f"unknown router engine {engine!r}: use transactional or faust")
    if engine == "transactional":
        logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("cdx.kafka.librdkafka").setLevel(logging.WARNING)
    # until the engine installs its handlers, SIGTERM/SIGINT just end the process (nothing consumed yet)
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    p = path if path is not None else default_topology_path()
    if engine == "faust":
        return _run_faust(p, datadir=datadir, loglevel=loglevel, web_port=web_port, reload_interval=reload_interval,
                          session_timeout=session_timeout, instance_id=instance_id)
    from cdx.streams.engine import Engine

    live = LiveTopology.start(p, "router", [], interval=reload_interval)
    topology = live.current
    if not RoutingPlan(topology).source_topics:
        raise ConfigError("the topology has no download subjob: nothing to route")
    if key_store not in ("memory", "sqlite"):
        raise ConfigError(f"unknown key store {key_store!r}: use memory or sqlite")
    if key_store == "sqlite" and datadir is None:
        raise ConfigError("--key-store sqlite keeps its file in --datadir: give one")
    return Engine(topology, datadir=datadir, instance_id=instance_id, session_timeout=session_timeout,
                  reload_interval=reload_interval, key_store=key_store, live=live).run()


def _run_faust(path: Path, *, datadir: Path | None, loglevel: str, web_port: int | None, reload_interval: float,
               session_timeout: float, instance_id: str | None) -> int:
    import faust

    from cdx.streams.app import build

    live = LiveTopology.start(path, "router", [instance_id or f"faust-{os.getpid()}"], interval=reload_interval)
    own_datadir = datadir is None
    if datadir is None:
        datadir = Path(tempfile.mkdtemp(prefix="cdx-router-"))
    rt = build(live.current, live=live, datadir=datadir, web_port=web_port, reload_interval=reload_interval,
               session_timeout=session_timeout, instance_id=instance_id)
    worker = faust.Worker(rt.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    code: int = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        rt.router.close()
        live.close()
        if own_datadir:
            shutil.rmtree(datadir, ignore_errors=True)
    if rt.restart and code == 0:
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return code
