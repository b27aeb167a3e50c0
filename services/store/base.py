"""The storage interface: every query is written once here, backends only run SQL.

A backend implements four primitives (:meth:`Store.query`, :meth:`Store.command`,
:meth:`Store._insert`, :meth:`Store.close`); the domain methods build their SQL from fixed
fragments and pass every caller-supplied value as a bound ``{name:Type}`` parameter, which
chDB and a ClickHouse server (clickhouse-connect, server-side binding) both understand.

Values cross the boundary as plain Python: aware datetimes (stored at millisecond precision in
UTC; naive datetimes are refused), bools, ints, floats, strings, lists and ``None``.
Deduplicated reads use ``FINAL``: replays and retries never double-count.
"""

from __future__ import annotations

import abc
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from types import TracebackType
from typing import Any, Self

from pipelines.interaction import DeadLetter
from pipelines.records import ClusterInfo, IncidentEvent, ScoredInteraction

Row = dict[str, Any]

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_RECIPE_NAME = re.compile(r"^[a-z0-9_]+$")
_TTL_DAYS = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)")
# (table, time column) that a retention setting applies to, see Store.apply_ttl.
_TTL_TABLES = {"interactions": "timestamp", "interaction_minutes": "minute"}
# The levels fixed in 0002_minute_rollups' quantile states, and the columns they are read into.
_QUANTILE_LEVELS = ("p05", "p25", "p50", "p75", "p95")
_INCIDENT_JSON_COLUMNS = ("suggested_gate", "shared_documents", "examples")
_TABLES = ("interactions", "clusters", "incident_events", "incidents", "dead_letters",
           "schema_migrations")

# One row per session: the worst answer (lowest faithfulness, then earliest) is the example.
_SESSION_COLUMNS = """
    session_id,
    any(customer_id) AS customer_id,
    min(timestamp) AS first_at,
    max(timestamp) AS last_at,
    count() AS interactions,
    countIf(below_baseline) AS below_baseline_count,
    countIf(confident_wrong) AS confident_wrong_count,
    min(faithfulness) AS worst_faithfulness,
    argMin(tuple(interaction_id, query, response),
           tuple(ifNull(faithfulness, 2.0), timestamp, interaction_id)) AS example"""


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is a bug, never guessed to be UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: pass an aware datetime")
    return value.astimezone(UTC)


