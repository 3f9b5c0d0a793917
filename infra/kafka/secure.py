"""A local single-node Kafka with SASL/SCRAM-SHA-512 and the StandardAuthorizer (ACLs enforced).

``SecureCluster.load().up()`` starts it on ``CDX_KAFKA_SASL_PORT`` (default: the single broker's
port + 10; controller + 60) with its own storage under ``<state>/kafka/sasl-1``. The administrator
``admin`` (a super user) and any ``users`` are SCRAM users created when the storage is formatted;
more users can be added at run time with :func:`upsert_scram_users`. No ACL means no access
(``allow.everyone.if.no.acl.found=false``). The controller listener is PLAINTEXT on 127.0.0.1 and
its ANONYMOUS principal is a super user (the broker's own connection to its controller).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from infra.kafka.launcher import SINGLE_PORT, Cluster, Node
from infra.paths import state_dir

SASL_PORT = int(os.environ.get("CDX_KAFKA_SASL_PORT", str(SINGLE_PORT + 10)))
MECHANISM = "SCRAM-SHA-512"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-secret"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@dataclass(frozen=True)
class SecureCluster(Cluster):
    users: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, size: int = 1, users: Mapping[str, str] | None = None) -> SecureCluster:
        home = state_dir() / "kafka" / "sasl-1"
        node = Node(node_id=1, broker_port=SASL_PORT, controller_port=SASL_PORT + 50, home=home / "node-1")
        return cls(size=1, nodes=(node,), users=dict(users or {}))

    def client_config(self) -> dict[str, str]:
        return {**sasl_client(ADMIN_USER, ADMIN_PASSWORD), "bootstrap.servers": self.bootstrap}

    def _format_args(self) -> list[str]:
        users = {ADMIN_USER: ADMIN_PASSWORD, **self.users}
        return [arg for name, password in users.items()
                for arg in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")]

    def _properties(self, node: Node) -> str:
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN_USER}"'
                f' password="{ADMIN_PASSWORD}";')
        plain = super()._properties(node).replace("PLAINTEXT://", "SASL_PLAINTEXT://")
        plain = plain.replace("inter.broker.listener.name=PLAINTEXT", "inter.broker.listener.name=SASL_PLAINTEXT")
        plain = plain.replace("listener.security.protocol.map=PLAINTEXT:PLAINTEXT,",
                              "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,")
        return plain + "\n".join([
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={jaas}",
            f"authorizer.class.name={AUTHORIZER}",
            f"super.users=User:{ADMIN_USER};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
            "",
        ])


def sasl_client(username: str, password: str) -> dict[str, str]:
    """librdkafka settings to log in as ``username`` on the secured cluster."""
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": MECHANISM,
            "sasl.username": username, "sasl.password": password}


def upsert_scram_users(admin_config: Mapping[str, str], users: Mapping[str, str], timeout: float = 30.0) -> None:
    """Create or change SCRAM-SHA-512 users (idempotent; also how a password is rotated)."""
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient(dict(admin_config))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    changes: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(name, info, password.encode()) for name, password in users.items()]
    for future in admin.alter_user_scram_credentials(changes, request_timeout=timeout).values():
        future.result(timeout)
