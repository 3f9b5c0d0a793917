"""Manifests from a topology: Strimzi KafkaTopic/KafkaUser, Kubernetes Deployments, systemd units.

Pure functions of the topology (same input, same output). Secrets are never rendered: Deployments
read them from the Secret ``cdx-credentials`` and systemd units from ``/etc/cdx/cdx.env``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from cdx.deploy.acls import Grant, desired_acls
from cdx.deploy.catalog import desired_topics
from cdx.deploy.workloads import METRICS_PORT, TOPOLOGY_PATH, Workload, dns_label, workloads
from cdx.topology.root import Topology

STRIMZI_API = "kafka.strimzi.io/v1beta2"
_RESOURCE = {"TOPIC": "topic", "GROUP": "group", "TRANSACTIONAL_ID": "transactionalId"}
_OPERATION = {"READ": "Read", "WRITE": "Write", "DESCRIBE": "Describe", "DESCRIBE_CONFIGS": "DescribeConfigs"}


def strimzi(topology: Topology, cluster: str) -> list[dict[str, Any]]:
    """A KafkaTopic per topic of the catalog and a KafkaUser (SCRAM-SHA-512, its ACLs) per principal."""
    labels = {"strimzi.io/cluster": cluster}
    docs: list[dict[str, Any]] = []
    for d in desired_topics(topology):
        docs.append({"apiVersion": STRIMZI_API, "kind": "KafkaTopic",
                     "metadata": {"name": dns_label(d.name.replace("_", "-")), "labels": labels},
                     "spec": {"topicName": d.name, "partitions": d.spec.partitions,
                              "replicas": d.spec.replication_factor, "config": dict(d.spec.configs)}})
    by_user: dict[str, list[Grant]] = defaultdict(list)
    for grant in desired_acls(topology):
        by_user[grant.principal.removeprefix("User:")].append(grant)
    for user, grants in sorted(by_user.items()):
        docs.append({"apiVersion": STRIMZI_API, "kind": "KafkaUser",
                     "metadata": {"name": dns_label(user), "labels": labels},
                     "spec": {"authentication": {"type": "scram-sha-512"},
                              "authorization": {"type": "simple", "acls": _strimzi_acls(grants)}}})
    return docs


def _strimzi_acls(grants: list[Grant]) -> list[dict[str, Any]]:
    ops: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for g in grants:
        ops[(g.resource, g.name, g.pattern)].append(_OPERATION[g.operation])
    return [{"resource": {"type": _RESOURCE[r], "name": n, "patternType": p.lower()}, "operations": sorted(o),
             "host": "*"} for (r, n, p), o in sorted(ops.items())]


def kubernetes(topology: Topology, image: str, namespace: str = "cdx", *, ha: bool = False) -> list[dict[str, Any]]:
    """A Deployment per workload (1 replica: each is a single writer or owns its channels), probes on
    the metrics port, topology from the ConfigMap ``cdx-topology``, secrets from ``cdx-credentials``.
    ``ha``: capture and uploads get 2 replicas with ``--ha`` (active + standby) on different nodes,
    replaced one at a time."""
    return [_with_standby(_deployment(w, image, namespace)) if w.standby else _deployment(w, image, namespace)
            for w in workloads(topology, ha=ha)]


def _with_standby(doc: dict[str, Any]) -> dict[str, Any]:
    """Two replicas (active + standby, never on one node), a rolling update that stops one pod at a time."""
    spec = doc["spec"]
    spec["replicas"] = 2
    spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    spec["template"]["spec"]["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": dict(spec["selector"]["matchLabels"])}}}]}}
    return doc


def _deployment(w: Workload, image: str, namespace: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": w.name, "app.kubernetes.io/part-of": "cdx"}
    probe: dict[str, Any] = {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 15}
    container: dict[str, Any] = {
        "name": w.name, "image": image, "command": w.command(),
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        "envFrom": [{"secretRef": {"name": "cdx-credentials"}}],
        **({"env": [{"name": "CDX_KAFKA_PRINCIPAL", "value": w.principal}]} if w.principal else {}),
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "failureThreshold": 4},
        "readinessProbe": {**probe, "initialDelaySeconds": 5},
        "volumeMounts": [{"name": "topology", "mountPath": TOPOLOGY_PATH.rsplit("/", 1)[0], "readOnly": True}],
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": w.name, "namespace": namespace, "labels": labels,
                         "annotations": {"cdx/description": w.description}},
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                     "selector": {"matchLabels": {"app.kubernetes.io/name": w.name}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 60, "containers": [container],
                                           "volumes": [{"name": "topology",
                                                        "configMap": {"name": "cdx-topology"}}]}}}}


def systemd(topology: Topology, cdx_binary: str = "/opt/cdx/bin/cdx", *, ha: bool = False) -> dict[str, str]:
    """``{unit file name: text}``: one service per workload, metrics ports 9400, 9401, ... on the host.
    ``ha``: capture and uploads run with ``--ha``; install their units on a second host for the standby."""
    units = {}
    for index, w in enumerate(workloads(topology, ha=ha)):
        command = " ".join([cdx_binary, *w.command(METRICS_PORT + index)[1:]])
        units[f"{w.name}.service"] = "\n".join([
            "[Unit]", f"Description=cdx: {w.description}", "After=network-online.target",
            "Wants=network-online.target", "", "[Service]", "Type=simple", "User=cdx",
            "EnvironmentFile=/etc/cdx/cdx.env",
            *([f"Environment=CDX_KAFKA_PRINCIPAL={w.principal}"] if w.principal else []),
            "StateDirectory=cdx", f"ExecStart={command}",
            "Restart=always", "RestartSec=5", "KillSignal=SIGTERM", "TimeoutStopSec=60", "",
            "[Install]", "WantedBy=multi-user.target", ""])
    return units
