"""The attack corpus (tests/attacks/sql/) against each layer alone and the whole guard,
on real SQLite, PostgreSQL and MariaDB.

- parser layer alone: the ``sql`` tool with its engine replaced by a raw,
  committing administrator connection (``hazmat.sql_connection.parser_only_tool``);
  an attack the parser let through would really run;
- engine layer alone: statements sent straight to the engine
  (``hazmat.sql_connection.engine_only``) with no parser check;
- the guard: both layers, as an agent meets them.

After every attack the database (tables, rows, sequences, grants, accounts)
and the file system (marker files) must be unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
from sql_support import SQLEnv, load_corpus, mariadb_env, pg_env, sqlite_env

from stockade.errors import Denied, SQLError
from stockade.model import ToolCall

__all__ = ["mariadb_env", "pg_env", "sqlite_env"]  # fixtures used by name

ENGINES = {
    "sqlite": ("sqlite.yaml", "sqlite_env", ()),
    "postgres": ("postgres.yaml", "pg_env", (pytest.mark.postgres,)),
    "mysql": ("mariadb.yaml", "mariadb_env", (pytest.mark.mariadb,)),
}


def _params(section: str, *, where: Any = None) -> list[Any]:
    out = []
    for kind, (file, _, marks) in ENGINES.items():
        for case in load_corpus(file)[section]:
            if where is None or where(case):
                out.append(pytest.param(kind, case, id=f"{kind}-{case['id']}", marks=marks))
    return out


def _env(request: pytest.FixtureRequest, kind: str) -> SQLEnv:
    env: SQLEnv = request.getfixturevalue(ENGINES[kind][1])
    return env


def _parser_only(env: SQLEnv, sql: str) -> Any:
    """Run a statement the way the guard would, with the engine layer switched off."""
    tool = env.shared_parser_tool()
    call = tool.prepare(ToolCall("sql", "query", {"sql": sql}, session="t"))
    decision = tool.check(call)
    if decision is not None:
        return decision
    return tool.execute(call, None)


@pytest.mark.parametrize(("kind", "attack"), _params("attacks", where=lambda c: c["parser"]))
def test_parser_layer_alone_blocks(
    request: pytest.FixtureRequest, kind: str, attack: dict[str, Any]
) -> None:
    env = _env(request, kind)
    sql = env.render(attack["sql"], attack["id"])
    before = env.state()
    outcome = _parser_only(env, sql)
    assert getattr(outcome, "rule", None) == attack["parser"], outcome
    assert not outcome.allowed
    assert env.state() == before
    assert not env.marker(attack["id"]).exists()


@pytest.mark.parametrize(("kind", "attack"), _params("attacks"))
def test_engine_layer_alone_blocks(
    request: pytest.FixtureRequest, kind: str, attack: dict[str, Any]
) -> None:
    env = _env(request, kind)
    sql = env.render(attack["sql"], attack["id"])
    before = env.state()
    engine = env.shared_engine()
    expected = attack["engine"]
    if expected == "harmless":
        result = engine.query(sql, max_rows=50, timeout=0.3)
        flat = [v for row in result.rows for v in row]
        assert not any(isinstance(v, (str, bytes)) and v for v in flat), flat
    else:
        with pytest.raises(SQLError) as info:
            engine.query(sql, max_rows=50, timeout=0.3)
        if expected == "timeout":
            assert "timed out" in str(info.value)
    assert env.state() == before
    assert not env.marker(attack["id"]).exists()


@pytest.mark.parametrize(("kind", "attack"), _params("attacks"))
def test_guard_blocks(request: pytest.FixtureRequest, kind: str, attack: dict[str, Any]) -> None:
    env = _env(request, kind)
    sql = env.render(attack["sql"], attack["id"])
    before = env.state()
    guard = env.shared_guard()
    if attack["parser"]:
        with pytest.raises(Denied) as info:
            guard.call("sql", "query", {"sql": sql})
        assert info.value.rule == attack["parser"]
    else:
        with pytest.raises(SQLError):
            guard.call("sql", "query", {"sql": sql})
    assert env.state() == before
    assert not env.marker(attack["id"]).exists()


@pytest.mark.parametrize(("kind", "case"), _params("legit"))
def test_legit_queries_pass_both_layers(
    request: pytest.FixtureRequest, kind: str, case: dict[str, Any]
) -> None:
    env = _env(request, kind)
    sql = env.render(case["sql"], case["id"])
    result = env.shared_guard().call("sql", "query", {"sql": sql})
    value = result.value
    assert value["row_count"] == case["rows"], value
    masked = case.get("masked", [])
    for row in value["rows"]:
        for i, v in enumerate(row):
            if i in masked:
                assert v == "***"
            else:
                assert v != "***"
    direct = env.shared_engine().query(sql, max_rows=50, timeout=5)
    assert len(direct.rows) == case["rows"]


LANGCHAIN = load_corpus("langchain_cves.yaml")["cases"]


@pytest.mark.parametrize(
    "kind",
    [pytest.param(k, marks=m) for k, (_, _, m) in ENGINES.items()],
)
@pytest.mark.parametrize("case", LANGCHAIN, ids=lambda c: f"{c['cve']}-{c['sql'][:24]}")
def test_langchain_sql_chain_cves_blocked(
    request: pytest.FixtureRequest, kind: str, case: dict[str, Any]
) -> None:
    env = _env(request, kind)
    before = env.state()
    with pytest.raises(Denied) as info:
        env.shared_guard().call("sql", "query", {"sql": case["sql"]})
    assert info.value.rule.startswith("sql:")
    with pytest.raises(SQLError):
        env.shared_engine().query(case["sql"], max_rows=50, timeout=0.3)
    assert env.state() == before
