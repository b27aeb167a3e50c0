"""Grafana dashboards as code (grafana-foundation-sdk, the Grafana 11.6 build).

Three linked dashboards over the ClickHouse tables (docs/dashboards.md): ``overview``,
``cluster`` (variable ``cluster``) and ``incident`` (uid ``faithwatch-incident``, variable
``incident``). One function per panel; shared defaults in :mod:`dashboards.common`; the
ClickHouse query model in :mod:`dashboards.query`; the generated JSON is committed under
``dashboards/json/`` (``python -m dashboards`` or ``faithwatch dashboards generate``).
"""
