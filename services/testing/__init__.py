"""Test doubles that are real components, shipped with the package so users can test with them.

:mod:`services.testing.clickhouse_http`: a server that speaks the ClickHouse HTTP interface on
127.0.0.1 and runs every request on chDB, for testing the ClickHouse server backend without a
ClickHouse server.
"""
