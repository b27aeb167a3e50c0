"""What Grafana and the ClickHouse plugin do to a panel's SQL before ClickHouse sees it.

The same steps, in the same order, with the plugin's own rules (grafana/clickhouse-datasource
4.20: ``src/data/CHDatasource.ts`` for the first two, ``pkg/macros/macros.go`` for the third):

1. ``$__conditionalAll(phrase, $var)`` (frontend, ``applyConditionalAll``): replaced by ``1=1``
   when the variable's value is empty or ``$__all``, by the phrase otherwise; the last
   occurrence first, arguments split at top-level commas.
2. Template variables ``$name``, ``${name}``, ``[[name]]`` (Grafana's template service with the
   plugin's ``format``): a list becomes ``'a','b'``, a single value is inserted as it is.
3. Backend macros (``$__timeFilter(col)`` and the rest, below): times in whole seconds
   (``toDateTime(unix)``) or milliseconds (``fromUnixTimestamp64Milli(ms)``), the interval at
   least 1 s. An unknown macro is left as it is (ClickHouse then refuses the query).

Tests run every panel's SQL through :func:`expand` on a real store; ``dashboards render``
draws the panels from it.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> expand("SELECT 1 WHERE $__timeFilter(t) AND $__conditionalAll(c IN ($c), $c)",
...        t0, t0 + timedelta(hours=1), timedelta(minutes=1), {"c": "$__all"})
'SELECT 1 WHERE t >= toDateTime(1767225600) AND t <= toDateTime(1767229200) AND 1=1'
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

Value = str | Sequence[str]
_CONDITIONAL_ALL = "$__conditionalAll("
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")
_MACRO = re.compile(r"\$__(\w+)")


class MacroError(ValueError):
    """A macro with the wrong number of arguments (the plugin refuses the query too)."""


def macro_args(sql: str, open_paren: int) -> list[str] | None:
    """Arguments of the call whose ``(`` is at ``open_paren``: split at commas at depth 1
    (CHDatasource.getMacroArgs); None when the parentheses never close."""
    depth, start, args = 0, open_paren + 1, []
    for index in range(open_paren, len(sql)):
        char = sql[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 1:
            args.append(sql[start:index])
            start = index + 1
        if depth == 0:
            args.append(sql[start:index])
            return args
    return None


def apply_conditional_all(sql: str, variables: Mapping[str, Value]) -> str:
    index = sql.rfind(_CONDITIONAL_ALL)
    while index != -1:
        args = macro_args(sql, index + len(_CONDITIONAL_ALL) - 1)
        if args is None or len(args) != 2:
            return sql
        phrase = args[0]
        found = re.search(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+", args[1].strip())
        if found:
            value = variables.get(found.group(0))
            text = ",".join(value) if isinstance(value, list | tuple) else ("" if value is None else str(value))
            if text in ("", "$__all"):
                phrase = "1=1"
        sql = sql.replace(f"{_CONDITIONAL_ALL}{args[0]},{args[1]})", phrase, 1)
        index = sql.rfind(_CONDITIONAL_ALL)
    return sql


def apply_variables(sql: str, variables: Mapping[str, Value]) -> str:
    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in variables:
            return match.group(0)
        value = variables[name]
        if isinstance(value, list | tuple):
            return "'" + "','".join(value) + "'"
        return str(value)

    return _VARIABLE.sub(one, sql)


def _seconds(at: datetime) -> str:
    return f"toDateTime({math.floor(at.timestamp())})"


def _millis(at: datetime) -> str:
    return f"fromUnixTimestamp64Milli({math.floor(at.timestamp() * 1000)})"


def _one(name: str, args: list[str] | None) -> str:
    if args is None or len(args) != 1:
        raise MacroError(f"$__{name} expected 1 argument(s), received {0 if args is None else len(args)}")
    return args[0]


def _macros(start: datetime, end: datetime, interval: timedelta) -> dict[str, Callable[[list[str] | None], str]]:
    seconds = int(max(interval.total_seconds(), 1))
    millis = int(max(interval.total_seconds() * 1000, 1))
    return {
        "timeFilter": lambda a: (f"{_one('timeFilter', a)} >= {_seconds(start)} AND "
                                 f"{_one('timeFilter', a)} <= {_seconds(end)}"),
        "timeFilter_ms": lambda a: (f"{_one('timeFilter_ms', a)} >= {_millis(start)} AND "
                                    f"{_one('timeFilter_ms', a)} <= {_millis(end)}"),
        "timeFrom": lambda a: f"{_one('timeFrom', a)} >= {_seconds(start)}",
        "timeTo": lambda a: f"{_one('timeTo', a)} <= {_seconds(end)}",
        "fromTime": lambda a: _seconds(start),
        "toTime": lambda a: _seconds(end),
        "fromTime_ms": lambda a: _millis(start),
        "toTime_ms": lambda a: _millis(end),
        "timeInterval": lambda a: (f"toStartOfInterval(toDateTime({_one('timeInterval', a)}), "
                                   f"INTERVAL {seconds} second)"),
        "timeInterval_ms": lambda a: (f"toStartOfInterval(toDateTime64({_one('timeInterval_ms', a)}, 3), "
                                      f"INTERVAL {millis} millisecond)"),
        "interval_s": lambda a: str(seconds),
    }


def apply_macros(sql: str, start: datetime, end: datetime, interval: timedelta) -> str:
    handlers = _macros(start, end, interval)
    out, position = [], 0
    for match in _MACRO.finditer(sql):
        if match.start() < position:
            continue
        name = match.group(1)
        # The longest known name wins ($__timeFilter_ms before $__timeFilter).
        while name not in handlers and "_" in name:
            name = name.rsplit("_", 1)[0]
        if name not in handlers:
            continue
        end_of_name = match.start() + 3 + len(name)
        args = None
        if end_of_name < len(sql) and sql[end_of_name] == "(":
            args = macro_args(sql, end_of_name)
            if args is None:
                raise MacroError(f"$__{name}: unclosed parenthesis")
            after = end_of_name + len(",".join(args)) + 2
            args = [arg.strip() for arg in args]
        else:
            after = end_of_name
        out.append(sql[position:match.start()])
        out.append(handlers[name](args))
        position = after
    out.append(sql[position:])
    return "".join(out)


def expand(sql: str, start: datetime, end: datetime, interval: timedelta,
           variables: Mapping[str, Value] | None = None) -> str:
    """The SQL ClickHouse receives for a panel over ``[start, end]`` at ``interval``."""
    variables = variables or {}
    return apply_macros(apply_variables(apply_conditional_all(sql, variables), variables), start, end, interval)
