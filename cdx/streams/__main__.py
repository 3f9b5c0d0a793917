"""``python -m cdx.streams [--topology PATH] [--datadir DIR]``: same as ``cdx route``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cdx.streams.worker import run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cdx.streams", description="Run a cdx router worker.")
    ap.add_argument("--topology", "-t", type=Path, default=None)
    ap.add_argument("--datadir", type=Path, default=None)
    ap.add_argument("--loglevel", default="info")
    ap.add_argument("--web-port", type=int, default=None)
    ap.add_argument("--reload-interval", type=float, default=1.0)
    ap.add_argument("--session-timeout", type=float, default=10.0)
    ap.add_argument("--instance-id", default=None)
    a = ap.parse_args(argv)
    return run(a.topology, datadir=a.datadir, loglevel=a.loglevel, web_port=a.web_port,
               reload_interval=a.reload_interval, session_timeout=a.session_timeout, instance_id=a.instance_id)


if __name__ == "__main__":
    sys.exit(main())
