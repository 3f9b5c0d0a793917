"""The whole pipeline on the secured 3-broker cluster, every role logged in as its own principal.

:func:`start_pipeline` builds the demo's world (seeded SQLite HQ, six channels, two offline
registers) under a topology with ``replication_factor: 3``, ``manage_topics: false``, SASL_SSL +
SCRAM-SHA-512 and one principal per role, channel and register; runs ``cdx kafka apply`` as the
administrator; then starts the real processes, each with only the secrets it needs:

- ``capture``, ``router`` and ``hq-upload-sink`` with ``CDX_KAFKA_PRINCIPAL`` set to their role;
- one ``cdx sink`` serving all eight databases and one ``cdx channel upload`` serving all six
  channels, without ``CDX_KAFKA_PRINCIPAL``: each channel's clients log in as that channel, and the
  process's topology control clients (revisions, role reports) as its first channel by owner id.

``kafka.security`` itself logs in as ``cdx-nobody``, a user without any ACL: a client that fell
back to it instead of its own identity would be refused, and the pipeline would not converge.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cdx.demo.environment import DemoEnv
from cdx.demo.processes import ProcessGroup, Role
from cdx.dialects import connect, get_dialect
from cdx.infra.kafka.secure import ADMIN_PASSWORD, ADMIN_USER, SecureCluster
from cdx.topology import load_topology
from cdx.topology.dump import data_to_yaml, topology_to_data
from cdx.verify import verify_channel

ROOT = Path(__file__).resolve().parents[2]
NOBODY = ("cdx-nobody", "nobody-pw")
ROLE_USERS = {"capture": ("cdx-capture", "capture-pw"), "router": ("cdx-router", "router-pw"),
              "upload_sink": ("cdx-hq-upload", "hq-upload-pw")}


def secret_var(who: str) -> str:
    """The environment variable holding ``who``'s password (``store-0001`` -> ``CDX_PW_STORE_0001``)."""
    return "CDX_PW_" + "".join(c if c.isalnum() else "_" for c in who.upper())


def owner_ids() -> list[str]:
    """Every channel and offline register of the root topology."""
    return [d.owner_id for d in load_topology(ROOT / "topology.yaml", environ={}).databases()]


def cluster_users(owners: list[str]) -> dict[str, str]:
    """The SCRAM users the cluster needs (created when its storage is formatted)."""
    return {NOBODY[0]: NOBODY[1], **dict(ROLE_USERS.values()), **{o: f"{o}-pw" for o in owners}}


@dataclass
class Pipeline:
    env: DemoEnv
    cluster: SecureCluster
    group: ProcessGroup
    passwords: dict[str, str]
    """Owner id or role -> current password (a rotation changes it)."""
    sales: list[str] = field(default_factory=list)

    @property
    def owners(self) -> list[str]:
        return [d.owner_id for d in self.env.topology.databases()]

    @property
    def channels(self) -> list[str]:
        return [c.channel.id for c in self.env.topology.channels()]

    def role_env(self, secrets: list[str], principal: str | None = None) -> dict[str, str]:
        """The processes' environment with only the passwords of ``secrets`` (roles or owner ids)."""
        env = {k: v for k, v in self.env.env.items() if not k.startswith("CDX_PW_")}
        env.update({"CDX_KAFKA_USER": NOBODY[0], "CDX_KAFKA_PASSWORD": NOBODY[1], "PYTHONUNBUFFERED": "1"})
        env.pop("CDX_KAFKA_PRINCIPAL", None)
        env.update({secret_var(s): self.passwords[s] for s in secrets})
        if principal:
            env["CDX_KAFKA_PRINCIPAL"] = principal
        return env

    def admin_env(self) -> dict[str, str]:
        return {**self.role_env([]), "CDX_KAFKA_USER": ADMIN_USER, "CDX_KAFKA_PASSWORD": ADMIN_PASSWORD}

    def start(self, name: str) -> Role:
        """Start one role (``capture``, ``router``, ``sink``, ``upload``, ``hq-upload-sink``) as its own process."""
        args, secrets, principal = {
            "capture": (["capture"], ["capture"], "capture"),
            "router": (["route", "--datadir", str(self.env.run_dir / "router")], ["router"], "router"),
            "sink": (["sink"], self.owners, None),
            "upload": (["channel", "upload"], self.channels, None),
            "hq-upload-sink": (["hq", "upload-sink"], ["upload_sink"], "upload_sink"),
        }[name]
        self.group.env = self.role_env(secrets, principal)
        return self.group.start(name, args)

    def restart(self, name: str) -> None:
        self.group.stop(name)
        self.start(name)


def write_topology(env: DemoEnv, cluster: SecureCluster) -> Path:
    """The demo topology on the secured cluster, with a principal per role, channel and register."""
    data = topology_to_data(env.topology)
    owners = [d.owner_id for d in env.topology.databases()]
    data["kafka"].update({
        "bootstrap_servers": cluster.bootstrap, "replication_factor": 3, "default_partitions": 3,
        "manage_topics": False,
        "security": {"security.protocol": "SASL_SSL", "ssl.ca.location": cluster.ca_file,
                     "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "${CDX_KAFKA_USER}",
                     "sasl.password": "${CDX_KAFKA_PASSWORD}"},
        "principals": {
            **{role: {"username": user, "password": f"${{{secret_var(role)}:-}}"}
               for role, (user, _) in ROLE_USERS.items()},
            "channels": {o: {"username": o, "password": f"${{{secret_var(o)}:-}}"} for o in owners}},
    })
    path = env.run_dir / "topology.yaml"
    path.write_text(data_to_yaml(data))
    return path


