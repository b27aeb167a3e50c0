"""Grafana dashboards as code (grafana-foundation-sdk). Empty for now: the dashboards are built
on top of the ClickHouse rollups that the storage issue adds."""
