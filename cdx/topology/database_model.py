"""Databases of ``topology.yaml``: a channel's or register's (:class:`Database`) and HQ's (:class:`HqDatabase`)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo, field_validator, model_validator

from cdx.topology.dsn import Dialect, check_dsn, dsn_key, infer_dialect, redact, sqlite_path
from cdx.topology.extensions import PostUpload
from cdx.topology.identifiers import TopicId
from cdx.topology.model_base import Model

__all__ = ["Database", "HqDatabase"]


class Database(Model):
    """A database: its dialect and DSN (the dialect may be omitted when the DSN shows it)."""

    dialect: Dialect
    dsn: str

    @model_validator(mode="before")
    @classmethod
    def _infer(cls, data: Any) -> Any:
        if isinstance(data, dict) and "dialect" not in data and isinstance(data.get("dsn"), str):
            found = infer_dialect(data["dsn"])
            if found is None:
                raise ValueError("cannot tell the dialect from the dsn: add 'dialect: sqlite|postgresql|sqlserver'")
            data = {**data, "dialect": found}
        return data

    @field_validator("dsn")
    @classmethod
    def _check(cls, dsn: str, info: ValidationInfo) -> str:
        dialect = info.data.get("dialect")
        if dialect is not None:
            check_dsn(dialect, dsn)
        return dsn

    @property
    def key(self) -> str:
        """Normalised identity (absolute path for SQLite, ``host:port/db`` otherwise)."""
        return dsn_key(self.dialect, self.dsn)

    @property
    def sqlite_path(self) -> str | None:
        """The file path of a SQLite database (relative to the cwd if relative), else ``None``."""
        return sqlite_path(self.dsn) if self.dialect is Dialect.SQLITE else None

    def redacted(self) -> str:
        """The DSN with any password masked, for logs and summaries."""
        return redact(self.dsn)


class HqDatabase(Database):
    """The HQ database; ``name`` is the database component of its table topics."""

    name: TopicId = "hq"
    post_upload: PostUpload | None = None
    """Called once per committed upload session (see :class:`~cdx.topology.extensions.PostUpload`)."""