def cli(env: Mapping[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, "-m", "cdx.cli.main", *args], env=dict(env), capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"cdx {' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done.stdout


def start_pipeline(cluster: SecureCluster, state: Path, scale: float = 0.02) -> Pipeline:
    """Seed, write the secured topology, ``cdx kafka apply`` as the administrator, start every role."""
    env, _ = DemoEnv.create(ROOT / "topology.yaml", state, cluster.bootstrap, None, scale, seed=7)
    env.topology_path = write_topology(env, cluster)
    env.env["CDX_TOPOLOGY"] = str(env.topology_path)
    users = cluster_users([d.owner_id for d in env.topology.databases()])
    passwords = {role: pw for role, (_, pw) in ROLE_USERS.items()}
    passwords.update({d.owner_id: users[d.owner_id] for d in env.topology.databases()})
    pipe = Pipeline(env, cluster, ProcessGroup(env.run_dir / "logs", env.env), passwords)
    env.topology = load_topology(env.topology_path, environ=pipe.admin_env())
    cli(pipe.admin_env(), "kafka", "apply")
    deadline = time.monotonic() + 60  # the brokers see new ACLs a moment after the controller took them
    while subprocess.run([sys.executable, "-m", "cdx.cli.main", "kafka", "plan"], env=pipe.admin_env(),
                         capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "cdx kafka plan still shows drift 60 s after apply"
        time.sleep(1)
    cli(pipe.admin_env(), "hq", "enable-tracking")
    for name in ("capture", "router", "sink", "upload", "hq-upload-sink"):
        pipe.start(name)
    return pipe


def stop_pipeline(pipe: Pipeline) -> None:
    pipe.group.stop_all(timeout=30)


def tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def restart_dead(pipe: Pipeline, supervise: list[str] | None) -> None:
    """A role that exited fails the test (``supervise`` None), or is started again, as systemd's
    ``Restart=always`` or Kubernetes would (``cdx deploy export`` sets both up), and
    ``"<role> (exit code N): <last log line>"`` is appended to ``supervise``."""
    for role in pipe.group.failed():
        if supervise is None:
            raise AssertionError(f"{role.name} exited ({role.proc.returncode}):\n{tail(role.log)}")
        last = (role.log.read_text(errors="replace").strip().splitlines() or [""])[-1]
        supervise.append(f"{role.name} (exit code {role.proc.returncode}, {time.strftime('%H:%M:%S')}): {last[:300]}")
        pipe.start(role.name)


def wait_until(pipe: Pipeline, check: Callable[[], str | None], timeout: float, what: str,
               supervise: list[str] | None = None) -> None:
    """Until ``check()`` returns None (else what is still wrong); fails with the roles' logs. A role that
    exits meanwhile fails it too, or is restarted with ``supervise`` (see :func:`restart_dead`)."""
    deadline = time.monotonic() + timeout
    wrong: str | None = "not checked yet"
    while time.monotonic() < deadline:
        restart_dead(pipe, supervise)
        wrong = check()
        if wrong is None:
            return
        time.sleep(2)
    logs = "\n".join(f"--- {r.name}\n{tail(r.log)}" for r in pipe.group.roles.values())
    raise AssertionError(f"{what} not reached in {timeout:.0f}s: {wrong}\n{logs}")


def channels_differ(pipe: Pipeline) -> str | None:
    """None when every channel and register database equals HQ's scoped view, else the first difference."""
    hq = pipe.env.hq()
    try:
        for owner in pipe.owners:
            db = pipe.env.database(owner)
            conn = connect(db.dialect, db.dsn)
            try:
                report = verify_channel(hq, pipe.env.hq_dialect, conn, get_dialect(db.dialect), pipe.env.topology,
                                        owner)
            except Exception as exc:  # a table the sink has not created yet
                return f"{owner}: {type(exc).__name__}: {exc}"
            finally:
                conn.close()
            if not report.ok:
                return f"{owner}: {report.summary()}"
        return None
    finally:
        hq.close()


def sales_at_hq(pipe: Pipeline) -> list[str]:
    hq, d = pipe.env.hq(), pipe.env.hq_dialect
    try:
        table, col = d.qualified("dbo", "RETAILTRANSACTIONTABLE"), d.quote_ident("TRANSACTIONID")
        rows = hq.execute(f"SELECT {col} FROM {table}").fetchall()
        hq.rollback()
        return [r[0] for r in rows]
    finally:
        hq.close()


def sales_differ(pipe: Pipeline) -> str | None:
    """None when HQ holds every sale written in the channels exactly once."""
    ids = sales_at_hq(pipe)
    missing, dupes = set(pipe.sales) - set(ids), len(ids) - len(set(ids))
    extra = set(ids) - set(pipe.sales)
    if missing or dupes or extra:
        return f"{len(missing)} sales missing at HQ, {dupes} duplicates, {len(extra)} unknown ({len(ids)} rows)"
    return None


def settle(pipe: Pipeline, timeout: float = 600, supervise: list[str] | None = None) -> None:
    """Every channel equal to HQ and every sale at HQ once (the load must have stopped)."""
    wait_until(pipe, lambda: sales_differ(pipe) or channels_differ(pipe), timeout, "convergence", supervise)
