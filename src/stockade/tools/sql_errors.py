"""The SQL tool's error messages: fixed texts by error code, never the engine's.

A database's own error message may quote row values: PostgreSQL answers
``SELECT CAST(name AS integer) FROM customers`` with ``invalid input syntax for
type integer: "Ada"``, MariaDB a write with ``Incorrect integer value:
'O'Brien'``, SQLite a JSON path taken from a column with ``JSON path error near
'...'``. Such a value would reach the model in the exception text, past the
result scanner, the table's masking, its labels and the flow stage. Scrubbing
quotes is not enough (a value may hold the quote character, and engines quote
in more than one way), so the engines never pass a message through.

Each error is mapped by its code (SQLSTATE on PostgreSQL, the error number on
MariaDB/MySQL, the shape of the message on SQLite, whose codes are too coarse)
to a fixed text naming its kind and the code. The only text a message may
quote is a piece of the agent's own statement, taken from that statement:

- PostgreSQL: the token at the position the server reported. Only parse,
  analysis and planning errors carry a position; errors raised while rows are
  read do not (and whatever the position, the token is the agent's own text).
- MariaDB/MySQL and SQLite: a name from a syntax, unknown-column, -table or
  -function error, only when it occurs in the statement as the agent sent it.
"""

from __future__ import annotations

import re

__all__ = ["mysql_error_text", "postgres_error_text", "sqlite_error_text"]

_MAX_TOKEN = 40
_TOKEN = re.compile(r'"(?:[^"]|"")*"|`(?:[^`]|``)*`|\w+|\S')

# -- PostgreSQL: SQLSTATE (exact code first, then its class) -------------------------

_PG_CODES: dict[str, str] = {
    "22001": "a value is too long for its type",
    "22003": "a number is out of range for its type",
    "22004": "a null value is not allowed here",
    "22007": "a value is not a valid date or time",
    "22008": "a date or time is out of range",
    "22012": "division by zero",
    "22021": "a value is not valid text in the database's encoding",
    "22023": "a function was given an invalid argument",
    "2201B": "a regular expression is not valid",
    "2202E": "an array subscript is out of range",
    "22P02": "a value could not be converted to the requested type",
    "22P05": "a character cannot be converted to the database's encoding",
    "23502": "a not-null constraint is violated",
    "23503": "a foreign-key constraint is violated",
    "23505": "a unique constraint is violated",
    "23514": "a check constraint is violated",
    "23P01": "an exclusion constraint is violated",
    "25006": "the database refused the statement: the transaction is read-only",
    "40001": "the transaction could not be serialized; try again",
    "40P01": "a deadlock was detected; try again",
    "42501": "the database refused the statement: permission denied",
    "42601": "syntax error",
    "42602": "a name in the statement is not valid",
    "42701": "a column is named twice",
    "42702": "a column reference is ambiguous",
    "42703": "a column named in the statement does not exist",
    "42704": "an object named in the statement does not exist",
    "42803": "a column must appear in the GROUP BY clause or be used in an aggregate",
    "42804": "a value has the wrong type for its place in the statement",
    "42809": "an object has the wrong kind for this statement",
    "42830": "a foreign key is not valid",
    "42846": "a value cannot be cast to the requested type",
    "42883": "a function or operator named in the statement does not exist",
    "42P01": "a table named in the statement does not exist",
    "42P02": "a parameter named in the statement does not exist",
    "42P10": "a column reference is not valid here",
    "42P18": "the type of a value could not be determined",
    "42P20": "a window function is used wrongly",
    "55P03": "a row or table is locked by another session",
    "57014": "the statement was cancelled",
}

_PG_CLASSES: dict[str, str] = {
    "0A": "the feature is not supported",
    "21": "a cardinality violation (a subquery returned more than one row)",
    "22": "a data exception (a value could not be processed)",
    "23": "an integrity constraint is violated",
    "25": "the transaction state does not allow the statement",
    "28": "the database refused the credentials",
    "2B": "a dependent object still exists",
    "40": "the transaction was rolled back; try again",
    "42": "the statement is not valid or not allowed",
    "53": "the database ran out of resources",
    "54": "the statement exceeds a limit of the database",
    "55": "an object is not in the required state",
    "57": "the database stopped the statement",
    "58": "a system error in the database",
    "XX": "an internal error in the database",
}


def _own_token(statement: str, offset: int) -> str | None:
    """The token of ``statement`` starting at ``offset`` (a piece of the agent's text)."""
    if offset < 0 or offset >= len(statement):
        return None
    match = _TOKEN.match(statement, offset)
    if match is None:
        return None
    return _short(match.group(0))


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TOKEN else text[: _MAX_TOKEN - 1] + "…"


def _quoted(token: str) -> str:
    return "`" + token.replace("`", "'") + "`"


def postgres_error_text(
    sqlstate: str | None, position: int | None, statement: str, prefix: int
) -> str:
    """A fixed message for a PostgreSQL error by its SQLSTATE.

    ``position`` is the 1-based character position the server reported in the
    text it was sent; ``prefix`` is how many characters of that text came
    before ``statement`` (the tool's own ``DECLARE ... FOR``).
    """
    code = (sqlstate or "").upper()
    kind = _PG_CODES.get(code) or _PG_CLASSES.get(code[:2], "the statement failed")
    text = f"{kind} (SQLSTATE {code})" if code else kind
    if position is not None:
        offset = position - 1 - prefix
        token = _own_token(statement, offset)
        if token is not None:
            text += f" at or near {_quoted(token)}"
        elif statement and offset >= len(statement):
            text += " at the end of the statement"
    return text


# -- MariaDB/MySQL: error numbers ------------------------------------------------------

