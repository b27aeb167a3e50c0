"""dashboards.macros against the plugin's own expectations (its pkg/macros/macros_test.go and
src/data/CHDatasource.test.ts cases, same inputs and outputs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboards.macros import MacroError, apply_conditional_all, apply_variables, expand

# The plugin's test range: 1415792726.123 .. 1447328726.456 (Unix seconds).
FROM = datetime.fromtimestamp(1415792726.123, UTC)
TO = datetime.fromtimestamp(1447328726.456, UTC)


@pytest.mark.parametrize(("sql", "expected"), [
    ("select * from foo where $__timeFilter(cast(sth as timestamp))",
     "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) AND cast(sth as timestamp) <= "
     "toDateTime(1447328726)"),
    ("select * from foo where $__timeFilter(cast(sth as timestamp) )",
     "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) AND cast(sth as timestamp) <= "
     "toDateTime(1447328726)"),
    ("select * from foo where $__timeFilter_ms(cast(sth as timestamp))",
     "select * from foo where cast(sth as timestamp) >= fromUnixTimestamp64Milli(1415792726123) AND "
     "cast(sth as timestamp) <= fromUnixTimestamp64Milli(1447328726456)"),
    ("select * from foo where ( date >= $__fromTime and date <= $__toTime ) limit 100",
     "select * from foo where ( date >= toDateTime(1415792726) and date <= toDateTime(1447328726) ) limit 100"),
    ("select * from foo where ( date >= $__fromTime_ms ) and ( date <= $__toTime_ms ) limit 100",
     "select * from foo where ( date >= fromUnixTimestamp64Milli(1415792726123) ) and "
     "( date <= fromUnixTimestamp64Milli(1447328726456) ) limit 100"),
    ("select $__timeInterval(t) as time", "select toStartOfInterval(toDateTime(t), INTERVAL 20 second) as time"),
    ("select $__timeInterval_ms(t)", "select toStartOfInterval(toDateTime64(t, 3), INTERVAL 20000 millisecond)"),
    ("select count() / $__interval_s", "select count() / 20"),
    ("select $__unknownMacro(x)", "select $__unknownMacro(x)"),
])
def test_backend_macros_as_the_plugin_expands_them(sql, expected):
    assert expand(sql, FROM, TO, timedelta(seconds=20)) == expected


def test_interval_is_at_least_one_second():
    assert expand("$__interval_s $__timeInterval(t)", FROM, TO, timedelta(milliseconds=50)) == \
        "1 toStartOfInterval(toDateTime(t), INTERVAL 1 second)"


def test_a_macro_with_the_wrong_argument_count_is_refused():
    with pytest.raises(MacroError):
        expand("select $__timeFilter(a, b)", FROM, TO, timedelta(seconds=1))


@pytest.mark.parametrize(("sql", "variables", "expected"), [
    ("select stuff from table where $__conditionalAll(fieldVal in ($fieldVal), $fieldVal);",
     {"fieldVal": "$__all"}, "select stuff from table where 1=1;"),
    ("select stuff from table where $__conditionalAll(fieldVal in ($fieldVal), $fieldVal);",
     {"fieldVal": "'val1', 'val2'"}, "select stuff from table where fieldVal in ($fieldVal);"),
    ("select stuff from table where $__conditionalAll(fieldVal in ($fieldVal), $fieldVal) and "
     "$__conditionalAll(fieldVal in ($fieldVal2), $fieldVal2);",
     {"fieldVal": "'val1', 'val2'", "fieldVal2": "$__all"},
     "select stuff from table where fieldVal in ($fieldVal) and 1=1;"),
    ("where $__conditionalAll(c = '${c}', ${c})", {"c": ""}, "where 1=1"),
])
def test_conditional_all_as_the_frontend_applies_it(sql, variables, expected):
    assert apply_conditional_all(sql, variables) == expected


@pytest.mark.parametrize(("sql", "variables", "expected"), [
    ("c = '${cluster}' AND d = '$cluster' AND e = '[[cluster]]'", {"cluster": "c-1"},
     "c = 'c-1' AND d = 'c-1' AND e = 'c-1'"),
    ("c IN ($many)", {"many": ["a", "b"]}, "c IN ('a','b')"),
    ("$__timeFilter(t) AND $unknown", {"cluster": "x"}, "$__timeFilter(t) AND $unknown"),
])
def test_template_variables_as_grafana_formats_them_for_the_plugin(sql, variables, expected):
    assert apply_variables(sql, variables) == expected


@pytest.mark.parametrize("module", ["dashboards.macros", "dashboards.query"])
def test_docstring_examples(module):
    """make test runs doctests for pipelines/services/alerts; the dashboards package's run here."""
    import doctest
    import importlib

    failed, attempted = doctest.testmod(importlib.import_module(module))
    assert attempted and not failed
