"""The parser layer's shortcuts for a single plain SELECT give what the general path gives.

For a statement with one scope, :func:`analyse` normalizes the names it
collected in its clause walk instead of walking again with sqlglot's
``normalize_identifiers``, aliases the tables itself instead of running
``qualify_tables``, and judges the columns in one walk instead of through
sqlglot's scopes. Every statement here is analysed both ways and the results
must be the same: the analysis, the regenerated text, and for a refusal the
rule and the message.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.tools import sql_check
from stockade.tools.sql_check import Analysis, TablePolicy, Violation, analyse

TABLES = {
    "customers": TablePolicy(
        "customers",
        ("id", "name", "email", "ssn", "country"),
        frozenset({"id", "name", "email", "country"}),
        frozenset({"email"}),
    ),
    "orders": TablePolicy(
        "orders",
        ("id", "customer_id", "total", "note"),
        frozenset({"id", "customer_id", "total", "note"}),
    ),
}
# real names in mixed case: the alias is normalized for the dialect, not the table
MIXED = {
    "customers": TablePolicy(
        "Customers",
        ("Id", "Name", "EMail"),
        frozenset({"Id", "Name", "EMail"}),
        frozenset({"EMail"}),
    ),
    "orders": TablePolicy("ORDERS", ("ID", "Total"), frozenset({"ID", "Total"})),
}
NAMESPACE = {"postgres": "public", "mysql": "shop", "sqlite": "main"}
ENGINES = ("postgres", "mysql", "sqlite")

STATEMENTS = [
    # one scope: the shortcut applies
    "SELECT id, total FROM orders",
    "SELECT * FROM orders",
    "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id",
    "SELECT O.ID, C.Name FROM ORDERS O JOIN Customers AS C ON C.Id = O.Customer_Id",
    'SELECT "id" FROM "orders"',
    "SELECT `id` FROM `orders`",
    "SELECT orders.id FROM orders, customers WHERE orders.customer_id = customers.id",
    "SELECT public.orders.id FROM public.orders",
    "SELECT id FROM orders LEFT JOIN customers USING (id)",
    "SELECT * FROM customers NATURAL JOIN orders",
    "SELECT count(*), country FROM customers GROUP BY country HAVING count(*) > 1 ORDER BY 1",
    "SELECT email FROM customers ORDER BY name",
    "SELECT id AS x FROM orders WHERE id > 1 ORDER BY x",
    "SELECT o.* FROM orders AS o",
    "SELECT c.id, c.name FROM customers c WHERE c.id = 1",
    'SELECT "ID", Id, "id" FROM Orders WHERE "Total" > 1',
    "SELECT ID /* sqlglot.meta case_sensitive */ FROM orders",
    "SELECT o.ID FROM orders AS O /* sqlglot.meta case_sensitive */",
    # the general path: several scopes, duplicate names, dotted columns
    "SELECT id FROM orders JOIN orders ON 1 = 1",
    "SELECT o.id FROM orders o, orders",
    "SELECT id FROM orders o JOIN customers o ON 1 = 1",
    "SELECT shop.orders.id FROM orders",
    "SELECT * FROM (SELECT id FROM orders) AS t",
    "SELECT * FROM (SELECT id FROM orders)",
    "SELECT * FROM (orders JOIN customers ON orders.customer_id = customers.id)",
    "WITH t AS (SELECT id FROM orders) SELECT * FROM t",
    "SELECT id FROM orders UNION SELECT id FROM customers",
    "SELECT name, (SELECT max(total) FROM orders o WHERE o.customer_id = c.id) FROM customers c",
    "SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers)",
    "SELECT * FROM (VALUES (1, 2)) AS v(a, b)",
    # refused either way; the first denied column is the same one
    "SELECT ssn FROM customers",
    "SELECT o.nope, c.ssn FROM orders o, customers c",
    "SELECT c.ssn, o.nope FROM orders o, customers c",
    "SELECT id FROM orders HAVING nope > 1",
    'SELECT "Nope" FROM orders',
    "SELECT o FROM orders o",
    "SELECT count(o.*) FROM orders o",
    "SELECT id, email FROM customers ORDER BY 2",
    "SELECT email FROM customers ORDER BY email",
    "SELECT c.email AS e FROM customers c",
    "SELECT total FROM orders ORDER BY total + 1",
    "SELECT id AS total FROM orders ORDER BY total",
    "SELECT nope FROM orders",
    "SELECT x.id FROM orders",
    "SELECT id FROM orders o JOIN customers c ON 1 = 1",
    "SELECT lower(email) FROM customers",
]


def _outcome(sql: str, engine: str, tables: dict[str, TablePolicy]) -> object:
    try:
        a: Analysis = analyse(sql, engine=engine, tables=tables, namespace=NAMESPACE[engine])
    except Violation as v:
        return (v.rule, v.reason)
    return (a.statement, a.tables, a.columns, a.functions, a.masked_outputs)


def _both(
    monkeypatch: pytest.MonkeyPatch, sql: str, engine: str, tables: dict[str, TablePolicy]
) -> tuple[object, object]:
    short = _outcome(sql, engine, tables)
    real = sql_check._check_nodes

    def no_single_scope(*args: Any, **kwargs: Any) -> Any:
        return dataclasses.replace(real(*args, **kwargs), single_scope=False)

    with monkeypatch.context() as m:
        m.setattr(sql_check, "_check_nodes", no_single_scope)
        general = _outcome(sql, engine, tables)
    return short, general


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("sql", STATEMENTS)
@pytest.mark.parametrize("tables", [TABLES, MIXED], ids=["lower", "mixed"])
def test_shortcut_matches_the_general_path(
    monkeypatch: pytest.MonkeyPatch, sql: str, engine: str, tables: dict[str, TablePolicy]
) -> None:
    short, general = _both(monkeypatch, sql, engine, tables)
    assert short == general


def test_the_shortcut_is_taken_for_one_plain_select(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[bool] = []
    real = sql_check._alias_tables

    def spy(*args: object) -> bool:
        taken.append(real(*args))  # type: ignore[arg-type]
        return taken[-1]

    monkeypatch.setattr(sql_check, "_alias_tables", spy)
    a = analyse(
        "SELECT o.id FROM orders o JOIN customers ON customers.id = o.id",
        engine="postgres",
        tables=TABLES,
        namespace="public",
    )
    assert taken == [True]
    assert "FROM orders AS o JOIN customers AS customers" in a.statement
    taken.clear()
    analyse(
        "SELECT o2.id FROM orders JOIN orders AS o2 ON true",
        engine="postgres",
        tables=TABLES,
        namespace="public",
    )
    assert taken == [True]
    taken.clear()
    analyse(
        "SELECT id FROM orders WHERE id IN (SELECT id FROM customers)",
        engine="postgres",
        tables=TABLES,
        namespace="public",
    )
    assert taken == []  # a subquery: the general path, without asking the shortcut


_NAME = st.sampled_from(["id", "ID", "Id", '"id"', "total", "Total", "customer_id"])


@st.composite
def plain_selects(draw: st.DrawFn) -> str:
    alias = draw(st.sampled_from(["", " o", " AS o", " O", ' "o"', " orders"]))
    ref = alias.split()[-1] if alias else "orders"
    prefix = draw(st.sampled_from(["", f"{ref}."]))
    cols = draw(st.lists(_NAME, min_size=1, max_size=4))
    sql = f"SELECT {', '.join(prefix + c for c in cols)} FROM orders{alias}"
    if draw(st.booleans()):
        sql += f" JOIN customers c ON c.id = {prefix}customer_id"
    if draw(st.booleans()):
        sql += f" ORDER BY {draw(_NAME)}"
    return sql


@settings(max_examples=150, deadline=None)
@given(plain_selects(), st.sampled_from(ENGINES))
def test_generated_plain_selects_match_the_general_path(sql: str, engine: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        short, general = _both(mp, sql, engine, TABLES)
    assert short == general


def test_mysql_text_that_does_not_tokenize_is_refused() -> None:
    # it cannot be shown free of executable comments (one tokenization serves both)
    with pytest.raises(Violation) as info:
        analyse("SELECT 'unterminated", engine="mysql", tables=TABLES, namespace="shop")
    assert info.value.rule == "sql:comment"


def _parsed(sql: str) -> tuple[Any, list[Any]]:
    from sqlglot import exp, parse_one

    root = parse_one(sql, read="postgres")
    return root, list(root.find_all(exp.Table))


def test_single_scope_walk_gives_up_on_what_it_was_not_built_for() -> None:
    by_name = {t.name: t for t in TABLES.values()}
    walk = sql_check._columns_of_single_scope
    # a node that opens a scope
    root, tables = _parsed("SELECT o.id FROM orders o WHERE o.id IN (SELECT 1)")
    assert walk(root, tables, by_name) is None
    # a table it was not given
    root, tables = _parsed("SELECT o.id FROM orders o JOIN customers c ON c.id = o.id")
    assert walk(root, tables[:1], by_name) is None
    # a table it was given that is not in the tree
    root, tables = _parsed("SELECT o.id FROM orders o")
    _, others = _parsed("SELECT c.id FROM customers c")
    assert walk(root, tables + others, by_name) is None
    # what it was built for
    assert walk(root, tables, by_name) == ({"orders"}, {"orders.id"}, [])
