"""``kafka.principals``: one Kafka identity per role, channel and offline register (least privilege).

Passwords are ``${VAR}`` references resolved from the environment at load time; the file holds
no secret. ``cdx kafka plan/apply`` derive each principal's ACLs from the topology
(``cdx.deploy.acls``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cdx.topology.model_base import Model


class KafkaPrincipal(Model):
    """A SASL user: ``username`` is the principal ``User:<username>`` the ACLs name."""

    username: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._@=-]+$")
    password: str = Field(default="", repr=False)
    """Use a ``${VAR}`` reference: the topology file must not hold the secret."""
    mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"

    @property
    def principal(self) -> str:
        return f"User:{self.username}"

    def sasl_settings(self) -> dict[str, str]:
        """librdkafka ``sasl.*`` settings of this identity (merge over ``kafka.security``)."""
        return {"sasl.mechanism": self.mechanism, "sasl.username": self.username, "sasl.password": self.password}


class KafkaPrincipals(Model):
    """Who is who on the cluster. A role without an entry uses ``kafka.security`` and gets no ACLs."""

    capture: KafkaPrincipal | None = None
    router: KafkaPrincipal | None = None
    upload_sink: KafkaPrincipal | None = None
    channels: dict[str, KafkaPrincipal] = Field(default_factory=dict)
    """By channel id or offline-register id: that database's sink (and, for a channel, its upload)."""

    def identities(self) -> list[KafkaPrincipal]:
        """Every identity given: the roles', then the channels'."""
        return [p for p in (self.capture, self.router, self.upload_sink, *self.channels.values()) if p is not None]


PRINCIPAL_ENV = "CDX_KAFKA_PRINCIPAL"
ROLES = ("capture", "router", "upload_sink")


def channel_identity(principals: KafkaPrincipals | None, owner_id: str) -> KafkaPrincipal | None:
    """The identity ``principals.channels`` gives a channel or offline register (ids compare
    case-insensitively, as everywhere in the topology), or None."""
    if principals is None:
        return None
    return next((p for key, p in principals.channels.items() if key.casefold() == owner_id.casefold()), None)


def identity_of(principals: KafkaPrincipals | None, who: str) -> KafkaPrincipal:
    """The identity ``who`` names: a role (capture, router, upload_sink) or a channel/register id.
    ``ValueError`` (naming the choices) when the topology gives it none."""
    found = getattr(principals, who, None) if who in ROLES else None
    if found is None and who not in ROLES:
        found = channel_identity(principals, who)
    if found is None:
        known = [] if principals is None else [r for r in ROLES if getattr(principals, r) is not None]
        known += [] if principals is None else sorted(principals.channels)
        raise ValueError(f"{PRINCIPAL_ENV}={who}: kafka.principals has no such identity (known:"
                         f" {', '.join(known) or 'none'}); add it to kafka.principals or unset {PRINCIPAL_ENV}")
    return found
