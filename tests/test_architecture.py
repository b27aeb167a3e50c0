"""The core stays pure: pipelines/ imports no I/O library and none of the shells."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = {"faust", "clickhouse_connect", "chdb", "httpx", "fastapi", "starlette",
                     "uvicorn", "grafana_foundation_sdk", "grafana_client", "requests", "aiokafka",
                     "services", "alerts", "dashboards", "os", "socket", "subprocess"}
FORBIDDEN_IN_POLICY = {"services"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "pipelines").rglob("*.py")), ids=lambda p: p.name)
def test_core_imports_no_io_library(path):
    assert imports_of(path) & FORBIDDEN_IN_CORE == set()


@pytest.mark.parametrize("path", sorted([*(ROOT / "alerts").rglob("*.py"), *(ROOT / "dashboards").rglob("*.py")]),
                         ids=lambda p: p.name)
def test_alerts_and_dashboards_do_not_import_services(path):
    assert imports_of(path) & FORBIDDEN_IN_POLICY == set()


def test_core_reads_no_wall_clock_or_environment():
    for path in (ROOT / "pipelines").rglob("*.py"):
        text = path.read_text()
        for needle in ("datetime.now(", "datetime.utcnow(", "time.time(", "os.environ", "getenv("):
            assert needle not in text, f"{path.name} uses {needle}"


def test_nothing_reads_the_shared_folder_at_run_time():
    for folder in ("pipelines", "services", "alerts", "dashboards", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == Path(__file__).resolve():
                continue
            assert "/work/shared" not in path.read_text() and "../shared" not in path.read_text(), path


def test_only_the_command_line_imports_the_command_line():
    """The HTTP API, the drivers and the store share what the CLI also uses (services.columns,
    services.store.open_store) instead of importing it from the CLI."""
    for path in (ROOT / "services").rglob("*.py"):
        if path.name == "cli.py" or path.name.startswith("cli_"):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m == "services.cli" or m.startswith("services.cli_") for m in modules), path
