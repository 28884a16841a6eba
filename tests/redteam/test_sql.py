"""Red team regression: masked and denied columns stay out of reach (SQLite, both layers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade import Guard, MemoryAuditSink
from stockade.errors import StockadeError
from tools.sql_support import make_sqlite

REFUSED = [
    "SELECT ssn FROM customers",
    'SELECT "SSN" FROM customers',
    "SELECT [ssn] FROM customers",
    "SELECT `ssn` FROM customers",
    "SELECT x.ssn FROM (SELECT * FROM customers) x",
    "SELECT * FROM customers NATURAL JOIN contacts",
    "SELECT email FROM customers ORDER BY 1",
    "SELECT email FROM customers ORDER BY email",
    "SELECT name, email FROM customers ORDER BY 2",
    "SELECT email AS name FROM customers ORDER BY name",
    "SELECT email FROM customers GROUP BY email",
    "SELECT max(email) FROM customers",
    "SELECT email FROM customers UNION ALL SELECT name FROM customers",
    "SELECT CAST(email AS TEXT) FROM customers",
    "SELECT name FROM customers c WHERE c.email = c.email",
    "SELECT name, lag(name) OVER w FROM customers WINDOW w AS (ORDER BY email)",
    "SELECT value FROM customers, json_each(customers.email)",
    "SELECT * FROM json_each((SELECT email FROM customers))",
    "SELECT * FROM customers LIMIT 1 OFFSET (SELECT length(email) FROM customers LIMIT 1)",
    "SELECT * FROM pragma_table_info('secrets')",
    "SELECT name FROM sqlite_master",
    "SELECT token FROM secrets",
    "VALUES ((SELECT email FROM customers LIMIT 1))",
]


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guard]:
    env = make_sqlite(tmp_path_factory.mktemp("redteam-sql"))
    g = Guard.from_text(env.policy_text(), audit=MemoryAuditSink())
    yield g
    g.close()


@pytest.mark.parametrize("sql", REFUSED)
def test_masked_or_denied_data_is_refused(guard: Guard, sql: str) -> None:
    with pytest.raises(StockadeError):
        guard.call("sql", "query", {"sql": sql})


def test_masked_column_selected_directly_is_masked(guard: Guard, tmp_path: Path) -> None:
    rows = guard.call("sql", "query", {"sql": "SELECT DISTINCT email FROM customers"}).value
    assert rows["rows"] and all(r == ["***"] for r in rows["rows"])
