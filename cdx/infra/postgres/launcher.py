"""A PostgreSQL server for development, tests and the demo.

``ensure()`` returns a DSN: ``$CDX_PG_DSN`` when set; else a local server that
answers and accepts us; else a private cluster it creates under the state
directory (``.cdx/postgres``), on its own port (``$CDX_PG_PORT``, default 25432),
installing Debian's ``postgresql`` package first when no server binaries exist.
Idempotent: calling it again reuses the running cluster.

Logical decoding (``wal_level = logical``), which Debezium's PostgreSQL source needs (the peer benchmark,
``bench/peer_debezium.py``): a private cluster is created with it. ``up(logical=True)`` (``python -m
cdx.infra.postgres up --logical``) also makes sure the server has it: a private cluster created before that
setting existed gets ``ALTER SYSTEM SET wal_level = logical`` and one fast restart (open connections to it
are closed); a server this launcher did not start (``$CDX_PG_DSN``, port 5432) is never restarted, it gets a
clear error saying what to change instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from cdx.errors import FatalError
from cdx.infra.paths import state_dir

DEFAULT_PORT = 25432
SUPERUSER = "postgres"


class PostgresError(FatalError, RuntimeError):
    """The launcher could not provide a server; the message says why and what to do (a ``FatalError``:
    a ``cdx`` command reports it as one ``error:`` line)."""


def _port() -> int:
    return int(os.environ.get("CDX_PG_PORT", DEFAULT_PORT))


def private_dsn(port: int | None = None, dbname: str = "postgres") -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port or _port()}/{dbname}"


def answers(dsn: str, timeout: float = 2.0) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(timeout)), autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).resolve().parent if which else None


def _install_package() -> None:
    if os.geteuid() != 0:
        raise PostgresError("PostgreSQL server binaries are missing: run `sudo apt-get install -y postgresql`"
                            " or set CDX_PG_DSN to an existing server.")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def _cluster_dir() -> Path:
    return state_dir() / "postgres"


def _as_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run the server tools as the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", SUPERUSER, "--", *argv]
    return argv


def _pg_ctl(bindir: Path, data: Path, *args: str, check: bool = True) -> None:
    subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), *args]), check=check,
                   stdout=subprocess.DEVNULL)


def _give_to_owner(path: Path) -> None:
    """Running as root: ``path`` belongs to the ``postgres`` user (the server's)."""
    if os.geteuid() == 0:
        user = pwd.getpwnam(SUPERUSER)
        os.chown(path, user.pw_uid, user.pw_gid)


def _prepare_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    _give_to_owner(path)
    if os.geteuid() == 0:
        # every parent must be traversable by the server's user
        for parent in path.parents:
            if parent == Path("/"):
                break
            if not parent.stat().st_mode & 0o001:
                raise PostgresError(
                    f"{parent} is not traversable by the 'postgres' user; set CDX_STATE_DIR to a folder"
                    " outside it (for example /var/tmp/cdx) or set CDX_PG_DSN to an existing server.")


def up(logical: bool = False) -> str:
    """Ensure a server answers and return its DSN (see module docstring); with ``logical``, one whose
    ``wal_level`` is ``logical`` (a private cluster is restarted once to get it, if it must)."""
    dsn, private = os.environ.get("CDX_PG_DSN"), False
    if dsn and not answers(dsn, timeout=5):
        raise PostgresError(f"CDX_PG_DSN is set but the server does not answer: {dsn}")
    if not dsn:
        own, local = private_dsn(), "postgresql://postgres@127.0.0.1:5432/postgres"
        if answers(own):
            dsn, private = own, True
        elif answers(local, timeout=1):
            dsn = local
        else:
            return _start_private()
    return _require_logical(dsn, private) if logical else dsn


def wal_level(dsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SHOW wal_level").fetchone()
    return str(row[0]) if row else ""


def _require_logical(dsn: str, private: bool) -> str:
    """``dsn`` once its server runs with ``wal_level = logical``: restart the private cluster for it; refuse
    (with the fix) for a server this launcher did not start."""
    level = wal_level(dsn)
    if level == "logical":
        return dsn
    if not private:
        raise PostgresError(
            f"the PostgreSQL server at {dsn} runs with wal_level = {level}; logical decoding needs"
            " wal_level = logical: set it in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and"
            " restart that server, or unset CDX_PG_DSN to use the private cluster")
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET wal_level = logical")
    bindir = _bindir()
    root = _cluster_dir()
    if bindir is None:
        raise PostgresError("pg_ctl is missing: cannot restart the private cluster for wal_level = logical")
    _pg_ctl(bindir, root / "data", "-l", str(root / "server.log"), "-m", "fast", "-w", "-t", "60", "restart")
    _wait_answers(dsn, root / "server.log")
    if wal_level(dsn) != "logical":
        raise PostgresError(f"the private cluster restarted without wal_level = logical; see {root / 'server.log'}")
    return dsn


def _wait_answers(dsn: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not answers(dsn):
        if time.monotonic() > deadline:
            raise PostgresError(f"the private PostgreSQL cluster did not answer; see {log}")
        time.sleep(0.2)


def _start_private() -> str:
    bindir = _bindir()
    if bindir is None:
        _install_package()
        bindir = _bindir()
        if bindir is None:
            raise PostgresError("apt-get installed postgresql but no pg_ctl was found under /usr/lib/postgresql")
    root = _cluster_dir()
    data, run, log = root / "data", root / "run", root / "server.log"
    for path in (root, run):
        _prepare_dir(path)
    if not (data / "PG_VERSION").exists():
        if data.exists():
            shutil.rmtree(data)
        _prepare_dir(data)
        subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                                  "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, stdout=subprocess.DEVNULL)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# cdx private cluster\n"
                f"port = {_port()}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{run}'\n"
                "max_connections = 400\nshared_buffers = 256MB\nmax_wal_size = 2GB\n"
                "max_prepared_transactions = 0\n"
                "# logical decoding for Debezium's PostgreSQL source (bench/peer_debezium.py)\n"
                "wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n"
            )
    if os.geteuid() == 0:
        log.touch()
        _give_to_owner(log)
    _pg_ctl(bindir, data, "-l", str(log), "-w", "-t", "60", "start")
    dsn = private_dsn()
    _wait_answers(dsn, log)
    return dsn


def down() -> bool:
    """Stop the private cluster if it runs. Never touches a server it did not start."""
    bindir = _bindir()
    data = _cluster_dir() / "data"
    if bindir is None or not (data / "postmaster.pid").exists():
        return False
    _pg_ctl(bindir, data, "-m", "fast", "-w", "stop", check=False)
    return True


def status() -> dict[str, object]:
    own = private_dsn()
    return {"dsn": own, "running": answers(own), "data": str(_cluster_dir() / "data"),
            "log": str(_cluster_dir() / "server.log")}


def create_database(admin_dsn: str, name: str) -> str:
    """Create database ``name`` (dropping an old one of that name); return its DSN."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})
