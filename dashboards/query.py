"""The ClickHouse data source's query model, which grafana-foundation-sdk does not ship.

A subclass of the SDK's ``Dataquery`` variant (as in the SDK's ``examples/python/custom-query``)
emitting what the grafana-clickhouse-datasource plugin stores for a query written in its SQL
editor: ``editorType: "sql"``, ``rawSql``, ``format`` (0 time series, 1 table), ``queryType``,
``pluginVersion`` and the data source reference.

>>> ClickHouseQueryBuilder("SELECT 1 AS x").ref_id("A").build().to_json()["editorType"]
'sql'
"""

from __future__ import annotations

import textwrap
from enum import IntEnum
from typing import Any, Self

from grafana_foundation_sdk.cog import builder, variants
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.models.dashboard import DataSourceRef

PLUGIN_ID = "grafana-clickhouse-datasource"
# The plugin release whose query model and macro rules (pkg/macros/macros.go,
# src/data/CHDatasource.ts applyConditionalAll) these dashboards and dashboards.macros follow.
PLUGIN_VERSION = "4.20.0"
# The provisioned data source (dashboards/provisioning/datasources/clickhouse.yaml).
DATASOURCE_UID = "faithwatch-clickhouse"
DATASOURCE = DataSourceRef(type_val=PLUGIN_ID, uid=DATASOURCE_UID)


class Format(IntEnum):
    """The plugin's result formats (its ``Format`` enum)."""

    TIME_SERIES = 0
    TABLE = 1


class ClickHouseQuery(variants.Dataquery):
    """One SQL query of the ClickHouse plugin."""

    def __init__(self, raw_sql: str, fmt: Format = Format.TABLE, ref_id: str | None = None,
                 hide: bool | None = None):
        self.raw_sql = raw_sql
        self.format = Format(fmt)
        self.ref_id = ref_id
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "datasource": DATASOURCE.to_json(),
            "editorType": "sql",
            "format": int(self.format),
            "pluginVersion": PLUGIN_VERSION,
            "queryType": "timeseries" if self.format == Format.TIME_SERIES else "table",
            "rawSql": self.raw_sql,
        }
        if self.ref_id is not None:
            payload["refId"] = self.ref_id
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(raw_sql=data.get("rawSql", ""), fmt=Format(data.get("format", Format.TABLE)),
                   ref_id=data.get("refId"), hide=data.get("hide"))


def variant_config() -> cogruntime.DataqueryConfig:
    """Registers the query type so the SDK can read dashboards that hold it back."""
    return cogruntime.DataqueryConfig(identifier=PLUGIN_ID, from_json_hook=ClickHouseQuery.from_json)


class ClickHouseQueryBuilder(builder.Builder[ClickHouseQuery]):
    def __init__(self, raw_sql: str, fmt: Format = Format.TABLE):
        self._query = ClickHouseQuery(raw_sql=raw_sql, fmt=fmt)

    def build(self) -> ClickHouseQuery:
        return self._query

    def ref_id(self, ref_id: str) -> Self:
        self._query.ref_id = ref_id
        return self

    def hide(self, hide: bool) -> Self:
        self._query.hide = hide
        return self


def table_query(sql: str, ref_id: str = "A") -> ClickHouseQueryBuilder:
    return ClickHouseQueryBuilder(textwrap.dedent(sql).strip(), Format.TABLE).ref_id(ref_id)


def series_query(sql: str, ref_id: str = "A") -> ClickHouseQueryBuilder:
    return ClickHouseQueryBuilder(textwrap.dedent(sql).strip(), Format.TIME_SERIES).ref_id(ref_id)