def migrations() -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` of every ``migrations/NNNN_name.sql``, in version order."""
    found = []
    for entry in resources.files("services.store").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name.removesuffix(".sql"),
                          entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [version for version, _, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number: {[name for _, name, _ in found]}")
    return found


def statements(sql: str) -> Iterator[str]:
    """The statements of a migration: each ends with ``;`` at the end of a non-comment line.

    >>> list(statements("-- why;\\nSELECT 1;\\nSELECT 2\\n;\\n-- trailing note\\n"))
    ['-- why;\\nSELECT 1', 'SELECT 2']
    """
    lines: list[str] = []
    for line in sql.splitlines():
        lines.append(line)
        if not line.lstrip().startswith("--") and line.rstrip().endswith(";"):
            lines[-1] = line.rstrip()[:-1]
            if any(text.strip() and not text.lstrip().startswith("--") for text in lines):
                yield "\n".join(lines).strip()
            lines = []
    if any(text.strip() and not text.lstrip().startswith("--") for text in lines):
        raise ValueError(f"a migration statement does not end with ';': {lines}")


def interaction_row(row: ScoredInteraction) -> Row:
    columns = row.model_dump(exclude={"contexts", "metadata"})
    columns["context_doc_ids"] = [c.doc_id for c in row.contexts]
    columns["context_doc_versions"] = [c.doc_version for c in row.contexts]
    columns["context_stale"] = [c.stale for c in row.contexts]
    columns["metadata"] = None if row.metadata is None else json.dumps(row.metadata)
    return columns


def interaction_from_row(row: Mapping[str, Any]) -> ScoredInteraction:
    """The inverse of :func:`interaction_row` (for ``SELECT * FROM interactions``)."""
    values = dict(row)
    contexts = zip(values.pop("context_doc_ids"), values.pop("context_doc_versions"),
                   values.pop("context_stale"), strict=True)
    values["contexts"] = [{"doc_id": doc_id, "doc_version": version, "stale": stale}
                          for doc_id, version, stale in contexts]
    metadata = values.pop("metadata")
    values["metadata"] = None if metadata is None else json.loads(metadata)
    return ScoredInteraction.model_validate(values)


def cluster_row(row: ClusterInfo) -> Row:
    return row.model_dump()


def incident_event_row(row: IncidentEvent) -> Row:
    columns = row.model_dump(exclude=set(_INCIDENT_JSON_COLUMNS))
    for name in _INCIDENT_JSON_COLUMNS:
        value = row.model_dump(mode="json", include={name})[name]
        columns[name] = None if value is None else json.dumps(value)
    return columns


def _incident_from_row(row: Row) -> Row:
    for name in _INCIDENT_JSON_COLUMNS:
        if row.get(name) is not None:
            row[name] = json.loads(row[name])
    return row


def dead_letter_row(row: DeadLetter) -> Row:
    return row.model_dump()


def recipe_names() -> list[str]:
    """The analyst recipes shipped in ``recipes/*.sql``, by name."""
    folder = resources.files("services.store").joinpath("recipes")
    return sorted(entry.name.removesuffix(".sql") for entry in folder.iterdir()
                  if entry.name.endswith(".sql"))


def recipe_sql(name: str) -> str:
    """The one statement of recipe ``name`` (its comments included, its ``;`` removed)."""
    if not _RECIPE_NAME.match(name) or name not in recipe_names():
        raise ValueError(f"no recipe {name!r}; known: {', '.join(recipe_names())}")
    text = resources.files("services.store").joinpath("recipes", f"{name}.sql").read_text(encoding="utf-8")
    found = list(statements(text))
    if len(found) != 1:
        raise ValueError(f"recipe {name} must hold exactly one statement, found {len(found)}")
    return found[0]


def recipe_parameters(sql: str) -> dict[str, str]:
    """``{name: type}`` of the ``{name:Type}`` placeholders in ``sql``.

    >>> recipe_parameters("SELECT {a:String}, {b:DateTime64(3, 'UTC')}, {a:String}")
    {'a': 'String', 'b': "DateTime64(3, 'UTC')"}
    """
    return {match.group(1): match.group(2).strip()
            for match in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}", sql)}


def _session_from_row(row: Row) -> Row:
    interaction_id, query, response = row.pop("example")
    row.update(example_interaction_id=interaction_id, example_query=query,
               example_response=response)
    return row


class Store(abc.ABC):
    """Rows in, analyst answers out. Use as a context manager or call :meth:`close`."""

    # ---- backend primitives -------------------------------------------------------------

    @abc.abstractmethod
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Rows of a SELECT as dicts; values in ``params`` bind ``{name:Type}`` placeholders."""

    @abc.abstractmethod
    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run one statement that returns nothing (DDL, ``INSERT ... SELECT``)."""

    @abc.abstractmethod
    def _insert(self, table: str, rows: Sequence[Row]) -> None:
        """Write ``rows`` (same keys, named as columns) to ``table`` in one INSERT."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the backend; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---- schema -------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations in order; returns the names applied (``[]`` when current)."""
        applied = self._applied_versions()
        names = []
        for version, name, sql in migrations():
            if version in applied:
                continue
            for statement in statements(sql):
                self.command(statement)
            self.command("INSERT INTO schema_migrations (version, name, applied_at) "
                         "SELECT {version:UInt32}, {name:String}, now64(3)",
                         {"version": version, "name": name})
            names.append(name)
        return names

    def _applied_versions(self) -> set[int]:
        exists = self.query("SELECT count() AS n FROM system.tables "
                            "WHERE database = currentDatabase() AND name = 'schema_migrations'")
        if not exists[0]["n"]:
            return set()
        return {row["version"] for row in self.query("SELECT version FROM schema_migrations FINAL")}

    def ttl_days(self) -> dict[str, int | None]:
        """The retention in days of each table :meth:`apply_ttl` manages (None: kept forever)."""
        names = ", ".join(f"'{table}'" for table in _TTL_TABLES)  # fixed names, not input
        rows = self.query("SELECT name, engine_full FROM system.tables "
                          f"WHERE database = currentDatabase() AND name IN ({names})")
        found = {}
        for row in rows:
            match = _TTL_DAYS.search(row["engine_full"])
            found[row["name"]] = int(match.group(1)) if match else None
        return found

    def apply_ttl(self, interactions_days: int | None, rollup_days: int | None = None) -> list[str]:
        """Set (or remove, with None) the retention of raw interactions and of the rollups.

        Only a value that differs from the table's current TTL is altered, so running it on
        every ``migrate`` is cheap. ClickHouse deletes expired rows when it merges parts (and in
        the background mutation an ALTER starts), not at the exact second. Returns what changed.
        """
        current = self.ttl_days()
        changes = []
        for table, days in (("interactions", interactions_days), ("interaction_minutes", rollup_days)):
            if table not in current or current[table] == days:
                continue
            if days is None:
                self.command(f"ALTER TABLE {table} REMOVE TTL")
            else:
                if isinstance(days, bool) or not isinstance(days, int) or days < 1:
                    raise ValueError(f"a TTL is a whole number of days >= 1, got {days!r}")
                # A DDL expression cannot take a bound parameter; days is a checked int.
                self.command(f"ALTER TABLE {table} MODIFY TTL toDateTime({_TTL_TABLES[table]}) "
                             f"+ toIntervalDay({days})")
            changes.append(f"{table}: TTL {'none' if days is None else f'{days} days'}")
        return changes

    # ---- writes -------------------------------------------------------------------------

    def insert_interactions(self, rows: Sequence[ScoredInteraction]) -> None:
        if rows:
            self._insert("interactions", [interaction_row(row) for row in rows])

    def upsert_clusters(self, rows: Sequence[ClusterInfo]) -> None:
        if rows:
            self._insert("clusters", [cluster_row(row) for row in rows])

    def insert_incident_events(self, rows: Sequence[IncidentEvent]) -> None:
        if rows:
            self._insert("incident_events", [incident_event_row(row) for row in rows])

    def insert_dead_letters(self, rows: Sequence[DeadLetter]) -> None:
        if rows:
            self._insert("dead_letters", [dead_letter_row(row) for row in rows])

    # ---- reads --------------------------------------------------------------------------

    def list_incidents(self, status: str | None = None, cluster_id: str | None = None,
                       category: str | None = None, since: datetime | None = None,
                       until: datetime | None = None, limit: int = 100) -> list[Row]:
        """Latest state per incident, most recently detected first.

        ``since``/``until`` select incidents active at some point in ``[since, until]``:
        onset at or before ``until`` and not resolved before ``since``.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        where = []
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            where.append("status = {status:String}")
            params["status"] = status
        if cluster_id is not None:
            where.append("cluster_id = {cluster_id:String}")
            params["cluster_id"] = cluster_id
        if category is not None:
            where.append("category = {category:String}")
            params["category"] = category
        if since is not None:
            where.append("(resolved_at IS NULL OR resolved_at >= {since:DateTime64(3, 'UTC')})")
            params["since"] = utc(since)
        if until is not None:
            where.append("onset_at <= {until:DateTime64(3, 'UTC')}")
            params["until"] = utc(until)
        sql = ("SELECT * FROM incidents"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY detected_at DESC, incident_id LIMIT {limit:UInt64}")
        return [_incident_from_row(row) for row in self.query(sql, params)]

    def get_incident(self, incident_id: str) -> Row | None:
        """The latest state of one incident with its ``events`` in sequence order, or None."""
        events = [_incident_from_row(row) for row in self.query(
            "SELECT * FROM incident_events FINAL WHERE incident_id = {incident_id:String} "
            "ORDER BY sequence", {"incident_id": incident_id})]
        if not events:
            return None
        return {**events[-1], "events": events}

    def incident_sessions(self, incident_id: str) -> list[Row]:
        """The blast radius: one row per session that got a below-baseline answer in the
        incident's cluster between its onset and its resolution (unbounded while open).

        ``interactions`` counts those answers; the example is the session's worst one.
        Answers without a session id are grouped into one row with ``session_id`` None.
        """
        sql = f"""
            SELECT {_SESSION_COLUMNS}
            FROM interactions AS i FINAL
            INNER JOIN (
                SELECT cluster_id, onset_at, resolved_at FROM incidents
                WHERE incident_id = {{incident_id:String}}
            ) AS inc ON i.cluster_id = inc.cluster_id
            WHERE i.below_baseline
              AND i.timestamp >= inc.onset_at
              AND (inc.resolved_at IS NULL OR i.timestamp <= inc.resolved_at)
            GROUP BY session_id
            ORDER BY first_at, session_id"""
        return [_session_from_row(row) for row in self.query(sql, {"incident_id": incident_id})]

    def sessions(self, cluster_id: str, since: datetime, until: datetime | None = None,
                 below_baseline: bool = True) -> list[Row]:
        """One row per session with answers in ``cluster_id`` during ``[since, until)``.

        With ``below_baseline`` only failing answers count (the analyst's "which sessions got
        a failing answer"); without it every answer does. Same columns as
        :meth:`incident_sessions`.
        """
        where = ["cluster_id = {cluster_id:String}",
                 "timestamp >= {since:DateTime64(3, 'UTC')}"]
        params: dict[str, Any] = {"cluster_id": cluster_id, "since": utc(since)}
        if until is not None:
            where.append("timestamp < {until:DateTime64(3, 'UTC')}")
            params["until"] = utc(until)
        if below_baseline:
            where.append("below_baseline")
        sql = (f"SELECT {_SESSION_COLUMNS} FROM interactions FINAL WHERE "
               + " AND ".join(where) + " GROUP BY session_id ORDER BY first_at, session_id")
        return [_session_from_row(row) for row in self.query(sql, params)]

    def list_clusters(self) -> list[Row]:
        return self.query("SELECT * FROM clusters FINAL ORDER BY cluster_id")

    def counts(self) -> dict[str, int]:
        """Rows per table after deduplication (``incidents``: distinct incidents)."""
        sql = " UNION ALL ".join(
            f"SELECT '{table}' AS table, count() AS n FROM {table}"
            + (" FINAL" if table != "incidents" else "") for table in _TABLES)
        return {row["table"]: row["n"] for row in self.query(sql)}

    def rollups(self, since: datetime, until: datetime, cluster_id: str | None = None,
                step_minutes: int = 1) -> list[Row]:
        """Per-cluster rates from the per-minute rollups, in buckets of ``step_minutes``.

        Buckets start on multiples of the step since the epoch (1440: UTC days), cover
        ``[since, until)`` at minute resolution and appear only where there were answers.
        Counts are distinct interactions; ``faithfulness_pNN``/``confidence_pNN`` are
        quantiles over the answers that have a value (None when none has).
        """
        if isinstance(step_minutes, bool) or not isinstance(step_minutes, int) or step_minutes < 1:
            raise ValueError(f"step_minutes must be an int >= 1, got {step_minutes!r}")
        where = ["minute >= toStartOfMinute({since:DateTime64(3, 'UTC')})",
                 "minute < {until:DateTime64(3, 'UTC')}"]
        params: dict[str, Any] = {"since": utc(since), "until": utc(until), "step": step_minutes}
        if cluster_id is not None:
            where.append("cluster_id = {cluster_id:String}")
            params["cluster_id"] = cluster_id
        levels = "0.05, 0.25, 0.5, 0.75, 0.95"
        columns = []
        for name in ("faithfulness", "confidence"):
            columns += [f"if(isNaN({name}_q[{i + 1}]), NULL, {name}_q[{i + 1}]) AS {name}_{level}"
                        for i, level in enumerate(_QUANTILE_LEVELS)]
        sql = f"""
            SELECT cluster_id, bucket, interactions, below_baseline, confident_wrong,
                   {", ".join(columns)}
            FROM (
                SELECT cluster_id,
                       toStartOfInterval(minute, toIntervalMinute({{step:UInt32}})) AS bucket,
                       uniqExactMerge(interaction_ids) AS interactions,
                       uniqExactIfMerge(below_baseline_ids) AS below_baseline,
                       uniqExactIfMerge(confident_wrong_ids) AS confident_wrong,
                       quantilesDeterministicDistinctMerge({levels})(faithfulness_q) AS faithfulness_q,
                       quantilesDeterministicDistinctMerge({levels})(confidence_q) AS confidence_q
                FROM interaction_minutes
                WHERE {" AND ".join(where)}
                GROUP BY cluster_id, bucket
            )
            ORDER BY cluster_id, bucket"""
        return self.query(sql, params)

    def run_recipe(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run the analyst recipe ``recipes/NAME.sql`` with its ``{param:Type}`` values bound.

        Values may be typed (aware datetimes, ints, ...) or text the engine parses for the
        declared type (what the command line passes).
        """
        sql = recipe_sql(name)
        bound = {key: utc(value) if isinstance(value, datetime) else value
                 for key, value in (params or {}).items()}
        missing = sorted(set(recipe_parameters(sql)) - set(bound))
        if missing:
            raise ValueError(f"recipe {name} needs parameters {missing}")
        return self.query(sql, bound)

    def cluster_detail(self, cluster_id: str) -> Row | None:
        """One cluster with its recent rates and latest answers, or None if it is unknown.

        ``recent_rates`` has one row per window ending at the cluster's latest answer (event
        time, so a replayed stream reads like a live one): the last hour, day, week and all
        time, each with its first and last answer's time. ``examples`` are the latest answers,
        up to 5 below baseline then up to 5 within.
        """
        params = {"cluster_id": cluster_id}
        found = self.query("SELECT * FROM clusters FINAL WHERE cluster_id = {cluster_id:String}", params)
        if not found:
            return None
        windows = (("1h", "1 HOUR"), ("24h", "24 HOUR"), ("7d", "7 DAY"), ("all", None))
        columns = ["max(timestamp) AS last_at", "argMax(baseline_low, timestamp) AS last_baseline_low"]
        for name, span in windows:
            cond = "1" if span is None else f"timestamp > last_at_all - INTERVAL {span}"
            columns += [f"countIf({cond}) AS n_{name}",
                        f"countIf(below_baseline AND {cond}) AS below_{name}",
                        f"countIf(confident_wrong AND {cond}) AS cw_{name}",
                        f"avgIf(faithfulness, {cond}) AS faith_{name}",
                        f"avgIf(confidence, {cond}) AS conf_{name}",
                        f"minIf(timestamp, {cond}) AS first_{name}"]
        rates = self.query(
            "WITH (SELECT max(timestamp) FROM interactions WHERE cluster_id = {cluster_id:String}) "
            "AS last_at_all SELECT " + ", ".join(columns)
            + " FROM interactions FINAL WHERE cluster_id = {cluster_id:String}", params)[0]
        last_at = rates["last_at"] if rates["n_all"] else None
        recent = []
        for name, _ in windows:
            n = rates[f"n_{name}"]
            recent.append({
                "window": name, "first_at": rates[f"first_{name}"] if n else None, "last_at": last_at,
                "interactions": n, "below_baseline": rates[f"below_{name}"],
                "below_baseline_rate": rates[f"below_{name}"] / n if n else None,
                "confident_wrong": rates[f"cw_{name}"],
                "confident_wrong_rate": rates[f"cw_{name}"] / n if n else None,
                "mean_faithfulness": rates[f"faith_{name}"] if n else None,
                "mean_confidence": rates[f"conf_{name}"] if n else None})
        examples = self.query(
            "SELECT interaction_id, session_id, customer_id, timestamp, query, response, faithfulness, "
            "confidence, below_baseline, confident_wrong, incident_id FROM interactions FINAL "
            "WHERE cluster_id = {cluster_id:String} "
            "ORDER BY below_baseline DESC, timestamp DESC, interaction_id LIMIT 5 BY below_baseline", params)
        return {**found[0], "last_at": last_at, "last_baseline_low": rates["last_baseline_low"] if last_at else None,
                "recent_rates": recent, "examples": examples}
