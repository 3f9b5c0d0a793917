"""Each extension rule with a passing and a refused example (parsed with sqlglot in the script's dialect)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdx.connectors.migrate.context import ParentKey, rule_context
from cdx.connectors.migrate.rules import Violation, check_script
from cdx.connectors.migrate.scripts import Script, checksum
from tests.migrate.helpers import topology

UPLOAD_TABLE = """CREATE TABLE [ext].[CONTOSOTRANSACTIONTABLE](
[TRANSACTIONID] [nvarchar](44) NOT NULL,
[STORE] [nvarchar](10) NOT NULL,
[CONTOSOSEAT] [int] NOT NULL DEFAULT (0),
[REPLICATIONCOUNTERFROMORIGIN] [int] IDENTITY(1,1) NOT NULL,
[ROWVERSION] [timestamp] NOT NULL,
[DATAAREAID] [nvarchar](4) NOT NULL,
CONSTRAINT [PK_CONTOSOTRANSACTIONTABLE] PRIMARY KEY CLUSTERED ([TRANSACTIONID], [STORE])
) ON [PRIMARY]
GO
GRANT SELECT, INSERT, UPDATE, DELETE ON OBJECT::[ext].[CONTOSOTRANSACTIONTABLE] TO [DataSyncUsersRole]
GO
"""
DOC_STORE_HOURS = """-- Create the extension table to store the custom fields.
IF (SELECT OBJECT_ID('[ext].[CONTOSORETAILSTOREHOURSTABLE]')) IS NULL
BEGIN
CREATE TABLE [ext].[CONTOSORETAILSTOREHOURSTABLE](
[RECID] [bigint] NOT NULL,
[DAY] [int] NOT NULL DEFAULT ((0)),
[REPLICATIONCOUNTERFROMORIGIN] [int] IDENTITY(1,1) NOT NULL,
[ROWVERSION] [timestamp] NOT NULL,
[DATAAREAID] [nvarchar](4) NOT NULL,
CONSTRAINT [I_CONTOSORETAILSTOREHOURSTABLE_RECID] PRIMARY KEY CLUSTERED
(
    [RECID] ASC
) WITH (PAD_INDEX = OFF, STATISTICS_NORECOMPUTE = OFF, IGNORE_DUP_KEY = OFF) ON [PRIMARY]
) ON [PRIMARY]
ALTER TABLE [ext].[CONTOSORETAILSTOREHOURSTABLE] WITH CHECK ADD CHECK (([RECID]<>(0)))
END
GO
CREATE VIEW [ext].[CONTOSORETAILSTOREHOURSVIEW] AS
(
    SELECT sdht.DAY, sdht.RECID, rst.STORENUMBER
    FROM [ext].[CONTOSORETAILSTOREHOURSTABLE] sdht
    INNER JOIN [ax].RETAILSTORETABLE rst ON rst.RECID = sdht.RECID
)
GO
"""
DOC_DONT = """MERGE INTO [ax].RETAILCUSTPREFERENCE   --DONT access ax schema object
USING (SELECT DISTINCT tp.PARENTRECID, ct.ACCOUNTNUM, ct.DATAAREAID
FROM @TVP_EXTENSIONPROPERTIESTABLETYPE tp
JOIN [ax].CUSTTABLE ct on ct.RECID = tp.PARENTRECID  --DONT access ax schema object
WHERE tp.PARENTRECID <> 0) AS SOURCE
ON [ax].RETAILCUSTPREFERENCE.RECID = SOURCE.PARENTRECID
WHEN MATCHED THEN UPDATE SET [EMAILOPTIN] = 1;
"""


def check(text: str, dialect: str = "sqlserver", parent: ParentKey | None = None, **ext: Any) -> list[Violation]:
    topo = topology(Path("/nonexistent"), **ext)
    script = Script(Path(f"0001_x.{dialect}.sql"), f"0001_x.{dialect}.sql", dialect, text, checksum(text))
    return check_script(script, rule_context(topo, dialect, (lambda s: parent) if parent else None))


def rules(text: str, dialect: str = "sqlserver", **kw: Any) -> list[tuple[str, int]]:
    return [(v.rule, v.line) for v in check(text, dialect, **kw)]


def test_documented_examples_pass() -> None:
    assert check(DOC_STORE_HOURS) == []
    assert check(UPLOAD_TABLE) == []


def test_documented_dont_example_is_refused_with_file_line_statement_and_rule() -> None:
    found = check("SET NOCOUNT ON\n" + DOC_DONT)
    assert {v.rule for v in found} == {"protected-schema"}
    first = found[0]
    assert (first.file, first.line) == ("0001_x.sqlserver.sql", 2)
    assert first.statement.startswith("MERGE INTO [ax].RETAILCUSTPREFERENCE")
    assert str(first).startswith("0001_x.sqlserver.sql:2: protected-schema: ax.RETAILCUSTPREFERENCE is in the"
                                 " protected ax schema")
    assert any("ax.CUSTTABLE" in v.message for v in found)


@pytest.mark.parametrize(("dialect", "good", "bad"), [
    ("sqlserver", "CREATE TABLE [ext].[A] (ID int NOT NULL PRIMARY KEY)", "CREATE TABLE [sales].[A] (ID int NOT NULL)"),
    ("sqlserver", "CREATE INDEX IX ON [ext].[A] (ID)", "CREATE TABLE A (ID int NOT NULL PRIMARY KEY)"),
    ("postgresql", "CREATE SCHEMA IF NOT EXISTS ext;", "CREATE SCHEMA staging;"),
    ("postgresql", "CREATE OR REPLACE FUNCTION ext.f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;",
     "CREATE FUNCTION public.f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;"),
    ("sqlite", "CREATE TABLE ext_A (ID INTEGER NOT NULL PRIMARY KEY);", "CREATE TABLE A (ID INTEGER NOT NULL);"),
    ("sqlserver", "GRANT SELECT ON OBJECT::[ext].[A] TO [UsersRole]",
     "GRANT SELECT ON OBJECT::[sales].[A] TO [UsersRole]"),
])
def test_objects_only_in_the_extension_schema(dialect: str, good: str, bad: str) -> None:
    assert check(good, dialect) == []
    assert rules(bad, dialect) == [("ext-schema", 1)]


def test_temporary_tables_are_not_extension_objects() -> None:
    assert check("CREATE TEMP TABLE scratch (id int);\nDROP TABLE scratch;", "postgresql") == []
    assert rules("DROP TABLE scratch;", "postgresql") == [("ext-schema", 1)]
    assert check("CREATE TABLE #scratch (ID int NULL)\nDROP TABLE #scratch") == []


def test_configured_extension_schemas() -> None:
    assert check("CREATE TABLE [contoso].[A] (ID int NOT NULL PRIMARY KEY)", schemas=["ext", "contoso"]) == []


@pytest.mark.parametrize(("dialect", "bad"), [
    ("sqlserver", "CREATE TABLE [ax].[MINE] (ID int NOT NULL)"),
    ("sqlserver", "ALTER TABLE [crt].[SALESTRANSACTION] ADD X int NOT NULL DEFAULT 0"),
    ("sqlserver", "DROP VIEW [dbo].[V]"),
    ("sqlserver", "IF OBJECT_ID(N'[ax].[RETAILSTORETABLE]') IS NOT NULL PRINT 'found'"),
    ("sqlserver", "SELECT name FROM sys.tables WHERE SCHEMA_NAME(schema_id) = 'crt'"),
    ("sqlserver", "CREATE TRIGGER [ext].[TR] ON [ax].[CUSTTABLE] AFTER INSERT AS BEGIN SELECT 1 END"),
    ("postgresql", "INSERT INTO ext.a SELECT * FROM cdx.cdx_state;"),
    ("sqlite", "DELETE FROM cdx_state;"),
    ("sqlite", "CREATE VIEW ext_V AS SELECT * FROM dbo_INVENTTABLE;"),
])
def test_protected_schemas_are_never_touched(dialect: str, bad: str) -> None:
    assert "protected-schema" in {r for r, _ in rules(bad, dialect)}


def test_views_may_read_the_view_readable_schemas_only() -> None:
    view = ("CREATE VIEW [ext].[V] AS SELECT s.RECID FROM [ext].[T] t JOIN [ax].RETAILSTORETABLE s"
            " ON s.RECID = t.RECID")
    assert check(view) == []
    assert rules(view, view_readable_schemas=[]) == [("protected-schema", 1)]
    assert rules(view.replace("[ax]", "[dbo]")) == [("protected-schema", 1)]


def test_no_types_from_protected_schemas() -> None:
    assert check("CREATE TYPE [ext].[PROPS] AS TABLE (NAME nvarchar(50) NOT NULL)\nGO\n"
                 "CREATE PROCEDURE [ext].[P] @p [ext].[PROPS] READONLY AS BEGIN SELECT 1 END") == []
    bad = "CREATE PROCEDURE [ext].[P] @p [crt].[EXTENSIONPROPERTIESTABLETYPE] READONLY AS BEGIN SELECT 1 END"
    assert rules(bad) == [("protected-type", 1)]
    assert rules("CREATE TABLE [ext].[A] (ID int NOT NULL PRIMARY KEY, T [ax].[MYTYPE] NOT NULL DEFAULT 0)") == [
        ("protected-type", 1)]


@pytest.mark.parametrize(("change", "message"), [
    (("[REPLICATIONCOUNTERFROMORIGIN] [int] IDENTITY(1,1) NOT NULL,\n", ""), "needs the identity column"),
    (("IDENTITY(1,1) ", ""), "must be an identity column"),
    (("[DATAAREAID] [nvarchar](4) NOT NULL,\n", ""), "needs [DATAAREAID]"),
    (("[ROWVERSION] [timestamp] NOT NULL,\n", ""), "needs [ROWVERSION]"),
])
def test_uploaded_extension_tables(change: tuple[str, str], message: str) -> None:
    found = [v for v in check(UPLOAD_TABLE.replace(*change)) if v.rule == "upload-table"]
    assert len(found) == 1 and message in found[0].message


def test_dataareaid_only_where_the_data_is_per_company() -> None:
    without = UPLOAD_TABLE.replace("[DATAAREAID] [nvarchar](4) NOT NULL,\n", "")
    shared = ParentKey(("TRANSACTIONID", "STORE"), exact=True, per_company=False)
    assert check(without, parent=shared) == []
    per_company = ParentKey(("TRANSACTIONID", "STORE"), exact=True, per_company=True)
    assert rules(without, parent=per_company) == [("upload-table", 1)]


def test_replication_counter_is_not_the_only_unique_key() -> None:
    only = UPLOAD_TABLE.replace("PRIMARY KEY CLUSTERED ([TRANSACTIONID], [STORE])",
                                "PRIMARY KEY CLUSTERED ([REPLICATIONCOUNTERFROMORIGIN])")
    assert "must not be the only unique key" in " ".join(v.message for v in check(only))
    postgres = ("CREATE TABLE ext.contosotransactiontable (transactionid text NOT NULL, store text NOT NULL,"
                " contososeat int NOT NULL DEFAULT 0, dataareaid varchar(4) NOT NULL,"
                " replicationcounterfromorigin bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,"
                " PRIMARY KEY (transactionid, store), UNIQUE (replicationcounterfromorigin));")
    assert check(postgres, "postgresql") == []


def test_extension_table_has_the_parents_key() -> None:
    wrong = UPLOAD_TABLE.replace("([TRANSACTIONID], [STORE])", "([TRANSACTIONID])")
    assert ("parent-key", 1) in rules(wrong)
    exact = ParentKey(("TRANSACTIONID", "STORE", "DATAAREAID"), exact=True)
    assert rules(UPLOAD_TABLE, parent=exact) == [("parent-key", 1)]
    with_area = UPLOAD_TABLE.replace("([TRANSACTIONID], [STORE])", "([TRANSACTIONID], [STORE], [DATAAREAID])")
    assert check(with_area, parent=exact) == []


def test_extension_key_is_clustered_on_sql_server() -> None:
    nonclustered = UPLOAD_TABLE.replace("PRIMARY KEY CLUSTERED", "PRIMARY KEY NONCLUSTERED")
    assert rules(nonclustered) == [("parent-key", 1)]
    index = "GO\nCREATE CLUSTERED INDEX IX ON [ext].[CONTOSOTRANSACTIONTABLE] ([STORE], [TRANSACTIONID])\n"
    assert check(nonclustered + index) == []


@pytest.mark.parametrize(("dialect", "good", "bad"), [
    ("sqlserver", "CREATE TABLE [ext].[A] (ID int NOT NULL PRIMARY KEY, N nvarchar(10) NOT NULL DEFAULT (''))",
     "CREATE TABLE [ext].[A] (ID int NOT NULL PRIMARY KEY, N nvarchar(10) NULL)"),
    ("sqlserver", "CREATE TABLE [ext].[A] (ID int NOT NULL PRIMARY KEY, N nvarchar(10) NOT NULL DEFAULT (''))",
     "CREATE TABLE [ext].[A] (ID int NOT NULL PRIMARY KEY, N nvarchar(10) NOT NULL)"),
    ("sqlserver", "ALTER TABLE [ext].[A] ADD [N] int NOT NULL CONSTRAINT DF_A_N DEFAULT (0)",
     "ALTER TABLE [ext].[A] ADD [N] int NOT NULL"),
    ("postgresql", "ALTER TABLE ext.a ADD COLUMN n int NOT NULL DEFAULT 0;", "ALTER TABLE ext.a ADD COLUMN n int;"),
    ("sqlite", "CREATE TABLE ext_A (ID INTEGER NOT NULL PRIMARY KEY, N TEXT NOT NULL DEFAULT '');",
     "CREATE TABLE ext_A (ID INTEGER NOT NULL PRIMARY KEY, N TEXT);"),
])
def test_extension_columns_are_not_null_with_a_default(dialect: str, good: str, bad: str) -> None:
    assert check(good, dialect) == []
    assert rules(bad, dialect) == [("not-null-default", 1)]


def test_tsql_statements_without_semicolons_are_checked_one_by_one() -> None:
    script = ("DECLARE @n int\nSET @n = 1\nIF @n = 1\nBEGIN\n  CREATE TABLE [ext].[A] (ID int NOT NULL PRIMARY KEY)\n"
              "  CREATE TABLE [ax].[B] (ID int NOT NULL PRIMARY KEY)\nEND\n")
    assert rules(script) == [("protected-schema", 6)]


def test_tsql_try_catch_and_transactions_are_unwrapped() -> None:
    script = ("BEGIN TRY\n  BEGIN TRANSACTION\n  CREATE TABLE [ext].[A] (ID int NOT NULL PRIMARY KEY, N int NULL)\n"
              "  COMMIT\nEND TRY\nBEGIN CATCH\n  ROLLBACK\n  ;THROW\nEND CATCH\n")
    assert rules(script) == [("not-null-default", 3)]
