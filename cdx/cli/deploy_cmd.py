"""``cdx deploy export``: manifests for the topology (Strimzi, Kubernetes, systemd)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import typer

from cdx.cli.app import console, user_errors
from cdx.cli.common import TOPOLOGY_OPTION, load
from cdx.errors import ConfigError

app = typer.Typer(help="Deployment manifests from the topology.", no_args_is_help=True)
FORMATS = ("strimzi", "kubernetes", "systemd")


@app.callback()
def deploy() -> None:
    """Deployment manifests from the topology."""


def _yaml(docs: list[dict[str, Any]]) -> str:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    yaml.representer.ignore_aliases = lambda *_: True  # repeated probes written out, no &anchors
    out = io.StringIO()
    yaml.dump_all(docs, out)
    return out.getvalue()


def _check_names(fmt: str, cluster: str, namespace: str, image: str) -> None:
    """``ConfigError`` for a Kubernetes name (RFC 1123 label) or image the manifests could not use."""
    import re

    names = {"strimzi": [("--cluster", cluster)], "kubernetes": [("--namespace", namespace)]}.get(fmt, [])
    for option, value in names:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value):
            raise ConfigError(f"{option} {value!r} is not a Kubernetes name: use at most 63 lower-case letters,"
                              " digits and '-', starting and ending with a letter or digit")
    if fmt == "kubernetes" and (not image or any(c.isspace() for c in image)):
        raise ConfigError(f"--image {image!r} is not a container image reference (e.g. registry/cdx:1.0)")


@app.command("export")
@user_errors
def export(
    topology: Path | None = TOPOLOGY_OPTION,
    fmt: str = typer.Option(..., "--format", "-f", help="strimzi, kubernetes or systemd."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder to write the files to (default: print)."),
    cluster: str = typer.Option("cdx", "--cluster", help="strimzi: the Kafka resource's name."),
    image: str = typer.Option("cdx:latest", "--image", help="kubernetes: the container image with cdx."),
    namespace: str = typer.Option("cdx", "--namespace", help="kubernetes: the namespace."),
    ha: bool = typer.Option(False, "--ha", help="kubernetes/systemd: capture and uploads run with --ha (an active"
                                                " and a standby; Kubernetes: 2 replicas on different nodes)."),
) -> None:
    """Write Strimzi KafkaTopic/KafkaUser resources (with the ACLs of kafka.principals), a Deployment per
    process with probes on its metrics port, or systemd units."""
    from cdx.deploy import manifests

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    _check_names(fmt, cluster, namespace, image)
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: give a folder (created when missing)")
    topo = load(topology)
    if fmt == "systemd":
        files = manifests.systemd(topo, ha=ha)
    else:
        docs = manifests.strimzi(topo, cluster) if fmt == "strimzi" else \
            manifests.kubernetes(topo, image, namespace, ha=ha)
        files = {f"cdx-{fmt}.yaml": _yaml(docs)}
    if out is None:
        for name, text in files.items():
            console.print(f"# {name}\n{text}", markup=False, highlight=False, soft_wrap=True)
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    console.print(f"wrote {len(files)} file(s) to {out}")
