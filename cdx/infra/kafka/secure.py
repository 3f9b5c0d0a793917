"""A local single-node Kafka with SASL/SCRAM-SHA-512 and the StandardAuthorizer (ACLs enforced).

``SecureCluster.load().up()`` starts it on ``CDX_KAFKA_SASL_PORT`` (default: the single broker's
port + 10; controller + 60) with its own storage under ``<state>/kafka/sasl-1``;
``SecureCluster.load(tls=True)`` a SASL_SSL one on the next port (storage ``sasl-ssl-1``, certificates
generated for it by ``cdx.infra.kafka.tls``; clients trust ``ca_file``). ``SecureCluster.load(3, tls=True)``
is the 3-node SASL_SSL cluster (storage ``sasl-ssl-3``) on ``CDX_KAFKA_SECURE_CLUSTER_PORT`` (default: the
plaintext cluster's port + 10, i.e. three broker ports and controllers + 50), replication factor 3 and
``min.insync.replicas`` 2 by default, brokers talking to each other over SASL_SSL as the administrator.
The administrator ``admin`` (a super user) and any ``users`` are SCRAM users created when the storage is formatted;
more users can be added at run time with :func:`upsert_scram_users`. No ACL means no access
(``allow.everyone.if.no.acl.found=false``). The controller listener is PLAINTEXT on 127.0.0.1 and
its ANONYMOUS principal is a super user (the broker's own connection to its controller).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cdx.infra.kafka.launcher import CLUSTER_PORT, SINGLE_PORT, Cluster, Node, nodes

SASL_PORT = int(os.environ.get("CDX_KAFKA_SASL_PORT", str(SINGLE_PORT + 10)))
SECURE_CLUSTER_PORT = int(os.environ.get("CDX_KAFKA_SECURE_CLUSTER_PORT", str(CLUSTER_PORT + 10)))
MECHANISM = "SCRAM-SHA-512"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-secret"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@dataclass(frozen=True)
class SecureCluster(Cluster):
    users: Mapping[str, str] = field(default_factory=dict)
    tls: bool = False

    @classmethod
    def load(cls, size: int = 1, users: Mapping[str, str] | None = None, tls: bool = False) -> SecureCluster:
        # the 3-node cluster: SASL_SSL on ports base..base+2, SASL_PLAINTEXT on base+3..base+5
        port = SASL_PORT + (1 if tls else 0) if size == 1 else SECURE_CLUSTER_PORT + (0 if tls else 3)
        return cls(size=size, nodes=nodes(size, "sasl-ssl" if tls else "sasl", port), users=dict(users or {}),
                   tls=tls)

    @property
    def protocol(self) -> str:
        return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"

    @property
    def ca_file(self) -> str:
        return str(self.home / "tls" / "ca.pem")

    def client_config(self) -> dict[str, str]:
        return {**sasl_client(ADMIN_USER, ADMIN_PASSWORD), **self.client_security(),
                "bootstrap.servers": self.bootstrap}

    def client_security(self) -> dict[str, str]:
        """``security.protocol`` (and the CA to trust, with TLS) for any user of this cluster."""
        if not self.tls:
            return {"security.protocol": self.protocol}
        return {"security.protocol": self.protocol, "ssl.ca.location": self.ca_file}

    def up(self, timeout: float = 90.0) -> str:
        if self.tls:
            from cdx.infra.kafka.tls import ensure_certificates

            ensure_certificates(self.home / "tls")
        return super().up(timeout)

    def _format_args(self) -> list[str]:
        users = {ADMIN_USER: ADMIN_PASSWORD, **self.users}
        return [arg for name, password in users.items()
                for arg in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")]

    def _properties(self, node: Node) -> str:
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN_USER}"'
                f' password="{ADMIN_PASSWORD}";')
        proto = self.protocol
        plain = super()._properties(node).replace("PLAINTEXT://", f"{proto}://")
        plain = plain.replace("inter.broker.listener.name=PLAINTEXT", f"inter.broker.listener.name={proto}")
        plain = plain.replace("listener.security.protocol.map=PLAINTEXT:PLAINTEXT,",
                              f"listener.security.protocol.map={proto}:{proto},")
        tls = [] if not self.tls else [
            "ssl.keystore.type=PEM", f"ssl.keystore.location={self.home / 'tls' / 'broker.pem'}",
            "ssl.truststore.type=PEM", f"ssl.truststore.location={self.ca_file}",
            "ssl.endpoint.identification.algorithm=https"]
        return plain + "\n".join([
            *tls,
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.{proto.lower()}.scram-sha-512.sasl.jaas.config={jaas}",
            f"authorizer.class.name={AUTHORIZER}",
            f"super.users=User:{ADMIN_USER};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
            "",
        ])


def sasl_client(username: str, password: str) -> dict[str, str]:
    """librdkafka settings to log in as ``username`` on the secured cluster (SASL_PLAINTEXT; merge
    ``SecureCluster.client_security()`` over them for TLS)."""
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
