"""The ``extensions`` section of ``topology.yaml`` and ``hq.post_upload``: channel database extensions.

``extensions`` says where the extension scripts live (run by ``cdx channel migrate``, and by
``cdx channel init`` / ``cdx channel bootstrap`` before any table is created), which schemas
extensions may use and which they must never touch, the per-script timeout, and the roles
that receive the documented grants on new extension tables (SQL Server and PostgreSQL).
Everything is optional; an empty section means: no scripts, schema ``ext``, protected
``crt``/``ax``/``dbo`` (cdx's own schema ``cdx`` is always protected), no grants.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from cdx.topology.identifiers import Identifier
from cdx.topology.model_base import Model

DEFAULT_EXTENSION_SCHEMAS = ("ext",)
DEFAULT_PROTECTED_SCHEMAS = ("crt", "ax", "dbo")
KERNEL_SCHEMA = "cdx"
"""cdx's own state tables (``cdx.cdx_state``...; SQLite ``cdx_*``): always protected."""
DEFAULT_TIMEOUT_MINUTES = 30.0
"""The documented limit of one extension script."""


class ExtensionRoles(Model):
    """Database roles granted the documented permissions on new extension objects.

    ``users`` and ``deploy``: SELECT, INSERT, UPDATE, DELETE on tables, EXECUTE on procedures
    (CDX's UsersRole, DeployExtensibilityRole); ``publishers``: EXECUTE on procedures
    (PublishersRole); ``data_sync``: SELECT, INSERT, UPDATE, DELETE, ALTER on tables the
    topology replicates (DataSyncUsersRole). A role left out receives nothing.
    """

    users: Identifier | None = None
    deploy: Identifier | None = None
    publishers: Identifier | None = None
    data_sync: Identifier | None = None

    def any(self) -> bool:
        return any((self.users, self.deploy, self.publishers, self.data_sync))


class SeedData(Model):
    """The CDX seed data a topology was imported from (``Name``, ``ChannelDBMajorVersion``), recorded by
    ``cdx seed import`` so that later imports apply only extensions of the same version (N / N-1 guard)."""

    name: str
    channel_db_major_version: str

    @model_validator(mode="before")
    @classmethod
    def _text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("channel_db_major_version"), int):
            data = {**data, "channel_db_major_version": str(data["channel_db_major_version"])}
        return data

    @model_validator(mode="after")
    def _version(self) -> SeedData:
        if not self.name.strip() or not self.channel_db_major_version.isdigit():
            raise ValueError(f"seed data {self.name!r} version {self.channel_db_major_version!r}: give the"
                             " resource Name and its ChannelDBMajorVersion (a number), as in the seed XML")
        return self


class Extensions(Model):
    """Channel database extension settings (see module doc)."""

    scripts: str | None = None
    """Directory of extension scripts (relative to the working directory, like SQLite DSNs)."""
    schemas: tuple[Identifier, ...] = Field(default=DEFAULT_EXTENSION_SCHEMAS, min_length=1)
    """Schemas extension objects may be created in."""
    protected_schemas: tuple[Identifier, ...] = DEFAULT_PROTECTED_SCHEMAS
    """Schemas no script may create, alter, drop or read in; ``cdx`` is always added."""
    view_readable_schemas: tuple[Identifier, ...] = ("ax", "crt")
    """Protected schemas a ``CREATE VIEW`` in an extension schema may still read (CDX's documented
    escape hatch when the CRT data service lacks the data); ``()`` forbids it too."""
    timeout_minutes: float = Field(default=DEFAULT_TIMEOUT_MINUTES, gt=0)
    roles: ExtensionRoles = Field(default_factory=ExtensionRoles)
    seed_data: SeedData | None = None
    """Written by ``cdx seed import``: the seed data version jobs and subjobs came from."""

    @model_validator(mode="after")
    def _disjoint(self) -> Extensions:
        allowed = {s.casefold() for s in self.schemas}
        clash = sorted(s for s in self.all_protected() if s in allowed)
        if clash:
            raise ValueError(f"schema(s) {', '.join(clash)} are both extension and protected schemas; "
                             "an extension schema cannot be protected")
        return self

    def all_protected(self) -> set[str]:
        """Protected schemas, case-folded, with cdx's own."""
        return {s.casefold() for s in self.protected_schemas} | {KERNEL_SCHEMA}

    def is_extension_schema(self, schema: str | None) -> bool:
        return schema is not None and schema.casefold() in {s.casefold() for s in self.schemas}


class PostUpload(Model):
    """Called at HQ once per committed upload session, with the session id (``hq.post_upload``).

    Exactly one of ``procedure`` (``schema.name``, called with the session id as its only
    argument) or ``statement`` (SQL with one ``:session`` placeholder, bound, never formatted).
    """

    procedure: str | None = None
    statement: str | None = None
    timeout_seconds: float = Field(default=600.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _one(cls, data: Any) -> Any:
        if isinstance(data, dict) and bool(data.get("procedure")) == bool(data.get("statement")):
            raise ValueError("give exactly one of 'procedure' (schema.name) or 'statement' (SQL with :session)")
        return data

    @model_validator(mode="after")
    def _check(self) -> PostUpload:
        from cdx.topology.identifiers import TableRef

        if self.procedure is not None:
            TableRef.parse(self.procedure)
        if self.statement is not None and self.statement.count(":session") != 1:
            raise ValueError("the statement must contain the placeholder :session exactly once")
        return self
