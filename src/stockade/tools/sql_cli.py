"""``stockade sql grant-readonly``: the least-privilege role for a policy's tables.

The SQL tool's engine layer on PostgreSQL and MariaDB/MySQL rests on the
account it connects as: SELECT on the policy's tables (only the allowed
columns where the policy restricts them) and nothing else. This command
prints the statements that create that account; the tool checks at connect
time that the account it is given is no wider.

>>> from stockade.policy import Policy
>>> policy = Policy.from_text('''
... version: 1
... sql:
...   databases:
...     shop:
...       url: postgresql://shop_agent@db/shop
...       tables: {orders: {}, customers: {columns: [id, name]}}
... ''')
>>> print("\\n".join(grant_statements(policy.section("sql").databases["shop"])))
... # doctest: +NORMALIZE_WHITESPACE
-- least-privilege role for database `shop` (postgresql)
CREATE ROLE "shop_agent" LOGIN PASSWORD :'password';
REVOKE ALL ON SCHEMA "public" FROM "shop_agent";
GRANT USAGE ON SCHEMA "public" TO "shop_agent";
GRANT SELECT ("id", "name") ON "public"."customers" TO "shop_agent";
GRANT SELECT ON "public"."orders" TO "shop_agent";
ALTER ROLE "shop_agent" SET default_transaction_read_only = on;
ALTER ROLE "shop_agent" SET statement_timeout = '5000ms';
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from stockade.errors import ConfigurationError, StockadeError
from stockade.tools.sql import DatabaseConfig, SQLConfig

__all__ = ["grant_statements", "register"]


def _pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _my_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _my_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _default_role(db: DatabaseConfig) -> str:
    user = urllib.parse.urlsplit(db.url).username
    return urllib.parse.unquote(user) if user else f"stockade_{db.name}".replace("-", "_")


def _columns_for(
    db: DatabaseConfig, key: str, schema: Mapping[str, Sequence[str]] | None
) -> list[str] | None:
    """The columns to grant on a table: ``None`` means the whole table."""
    spec = db.tables[key]
    if spec.columns is None and not spec.deny_columns:
        return None
    if spec.columns is not None:
        base = list(spec.columns)
    else:
        if schema is None or key not in schema:
            raise ConfigurationError(
                f"table `{spec.name}` denies columns but does not list `columns`; list them "
                "in the policy or pass --admin-url so the command can read the table"
            )
        base = list(schema[key])
    denied = {c.lower() for c in spec.deny_columns}
    return [c for c in base if c.lower() not in denied]


def grant_statements(
    db: DatabaseConfig,
    *,
    role: str | None = None,
    schema: Mapping[str, Sequence[str]] | None = None,
    password: str | None = None,
) -> list[str]:
    """The SQL that creates the least-privilege account for ``db``.

    ``schema`` maps lower-cased table names to their columns (needed only for
    tables that deny columns without listing the allowed ones). ``password``
    is put in the statement when given; otherwise a psql/client variable
    placeholder is printed for the operator to fill in.
    """
    role = role or _default_role(db)
    out = [f"-- least-privilege role for database `{db.name}` ({_engine_name(db.engine)})"]
    tables = sorted(db.tables)
    if db.engine == "postgres":
        nsp = db.namespace or "public"
        secret = _pg_literal(password) if password is not None else ":'password'"
        out.append(f"CREATE ROLE {_pg_ident(role)} LOGIN PASSWORD {secret};")
        out.append(f"REVOKE ALL ON SCHEMA {_pg_ident(nsp)} FROM {_pg_ident(role)};")
        out.append(f"GRANT USAGE ON SCHEMA {_pg_ident(nsp)} TO {_pg_ident(role)};")
        for key in tables:
            spec = db.tables[key]
            target = f"{_pg_ident(nsp)}.{_pg_ident(spec.name)}"
            cols = _columns_for(db, key, schema)
            col_list = f" ({', '.join(_pg_ident(c) for c in cols)})" if cols is not None else ""
            out.append(f"GRANT SELECT{col_list} ON {target} TO {_pg_ident(role)};")
            for kind in _write_grants(db, key):
                out.append(f"GRANT {kind} ON {target} TO {_pg_ident(role)};")
        if db.read_only:
            out.append(f"ALTER ROLE {_pg_ident(role)} SET default_transaction_read_only = on;")
        out.append(
            f"ALTER ROLE {_pg_ident(role)} SET statement_timeout = '{int(db.timeout * 1000)}ms';"
        )
        return out
    if db.engine == "mysql":
        database = urllib.parse.unquote(urllib.parse.urlsplit(db.url).path.lstrip("/"))
        account = f"{_my_string(role)}@'%'"
        if password is not None:
            secret = _my_string(password)
        else:
            secret = "'<password>'"  # noqa: S105 - a placeholder for the operator to replace
            out.append(
                "-- replace <password> below with the account's password before running this "
                "(or print it with --password-env NAME)"
            )
        out.append(f"CREATE USER {account} IDENTIFIED BY {secret};")
        for key in tables:
            spec = db.tables[key]
            target = f"{_my_ident(database)}.{_my_ident(spec.name)}"
            cols = _columns_for(db, key, schema)
            col_list = f" ({', '.join(_my_ident(c) for c in cols)})" if cols is not None else ""
            out.append(f"GRANT SELECT{col_list} ON {target} TO {account};")
            for kind in _write_grants(db, key):
                out.append(f"GRANT {kind} ON {target} TO {account};")
        return out
    if db.read_only:
        out.append("-- sqlite has no accounts: the tool opens the file read-only (mode=ro) with")
        out.append("-- an authorizer; also make the file read-only for the agent's OS user, e.g.:")
        out.append("-- chmod 0444 <file>")
    else:
        out.append("-- sqlite has no accounts: the tool's authorizer admits writes only to the")
        out.append("-- writable tables, inside its own transactions; keep the file and its")
        out.append("-- folder writable only by the agent's OS user")
    return out


def _write_grants(db: DatabaseConfig, key: str) -> list[str]:
    """The write privileges for a table: its kinds, and what undoing them needs
    (undoing an INSERT deletes the rows, undoing a DELETE inserts them back)."""
    if db.read_only:
        return []
    kinds = set(db.tables[key].write)
    if "insert" in kinds:
        kinds.add("delete")
    if "delete" in kinds:
        kinds.add("insert")
    return [k.upper() for k in ("insert", "update", "delete") if k in kinds]


def _pg_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _engine_name(engine: str) -> str:
    return {"postgres": "postgresql", "mysql": "mariadb/mysql"}.get(engine, engine)


def _read_columns(db: DatabaseConfig, admin_url: str) -> dict[str, list[str]]:
    from stockade.tools.sql_engines import EngineSpec, open_engine

    spec = db.engine_spec()
    engine = open_engine(
        EngineSpec(
            url=admin_url,
            tables=spec.tables,
            denied_columns=spec.denied_columns,
            base_dir=spec.base_dir,
            namespace=spec.namespace,
            verify_grants=False,
        )
    )
    try:
        return {k: [c.name for c in cols] for k, (_, cols) in engine.schema().items()}
    finally:
        engine.close()


def _grant_readonly(args: argparse.Namespace) -> int:
    from stockade.policy import Policy

    policy = Policy.from_file(args.policy)
    config = policy.section("sql")
    if not isinstance(config, SQLConfig):
        print(f"{args.policy}: no `sql:` section", file=sys.stderr)
        return 1
    password: str | None = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            print(
                f"stockade: environment variable `{args.password_env}` is not set or empty",
                file=sys.stderr,
            )
            return 2
    names = [args.database] if args.database else list(config.databases)
    for name in names:
        db = config.databases.get(name)
        if db is None:
            print(f"unknown database `{name}`", file=sys.stderr)
            return 2
        schema = _read_columns(db, args.admin_url) if args.admin_url else None
        try:
            lines = grant_statements(db, role=args.role, schema=schema, password=password)
        except StockadeError as exc:
            print(f"stockade: {exc}", file=sys.stderr)
            return 1
        print("\n".join(lines))
    return 0


def register(subparsers: Any) -> None:
    """Add ``stockade sql ...`` commands."""
    sql = subparsers.add_parser(
        "sql",
        help="helpers for the sql tool",
        description="Helpers for the sql tool (the `sql:` section of a policy).",
    )
    sub = sql.add_subparsers(dest="sql_command", metavar="SUBCOMMAND")
    grant = sub.add_parser(
        "grant-readonly",
        help="print the GRANT statements for a least-privilege role on the policy's tables",
        description=(
            "Print the SQL that creates the account the sql tool should connect as: "
            "SELECT on the policy's tables (only the allowed columns where the policy "
            "restricts them) and nothing else. Run it as an administrator (PostgreSQL: "
            "`psql -v password=... -f FILE`; MariaDB/MySQL: `mariadb < FILE` after replacing "
            "<password>, or pass --password-env). The tool refuses, at connect time, an "
            "account with wider privileges."
        ),
    )
    grant.add_argument("--policy", required=True, metavar="FILE", help="policy YAML file")
    grant.add_argument("--database", metavar="NAME", help="only this database of the policy")
    grant.add_argument(
        "--role", metavar="NAME", help="account name (default: the user in the policy's URL)"
    )
    grant.add_argument(
        "--password-env",
        metavar="NAME",
        help="put the password from this environment variable in the statements "
        "(default: a placeholder: psql's :'password' variable on PostgreSQL, "
        "'<password>' to replace by hand on MariaDB/MySQL); the output then holds it",
    )
    grant.add_argument(
        "--admin-url",
        metavar="URL",
        help="read column names with this URL (needed when a table denies columns "
        "without listing the allowed ones)",
    )
    grant.set_defaults(func=_grant_readonly)
    sql.set_defaults(func=lambda a: (sql.print_help(), 2)[1])
