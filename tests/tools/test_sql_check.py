"""The parser layer on its own: analysis results, and generated mutations of attacks."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

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
        write=frozenset({"update"}),
    ),
}


def check(sql: str, engine: str = "postgres", **kw: object) -> Analysis:
    namespace = {"postgres": "public", "mysql": "shop", "sqlite": "main"}[engine]
    return analyse(sql, engine=engine, tables=TABLES, namespace=namespace, **kw)  # type: ignore[arg-type]


def rule(sql: str, engine: str = "postgres", **kw: object) -> str:
    with pytest.raises(Violation) as info:
        check(sql, engine, **kw)
    return info.value.rule


def test_star_is_expanded_against_the_schema() -> None:
    a = check("SELECT * FROM orders")
    assert a.columns == ("orders.customer_id", "orders.id", "orders.note", "orders.total")
    assert "*" not in a.statement
    assert a.tables == ("orders",)


def test_count_star_is_not_a_column_read() -> None:
    a = check("SELECT count(*) FROM customers")
    assert a.columns == ()
    assert a.functions == ("count",)


def test_correlated_subquery_resolves_outer_columns() -> None:
    a = check(
        "SELECT name, (SELECT max(total) FROM orders o WHERE o.customer_id = c.id) FROM customers c"
    )
    assert set(a.tables) == {"customers", "orders"}
    assert "customers.id" in a.columns


def test_order_by_output_alias() -> None:
    check("SELECT customer_id, sum(total) AS s FROM orders GROUP BY customer_id ORDER BY s")
    assert rule("SELECT id FROM orders ORDER BY nothere") == "sql:column"


def test_row_cap_is_applied_to_the_statement() -> None:
    assert check("SELECT id FROM orders", max_rows=10).statement.endswith("LIMIT 11")
    assert check("SELECT id FROM orders LIMIT 3", max_rows=10).statement.endswith("LIMIT 3")
    assert check("SELECT id FROM orders LIMIT 99", max_rows=10).statement.endswith("LIMIT 11")
    union = check("SELECT id FROM orders UNION SELECT id FROM customers", max_rows=10)
    assert union.statement.endswith("LIMIT 11")


def test_comments_are_dropped_from_the_statement() -> None:
    a = check("SELECT id /* x */ FROM orders -- y")
    assert "/*" not in a.statement and "--" not in a.statement


def test_masked_columns_are_positions_of_the_outer_select() -> None:
    assert check("SELECT name, email FROM customers").masked_outputs == (1,)
    assert check("SELECT email AS e, id FROM customers").masked_outputs == (0,)


def test_sorting_by_a_masked_output_is_refused() -> None:
    assert rule("SELECT name, email FROM customers ORDER BY 2 DESC") == "sql:mask"
    assert rule("SELECT email AS e FROM customers ORDER BY e") == "sql:mask"
    assert check("SELECT name, email FROM customers ORDER BY 1").masked_outputs == (1,)


def test_column_alias_lists_on_tables_are_refused() -> None:
    # `name` would be the email column here: a way around the mask (masking is
    # a result control of this layer; the account may read masked columns)
    assert rule("SELECT c.name FROM customers AS c(id, email, name)") == "sql:column"
    assert rule("SELECT c.country FROM customers AS c(id, name, email, country)") == ("sql:column")
    check("SELECT s.x FROM (SELECT id FROM orders) AS s(x)")


def test_unknown_functions_need_the_policy() -> None:
    assert rule("SELECT my_udf(id) FROM orders") == "sql:function"
    a = check("SELECT my_udf(id) FROM orders", functions_allow=frozenset({"my_udf"}))
    assert "my_udf" in a.functions
    assert rule("SELECT upper(name) FROM customers", functions_deny=frozenset({"upper"})) == (
        "sql:function"
    )


def test_table_functions_and_foreign_schemas() -> None:
    assert rule("SELECT * FROM generate_series(1, 10)") == "sql:table"
    assert rule("SELECT id FROM other.orders") == "sql:table"
    assert rule("SELECT id FROM cat.public.orders") == "sql:table"
    check("SELECT id FROM public.orders")
    check("SELECT id FROM main.orders", engine="sqlite")
    check("SELECT id FROM shop.orders", engine="mysql")


def test_parameters_and_variables() -> None:
    assert rule("SELECT $1") == "sql:variable"
    assert rule("SELECT ?", engine="sqlite") == "sql:variable"
    assert rule("SELECT @@version", engine="mysql") == "sql:variable"


def test_write_mode_rules() -> None:
    w = check("UPDATE orders SET total = 1 WHERE id = 2", write=True)
    assert (w.kind, w.tables_written, w.where) == ("update", ("orders",), "id = 2")
    assert rule("UPDATE orders SET total = 1", write=True) == "sql:where"
    assert rule("DELETE FROM orders WHERE id = 1", write=True) == "sql:write"
    assert rule("UPDATE customers SET name = 'x' WHERE id = 1", write=True) == "sql:write"
    assert rule("DROP TABLE orders", write=True) == "sql:statement"
    assert rule("UPDATE orders SET total = 1 WHERE id = 1", write=False) == "sql:read-only"


def test_empty_and_garbage() -> None:
    assert rule("") == "sql:stacked"
    assert rule(";;") == "sql:stacked"
    assert rule("SELEC id FROM orders") in ("sql:syntax", "sql:read-only")
    assert rule("(" * 5000 + "SELECT 1" + ")" * 5000) in ("sql:syntax", "sql:column")


# -- generated mutations: case, comments and whitespace never get an attack through --------

ATTACKS = [
    ("DROP TABLE orders", "postgres"),
    ("SELECT id FROM orders; DROP TABLE orders", "postgres"),
    ("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", "postgres"),
    ("SELECT pg_read_file('/etc/passwd')", "postgres"),
    ("SELECT ssn FROM customers", "postgres"),
    ("SELECT * FROM customers", "postgres"),
    ("SELECT token FROM secrets", "postgres"),
    ("COPY orders TO PROGRAM 'id'", "postgres"),
    ("SELECT id FROM orders FOR UPDATE", "postgres"),
    ("ATTACH DATABASE 'x.db' AS x", "sqlite"),
    ("SELECT load_extension('x')", "sqlite"),
    ("SELECT sleep(10)", "mysql"),
    ("SELECT load_file('/etc/passwd')", "mysql"),
]

_SEPARATORS = st.sampled_from([" ", "  ", "\n", "\t", " /* x */ ", "/**/", " -- c\n"])


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str]:
    sql, engine = draw(st.sampled_from(ATTACKS))
    words = sql.split(" ")
    out = []
    for word in words:
        flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
        out.append("".join(c.upper() if f else c.lower() for c, f in zip(word, flips, strict=True)))
        out.append(draw(_SEPARATORS))
    text = "".join(out[:-1])
    if draw(st.booleans()):
        text += ";"
    # string literals keep their case: paths stay what they were
    return text, engine


@settings(max_examples=80, deadline=None)
@given(mutated())
def test_mutated_attacks_are_still_denied(case: tuple[str, str]) -> None:
    sql, engine = case
    with pytest.raises(Violation):
        check(sql, engine)


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["postgres", "mysql", "sqlite"]))
def test_any_text_gives_an_analysis_or_a_violation(text: str, engine: str) -> None:
    outcome: Analysis | Violation
    try:
        outcome = check(text, engine)
    except Violation as v:
        outcome = v
    if isinstance(outcome, Violation):
        assert outcome.rule.startswith("sql:")
    else:
        assert outcome.kind == "select"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("engine", ["postgres", "mysql", "sqlite"])
def test_sqlglot_command_fallback_is_refused_without_log_noise(
    engine: str, capfd: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("sqlglot")
    handler = _Records()
    logger.addHandler(handler)
    try:
        for sql in ("EXPLAIN SELECT id FROM orders", "CALL refresh_orders()"):
            with pytest.raises(Violation) as info:
                check(sql, engine)
            assert info.value.rule == "sql:read-only"
            # MySQL reads EXPLAIN as its synonym DESCRIBE
            name = info.value.reason.split("`")[1]
            assert name in {sql.split()[0], "DESCRIBE"}
            assert info.value.reason.startswith(f"`{name}` is not allowed: `query` runs one query")
            with pytest.raises(Violation) as info:
                check(sql, engine, write=True)
            assert info.value.rule == "sql:statement"
        assert handler.messages == []
        assert "unsupported syntax" not in capfd.readouterr().err
        # the application's own use of sqlglot still hears the warning
        sqlglot.parse_one("EXPLAIN SELECT 1", dialect="postgres")
        assert len(handler.messages) == 1
        assert "Falling back to parsing as a 'Command'" in handler.messages[0]
    finally:
        logger.removeHandler(handler)


def test_no_sqlglot_warning_reaches_a_plain_programs_stderr() -> None:
    # Outside pytest's log capture: logging's last resort prints to stderr.
    program = (
        "from stockade.tools.sql_check import Violation, analyse\n"
        "try:\n"
        "    analyse('EXPLAIN SELECT 1', engine='postgres', tables={}, namespace='public')\n"
        "except Violation as v:\n"
        "    print(v.rule)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "sql:read-only"
    assert done.stderr == ""