_MYSQL_CODES: dict[int, str] = {
    1048: "a not-null column was given no value",
    1052: "a column reference is ambiguous",
    1054: "a column named in the statement does not exist",
    1060: "a column is named twice",
    1062: "a unique key is violated (duplicate entry)",
    1064: "syntax error",
    1066: "a table or alias is used twice",
    1111: "an aggregate function is used wrongly",
    1139: "a regular expression is not valid",
    1146: "a table named in the statement does not exist",
    1210: "a function was given invalid arguments",
    1216: "a foreign-key constraint is violated",
    1217: "a foreign-key constraint is violated",
    1222: "the SELECTs of the statement return different numbers of columns",
    1241: "an operand has the wrong number of columns",
    1242: "a subquery returned more than one row",
    1264: "a number is out of range for its column",
    1265: "a value was truncated for its column",
    1267: "the statement mixes incompatible collations",
    1292: "a value could not be converted to the requested type",
    1305: "a function named in the statement does not exist",
    1365: "division by zero",
    1366: "a value could not be converted to its column's type",
    1406: "a value is too long for its column",
    1411: "a value is not valid for a date or time function",
    1451: "a foreign-key constraint is violated (a row refers to this one)",
    1452: "a foreign-key constraint is violated (the referenced row does not exist)",
    1525: "a value is not valid for its type",
    1582: "a function was given the wrong number of arguments",
    1583: "a function was given invalid arguments",
    1630: "a function named in the statement does not exist",
    1690: "a number is out of range for its type",
    1792: "the database refused the statement: the transaction is read-only",
    3140: "a value is not valid JSON",
    3819: "a check constraint is violated",
    4025: "a check constraint is violated",
    4078: "a value has the wrong type for its operation",
}

_MYSQL_REFUSED = frozenset((1142, 1143, 1044, 1045, 1227, 1370, 1148, 1290))

# Messages whose quoted part is a piece of the statement: the part is quoted
# back only when it occurs in the statement as sent.
_MYSQL_OWN: dict[int, re.Pattern[str]] = {
    1064: re.compile(r"near '(.*)' at line \d+\s*$", re.DOTALL),
    1054: re.compile(r"^Unknown column '(.*)' in '[^']*'\s*$", re.DOTALL),
    1146: re.compile(r"^Table '(?:[^'.]*\.)?(.*)' doesn't exist\s*$", re.DOTALL),
    1305: re.compile(r"^(?:FUNCTION|PROCEDURE) (?:[^ .]*\.)?(\S+) does not exist", re.DOTALL),
}


def _in_statement(candidate: str, statement: str) -> str | None:
    """``candidate`` shortened when the agent's statement holds it, else ``None``."""
    if candidate and candidate.lower() in statement.lower():
        return _short(candidate)
    return None


def mysql_error_text(code: int, message: str, statement: str) -> str:
    """A fixed message for a MariaDB/MySQL error by its error number."""
    if code in _MYSQL_REFUSED:
        return f"the database refused the statement: permission denied (error {code})"
    kind = _MYSQL_CODES.get(code, "the statement failed")
    text = f"{kind} (error {code})" if code else kind
    pattern = _MYSQL_OWN.get(code)
    match = pattern.search(message) if pattern is not None else None
    if match is not None:
        near = match.group(1)
        if code == 1064 and not near.strip():
            return text + " at the end of the statement"
        own = _in_statement(near, statement)
        if own is not None:
            first = _own_token(own, 0) if code == 1064 else own
            if first is not None:
                text += f" at or near {_quoted(first)}" if code == 1064 else f": {_quoted(first)}"
    return text


# -- SQLite: message shapes ------------------------------------------------------------

_SQLITE_OWN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r'^near "(.*)": syntax error$', re.DOTALL), "syntax error at or near"),
    (
        re.compile(r"^no such column: (.*)$", re.DOTALL),
        "a column named in the statement does not exist:",
    ),
    (
        re.compile(r"^no such table: (.*)$", re.DOTALL),
        "a table named in the statement does not exist:",
    ),
    (
        re.compile(r"^no such function: (.*)$", re.DOTALL),
        "a function named in the statement does not exist:",
    ),
    (re.compile(r"^ambiguous column name: (.*)$", re.DOTALL), "a column reference is ambiguous:"),
    (
        re.compile(r"^wrong number of arguments to function (.*)\(\)$", re.DOTALL),
        "a function was given the wrong number of arguments:",
    ),
)

_SQLITE_FIXED: tuple[tuple[str, str], ...] = (
    ("incomplete input", "syntax error at the end of the statement"),
    ("UNIQUE constraint failed", "a unique constraint is violated"),
    ("NOT NULL constraint failed", "a not-null constraint is violated"),
    ("CHECK constraint failed", "a check constraint is violated"),
    ("FOREIGN KEY constraint failed", "a foreign-key constraint is violated"),
    ("datatype mismatch", "a value has the wrong type for its column"),
    ("integer overflow", "a number is out of range"),
    ("malformed JSON", "a value is not valid JSON"),
    ("JSON path error", "a JSON path is not valid"),
    ("too many terms", "the statement has too many terms"),
    ("string or blob too big", "a value is too large"),
    ("database is locked", "the database is locked by another connection"),
)


def sqlite_error_text(message: str, statement: str) -> str:
    """A fixed message for a SQLite error by the shape of its message."""
    for pattern, kind in _SQLITE_OWN:
        match = pattern.match(message)
        if match is not None:
            own = _in_statement(match.group(1), statement)
            return f"{kind} {_quoted(own)}" if own is not None else kind.rstrip(":")
    for start, kind in _SQLITE_FIXED:
        if message.startswith(start):
            return kind
    return "the statement failed"
