"""Shared defaults of the three dashboards: the data source, panel styles, links, and the SQL
that reads the rollup tiers.

Rollups (docs/storage.md): ``rollup_minutes``, ``rollup_hours``, ``rollup_days``, one shape,
ORDER BY (cluster_id, bucket). A panel reads the coarsest tier that still answers it:

- time series (:func:`rollup_by_interval`): the tier whose bucket divides ``$__interval_s``
  (days for 1d, 7d, ...; hours for 1h, 3h, 12h; minutes otherwise);
- whole-range numbers (:func:`rollup_over_range`): minutes up to 6 h, hours up to 31 days, days
  beyond. Both round the range's start down to the tier's bucket.

The choice is a constant condition in each ``UNION ALL`` branch (the expanded macros are
literals), so ClickHouse reads only the chosen tier.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard, stat, table, text, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from dashboards.query import DATASOURCE

TAG = "faithwatch"
# The one Grafana folder the dashboards live in (provisioning/dashboards/faithwatch.yaml, and
# what `faithwatch dashboards sync` creates).
FOLDER_UID, FOLDER_TITLE = "faithwatch", "faithwatch"
OVERVIEW_UID, CLUSTER_UID, INCIDENT_UID = "faithwatch-overview", "faithwatch-cluster", "faithwatch-incident"
# Quantile levels of the rollup states (migration 0003): index 3 is the median.
LEVELS = "0.05, 0.25, 0.5, 0.75, 0.95"
QUANTILES = f"quantilesExactWeightedInterpolatedMerge({LEVELS})"
# An incident's member clusters (older rows have none: the incident's one cluster).
MEMBERS = "if(empty(member_clusters), [cluster_id], member_clusters)"

_TIERS = (
    ("rollup_minutes", "toStartOfMinute", "$__interval_s < 3600 OR $__interval_s % 3600 != 0",
     "dateDiff('second', $__fromTime, $__toTime) <= 21600"),
    ("rollup_hours", "toStartOfHour",
     "$__interval_s >= 3600 AND $__interval_s % 3600 = 0 AND $__interval_s % 86400 != 0",
     "dateDiff('second', $__fromTime, $__toTime) > 21600 AND dateDiff('second', $__fromTime, $__toTime) <= 2678400"),
    ("rollup_days", "toStartOfDay", "$__interval_s % 86400 = 0",
     "dateDiff('second', $__fromTime, $__toTime) > 2678400"),
)


def _tiers(columns: str, where: str, by_interval: bool) -> str:
    branches = []
    for table_name, start_of, interval_rule, range_rule in _TIERS:
        rule = interval_rule if by_interval else range_rule
        branches.append(f"SELECT {columns} FROM {table_name} "
                        f"WHERE bucket >= {start_of}($__fromTime) AND bucket <= $__toTime "
                        f"AND ({rule}){' AND ' + where if where else ''}")
    return "\n        UNION ALL ".join(branches)


def rollup_by_interval(columns: str = "*", where: str = "") -> str:
    """Rollup rows of the tier that fits ``$__interval_s``, for ``$__timeInterval(bucket)``."""
    return _tiers(columns, where, by_interval=True)


def rollup_over_range(columns: str = "*", where: str = "") -> str:
    """Rollup rows of the tier that fits the length of the time range, for range totals."""
    return _tiers(columns, where, by_interval=False)


def ds() -> DataSourceRef:
    return DATASOURCE


def link(title: str, url: str) -> dashboard.DashboardLink:
    """A data link (a click on a value); ``${__url_time_range}`` keeps the time range."""
    return dashboard.DashboardLink(title).type(DashboardLinkType.LINK).url(url)


def cluster_link(field: str = "cluster_id") -> dashboard.DashboardLink:
    return link(f"Cluster ${{__data.fields.{field}}}",
                f"/d/{CLUSTER_UID}/cluster?var-cluster=${{__data.fields.{field}}}&${{__url_time_range}}")


def incident_link(field: str = "incident_id") -> dashboard.DashboardLink:
    return link(f"Incident ${{__data.fields.{field}}}",
                f"/d/{INCIDENT_UID}/incident?var-incident=${{__data.fields.{field}}}&${{__url_time_range}}")


def dashboard_links() -> list[dashboard.DashboardLink]:
    """The three dashboards link to each other (by tag), keeping time and variables."""
    return [dashboard.DashboardLink("faithwatch").type(DashboardLinkType.DASHBOARDS).tags([TAG])
            .as_dropdown(False).keep_time(True).include_vars(True)]


def base_dashboard(title: str, uid: str, description: str) -> dashboard.Dashboard:
    builder = (dashboard.Dashboard(title).uid(uid).description(description).tags([TAG]).editable()
               .time("now-24h", "now").timezone("utc").refresh("1m"))
    for each in dashboard_links():
        builder = builder.link(each)
    return builder


def query_variable(name: str, label: str, sql: str) -> dashboard.QueryVariable:
    """A single-value variable from SQL: first column the value, second the text shown."""
    return (dashboard.QueryVariable(name).label(label).datasource(ds()).query(sql.strip())
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.DISABLED)
            .multi(False).include_all(False).current(VariableOption(selected=False, text="", value="")))


def default_stat(title: str, unit: str = "none") -> stat.Panel:
    return (stat.Panel().title(title).datasource(ds()).height(4).span(6).unit(unit)
            .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .color_mode(common.BigValueColorMode.VALUE).graph_mode(common.BigValueGraphMode.NONE))


def default_table(title: str) -> table.Panel:
    return table.Panel().title(title).datasource(ds()).height(9).span(24).filterable(True)


def default_timeseries(title: str, unit: str = "none") -> timeseries.Panel:
    return (timeseries.Panel().title(title).datasource(ds()).height(8).span(12).unit(unit)
            .line_width(1).fill_opacity(10).show_points(common.VisibilityMode.NEVER).span_nulls(False)
            .legend(common_builder.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                    .placement(common.LegendPlacement.BOTTOM).show_legend(True))
            .tooltip(common_builder.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                     .sort(common.SortOrder.NONE)))


def markdown(title: str, content: str) -> text.Panel:
    return text.Panel().title(title).height(4).span(12).content(content.strip())

