"""Test doubles that are real components, shipped with the package so users can test with them.

:mod:`services.testing.clickhouse_http`: a server that speaks the ClickHouse HTTP interface on
127.0.0.1 and runs every request on chDB, for testing the ClickHouse server backend without a
ClickHouse server.
:mod:`services.testing.tansu`: a Kafka-compatible broker (tansu) on a free 127.0.0.1 port.
:mod:`services.testing.receiver`: an HTTP receiver that records requests and fails on demand
(a stand-in for PagerDuty, Slack or a webhook endpoint).
:mod:`services.testing.alertmanager`: Debian's Prometheus Alertmanager on a free port, routed to
a receiver.
"""

import subprocess


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM ``process`` if it still runs, wait up to ``timeout`` seconds, then SIGKILL it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
