"""The storage interface: every query is written once here, backends only run SQL.

A backend implements four primitives (:meth:`Store.query`, :meth:`Store.command`,
:meth:`Store._insert`, :meth:`Store.close`); the domain methods build their SQL from fixed
fragments and pass every caller-supplied value as a bound ``{name:Type}`` parameter, which
chDB and a ClickHouse server (clickhouse-connect, server-side binding) both understand.

Values cross the boundary as plain Python: aware datetimes (stored at millisecond precision in
UTC; naive datetimes are refused), bools, ints, floats, strings, lists and ``None``.
Interactions are deduplicated on the way in (``interactions_in`` and its view, migration 0003),
so the hot reads need no ``FINAL``; the session reads still keep one row per id with
``LIMIT 1 BY`` over their narrow key range, which costs little and covers concurrent writers.
"""

from __future__ import annotations

import abc
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from operator import attrgetter
from types import TracebackType
from typing import Any, Self

from pipelines.interaction import DeadLetter
from pipelines.records import ClusterInfo, IncidentEvent, ScoredInteraction

Row = dict[str, Any]

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_RECIPE_NAME = re.compile(r"^[a-z0-9_]+$")
_TTL_DAYS = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)")
# (table, time column) that a retention setting applies to, see Store.apply_ttl.
_TTL_TABLES = {"interactions": "timestamp", "interaction_minutes": "minute", "rollup_minutes": "bucket",
               "rollup_hours": "bucket", "rollup_days": "bucket"}
_ROLLUP_TABLES = ("interaction_minutes", "rollup_minutes", "rollup_hours", "rollup_days")
# The levels fixed in 0003's quantile states, and the columns they are read into.
_QUANTILE_LEVELS = ("p05", "p25", "p50", "p75", "p95")
_LEVELS = "0.05, 0.25, 0.5, 0.75, 0.95"
# interactions' scalar columns, read straight off a ScoredInteraction (see interaction_columns).
_INTERACTION_FIELDS = (
    "interaction_id", "session_id", "customer_id", "timestamp", "query", "response", "cluster_id",
    "cluster_label", "category", "faithfulness", "faithfulness_source", "confidence", "below_baseline",
    "baseline_low", "confident_wrong", "stale_context", "incident_id", "family_id", "intent_hint", "model",
    "action_name", "action_reversible")
_GET_FIELDS = attrgetter(*_INTERACTION_FIELDS)
_GET_CONTEXTS = attrgetter("contexts")
_GET_CONTEXT = attrgetter("doc_id", "doc_version", "stale")
_GET_METADATA = attrgetter("metadata")
_INCIDENT_JSON_COLUMNS = ("suggested_gate", "shared_documents", "examples", "members", "cause")
# Columns of incident_events that only SQL reads (derived from members, see incident_event_row);
# rows read back leave them out, so a row is exactly the IncidentEvent it was stored from.
_INCIDENT_SQL_COLUMNS = ("member_clusters", "member_since")
_TABLES = ("interactions", "clusters", "incident_events", "incidents", "dead_letters", "deliveries",
           "schema_migrations")

# One row per session: the worst answer (lowest faithfulness, then earliest) is the example.
# customer_id: the customer of the session's first answer (deterministic: any() picked whichever
# row was read first, and a session can span customers, e.g. a shared device).
_SESSION_COLUMNS = """
    session_id,
    argMin(customer_id, tuple(timestamp, interaction_id)) AS customer_id,
    min(timestamp) AS first_at,
    max(timestamp) AS last_at,
    count() AS interactions,
    countIf(below_baseline) AS below_baseline_count,
    countIf(confident_wrong) AS confident_wrong_count,
    min(faithfulness) AS worst_faithfulness,
    argMin(tuple(interaction_id, query, response),
           tuple(ifNull(faithfulness, 2.0), timestamp, interaction_id)) AS example"""
# An answer's session key in SQL, as Interaction.session_key has it: the session, or the
# interaction when no session is given (what an incident's session_ids list).
_SESSION_KEY = "if(ifNull(session_id, '') = '', concat('interaction:', interaction_id), session_id)"
# What _SESSION_COLUMNS reads, one row per interaction id (a duplicate that two concurrent
# writers both stored counts once).
_SESSION_SOURCE = ("interaction_id, session_id, customer_id, timestamp, below_baseline, confident_wrong, "
                   "faithfulness, query, response")


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


def interaction_columns(rows: Sequence[ScoredInteraction]) -> dict[str, list[Any]]:
    """The columns of ``interactions`` for ``rows``, one list per column, first of each id kept.

    Column-wise with C-level attribute getters: building a dict per row (``model_dump``) and
    encoding it cost more than the engine's whole insert. A repeated id within the batch is
    dropped here (ids the store already holds are dropped by the engine, see migration 0003).
    """
    if len({row.interaction_id for row in rows}) != len(rows):
        seen: set[str] = set()
        rows = [row for row in rows if not (row.interaction_id in seen or seen.add(row.interaction_id))]
    columns: dict[str, list[Any]] = dict(zip(_INTERACTION_FIELDS, map(list, zip(*map(_GET_FIELDS, rows),
                                                                                  strict=True)), strict=True))
    columns["timestamp"] = [value if value.tzinfo is UTC else utc(value) for value in columns["timestamp"]]
    doc_ids: list[Any] = []
    versions: list[Any] = []
    stale: list[Any] = []
    for refs in map(_GET_CONTEXTS, rows):
        if refs:
            ids_of, versions_of, stale_of = zip(*map(_GET_CONTEXT, refs), strict=True)
        else:
            ids_of = versions_of = stale_of = ()
        doc_ids.append(ids_of)
        versions.append(versions_of)
        stale.append(stale_of)
    columns.update(context_doc_ids=doc_ids, context_doc_versions=versions, context_stale=stale)
    # Left as dicts: a backend stores a dict in a String column as its JSON text (chDB lets the
    # engine copy it out of the JSON it parses anyway, saving one encoding per row).
    columns["metadata"] = list(map(_GET_METADATA, rows))
    return columns


def rows_to_columns(rows: Sequence[Row]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in rows[0]}


def interaction_from_row(row: Mapping[str, Any]) -> ScoredInteraction:
    """One ``SELECT * FROM interactions`` row back as the ScoredInteraction it was stored from."""
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
    """The columns of ``incident_events`` for one event: nested objects as JSON text, plus the
    members' cluster ids and blast-radius starts as parallel arrays for SQL (an event without
    members: its clusters, or its one cluster, each since onset)."""
    columns = row.model_dump(exclude=set(_INCIDENT_JSON_COLUMNS))
    for name in _INCIDENT_JSON_COLUMNS:
        value = row.model_dump(mode="json", include={name})[name]
        columns[name] = None if value is None else json.dumps(value)
    if row.members:
        columns["member_clusters"] = [member.cluster_id for member in row.members]
        columns["member_since"] = [utc(member.since) for member in row.members]
    else:
        columns["member_clusters"] = list(row.clusters or (row.cluster_id,))
        columns["member_since"] = [utc(row.onset_at)] * len(columns["member_clusters"])
    return columns


def _incident_from_row(row: Row) -> Row:
    for name in _INCIDENT_SQL_COLUMNS:
        row.pop(name, None)
    for name in _INCIDENT_JSON_COLUMNS:
        if row.get(name) is not None:
            row[name] = json.loads(row[name])
    return row


def _digest(raw: str) -> str:
    return hashlib.md5(raw.encode("utf-8"), usedforsecurity=False).hexdigest()


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


# The time range [since, until) of a rollup read cut into whole days, whole hours and the
# minutes at its edges (a minute is in when it starts at or after since's minute and before
# until). Every bound is a constant, so each tier is read by its (cluster_id, bucket) key.
TIER_BOUNDS = """toStartOfMinute({since:DateTime64(3, 'UTC')}) AS s_min,
     toStartOfMinute({until:DateTime64(3, 'UTC')} - INTERVAL 1 MILLISECOND) + INTERVAL 1 MINUTE AS e_min,
     toStartOfHour(s_min - INTERVAL 1 SECOND) + INTERVAL 1 HOUR AS s_hour,
     toStartOfHour(e_min) AS e_hour,
     toStartOfDay(s_hour - INTERVAL 1 SECOND) + INTERVAL 1 DAY AS s_day,
     toStartOfDay(e_hour) AS e_day"""
_TIER_COLUMNS = ("cluster_id, bucket, interactions AS n, below_baseline AS n_below, confident_wrong AS n_cw, "
                 "faithfulness_n AS n_faith, confidence_n AS n_conf, faithfulness_q AS faith_q, "
                 "confidence_q AS conf_q")


_RATE_COLUMNS = ("interactions AS n, below_baseline AS n_below, confident_wrong AS n_cw, faithfulness_n AS n_faith, "
                 "faithfulness_sum AS s_faith, confidence_n AS n_conf, confidence_sum AS s_conf, first_at AS first")
_RATE_SOURCE = ("interactions, below_baseline, confident_wrong, faithfulness_n, faithfulness_sum, confidence_n, "
                "confidence_sum, first_at")
_RATE_COLUMNS_RAW = ("toUInt64(1), toUInt64(below_baseline), toUInt64(confident_wrong), "
                     "toUInt64(faithfulness IS NOT NULL), ifNull(faithfulness, 0), toUInt64(confidence IS NOT NULL), "
                     "ifNull(confidence, 0), timestamp")
_RATE_SUMS = ("sum(n) AS n, sum(n_below) AS below, sum(n_cw) AS cw, sum(s_faith) / sum(n_faith) AS faith, "
              "sum(s_conf) / sum(n_conf) AS conf, min(first) AS first")


def tiers(step_minutes: int, where: str = "", columns: str = _TIER_COLUMNS) -> str:
    """The rows of rollup_minutes/hours/days that tile ``[s_min, e_min)`` (see TIER_BOUNDS),
    coarsest first, for buckets of ``step_minutes``: hours only when the step is whole hours,
    days only when it is whole days. ``where`` (fixed SQL) is added to every tier's filter.

    >>> "rollup_days" in tiers(1440), "rollup_hours" in tiers(15)
    (True, False)
    """
    use_hours, use_days = step_minutes % 60 == 0, step_minutes % 1440 == 0
    parts = [f"SELECT {columns} FROM rollup_minutes WHERE bucket >= s_min AND bucket < e_min"
             + (" AND NOT (bucket >= s_hour AND bucket < e_hour)" if use_hours else "") + where]
    if use_hours:
        parts.append(f"SELECT {columns} FROM rollup_hours WHERE bucket >= s_hour AND bucket < e_hour"
                     + (" AND NOT (bucket >= s_day AND bucket < e_day)" if use_days else "") + where)
    if use_days:
        parts.append(f"SELECT {columns} FROM rollup_days WHERE bucket >= s_day AND bucket < e_day" + where)
    return " UNION ALL ".join(reversed(parts))


def _finite(value: float | None) -> float | None:
    """None for a mean over no values (0/0 is NaN, which JSON results carry as null anyway)."""
    return None if value is None or value != value else value


def _session_from_row(row: Row) -> Row:
    interaction_id, query, response = row.pop("example")
    row.update(example_interaction_id=interaction_id, example_query=query,
               example_response=response)
    return row


def _equal(params: dict[str, Any], **columns: str | None) -> list[str]:
    """``column = {column:String}`` for each of ``columns`` given (not None), its value bound in ``params``.

    >>> params = {}
    >>> _equal(params, status="open", category=None), params
    (['status = {status:String}'], {'status': 'open'})
    """
    where = []
    for name, value in columns.items():
        if value is not None:
            where.append(f"{name} = {{{name}:String}}")
            params[name] = value
    return where


SessionKey = tuple[datetime, str | None]


def session_key(row: Row) -> SessionKey:
    """A session row's place in the order of :meth:`Store.sessions` (its paging key)."""
    return row["first_at"], row["session_id"]


def _page(limit: int | None, after: SessionKey | None, params: dict[str, Any]) -> str:
    """HAVING/ORDER BY/LIMIT for session rows in key order after ``after``, at most ``limit``.

    ORDER BY puts a NULL session id last among equal times, so "after (t, None)" is any
    later time and "after (t, id)" is a later time, or the same time with a greater id or none.
    """
    sql = ""
    if after is not None:
        at, session = after
        params["after_at"] = utc(at)
        if session is None:
            sql += " HAVING first_at > {after_at:DateTime64(3, 'UTC')}"
        else:
            params["after_session"] = session
            sql += (" HAVING first_at > {after_at:DateTime64(3, 'UTC')}"
                    " OR (first_at = {after_at:DateTime64(3, 'UTC')}"
                    " AND (session_id IS NULL OR session_id > {after_session:String}))")
    sql += " ORDER BY first_at, session_id"
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be an int >= 0, got {limit!r}")
        params["limit"] = limit
        sql += " LIMIT {limit:UInt64}"
    return sql


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
    def _insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Write ``columns`` (name -> values, equal lengths, at least one row) to ``table`` in
        one INSERT. A dict value goes to its String column as ``json.dumps(value)``."""

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
        """Set (or remove, with None) the retention of raw interactions and of the rollups
        (every tier, and the legacy ``interaction_minutes``).

        Only a value that differs from the table's current TTL is altered, so running it on
        every ``migrate`` is cheap. ClickHouse deletes expired rows when it merges parts (and in
        the background mutation an ALTER starts), not at the exact second. Returns what changed.
        """
        current = self.ttl_days()
        changes = []
        wanted = [("interactions", interactions_days)] + [(table, rollup_days) for table in _ROLLUP_TABLES]
        for table, days in wanted:
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
        """Store ``rows``; an ``interaction_id`` already stored (or repeated in ``rows``) is
        skipped, so a retry or replay changes neither counts nor rollups (migration 0003)."""
        if rows:
            self._insert("interactions_in", interaction_columns(rows))

    def upsert_clusters(self, rows: Sequence[ClusterInfo]) -> None:
        if rows:
            self._insert("clusters", rows_to_columns([cluster_row(row) for row in rows]))

    def insert_incident_events(self, rows: Sequence[IncidentEvent]) -> None:
        if rows:
            self._insert("incident_events", rows_to_columns([incident_event_row(row) for row in rows]))

    def insert_dead_letters(self, rows: Sequence[DeadLetter]) -> None:
        """Store ``rows``, but not one already stored with the same source, position and raw record
        (a file replayed again, a message delivered again): their ``received_at`` differs, which
        the table's key holds, so the table alone would keep both."""
        fresh = {(row.source, row.position, _digest(row.raw)): row for row in rows}
        for source in {row.source for row in rows}:
            positions = json.dumps(sorted({row.position for row in rows if row.source == source}))
            for old in self.query("SELECT position, lower(hex(MD5(raw))) AS digest FROM dead_letters "
                                  "WHERE source = {source:String} AND "
                                  "has(JSONExtract({positions:String}, 'Array(String)'), position)",
                                  {"source": source, "positions": positions}):
                fresh.pop((source, old["position"], old["digest"]), None)
        if fresh:
            self._insert("dead_letters", rows_to_columns([dead_letter_row(row) for row in fresh.values()]))

    def insert_deliveries(self, rows: Sequence[Row]) -> None:
        """Write delivery states (rows of ``deliveries``, migration 0006): the highest version of
        each (incident_id, sequence, channel) is its state."""
        if rows:
            self._insert("deliveries", rows_to_columns(rows))

    # ---- reads --------------------------------------------------------------------------

    def delivery_keys(self, incident_ids: Sequence[str]) -> set[tuple[str, int, str]]:
        """``(incident_id, sequence, channel)`` of every delivery stored for ``incident_ids``."""
        if not incident_ids:
            return set()
        rows = self.query("SELECT DISTINCT incident_id, sequence, channel FROM deliveries "
                          "WHERE incident_id IN (SELECT arrayJoin(JSONExtract({ids:String}, 'Array(String)')))",
                          {"ids": json.dumps(sorted(set(incident_ids)))})
        return {(row["incident_id"], row["sequence"], row["channel"]) for row in rows}

    def list_deliveries(self, status: str | None = None, channel: str | None = None,
                        limit: int = 1000) -> list[Row]:
        """Latest state of each delivery, most recently changed first (``pending_deliveries``
        reads the ones a notifier still has to send)."""
        params: dict[str, Any] = {"limit": limit}
        where = _equal(params, status=status, channel=channel)
        return self.query("SELECT * FROM deliveries FINAL" + (" WHERE " + " AND ".join(where) if where else "")
                          + " ORDER BY updated_at DESC, incident_id, sequence, channel LIMIT {limit:UInt64}", params)

    def latest_deliveries(self, channel: str) -> list[Row]:
        """Per incident, its latest delivery to ``channel`` (the highest sequence): ``incident_id``,
        ``latest_status`` and ``latest_payload`` (the event)."""
        return self.query("SELECT incident_id, argMax(status, sequence) AS latest_status, "
                          "argMax(payload, sequence) AS latest_payload FROM deliveries FINAL "
                          "WHERE channel = {channel:String} GROUP BY incident_id ORDER BY incident_id",
                          {"channel": channel})

    def pending_deliveries(self, channel: str) -> list[Row]:
        """Every delivery of ``channel`` still pending, in (incident_id, sequence) order."""
        return self.query("SELECT * FROM deliveries FINAL WHERE channel = {channel:String} AND status = 'pending' "
                          "ORDER BY incident_id, sequence", {"channel": channel})

    def list_incidents(self, status: str | None = None, cluster_id: str | None = None,
                       category: str | None = None, since: datetime | None = None,
                       until: datetime | None = None, limit: int = 100) -> list[Row]:
        """Latest state per incident, most recently detected first.

        ``cluster_id`` matches an incident whose member clusters include it (not only the first).
        ``since``/``until`` select incidents active at some point in ``[since, until]``:
        onset at or before ``until`` and not resolved before ``since``.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        params: dict[str, Any] = {"limit": limit}
        where = _equal(params, status=status)
        if cluster_id is not None:
            # Any member cluster (an older row has no member list: its one cluster_id).
            where.append("(cluster_id = {cluster_id:String} OR has(clusters, {cluster_id:String}))")
            params["cluster_id"] = cluster_id
        where += _equal(params, category=category)
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

    def incident_sessions(self, incident_id: str, *, limit: int | None = None,
                          after: SessionKey | None = None) -> list[Row]:
        """The blast radius: one row per session of the incident's own session list (the
        alert's ``session_ids``, its latest event's), with that session's below-baseline answers
        until the incident's resolution (unbounded while open): in a member cluster from that
        member's ``since``; for a listed session with none there, in any other cluster from a
        day before the incident's earliest start (a reader of the cause document whose cluster
        did not join: only read for an incident whose failing answers outnumber its members').
        An incident stored without members (older rows) is its one cluster since onset.

        The session list is the detector's judgement: a failing answer in a member cluster that
        it left out (noise after the fix, or before the change point) is not listed here either.
        An answer scored while another incident held its cluster is that incident's.

        ``interactions`` counts those answers; the example is the session's worst one.
        Answers without a session id are grouped into one row with ``session_id`` None.
        Rows come in :func:`session_key` order; ``limit``/``after`` page through them (see
        :meth:`sessions`).
        """
        params: dict[str, Any] = {"incident_id": incident_id}
        # Scalar subqueries (not a join) so the members and the time range reach the primary key
        # of interactions: a prefilter on cluster_id IN the members and timestamp >= the earliest
        # start reads narrow key ranges, then each row is held to the session list and to its own
        # member's start (any(): an array scalar subquery must return a row, also for an unknown
        # incident). Only when the incident took failing answers outside its members (readers of
        # its cause elsewhere), and only for listed sessions with no row in a member, do other
        # clusters' answers count, from a day before the earliest start: that read spans every
        # cluster in the range, so it is made only for such incidents.
        incident = "(SELECT {column} FROM incidents WHERE incident_id = {{incident_id:String}})"
        members = "if(empty(member_clusters), [cluster_id], member_clusters)"
        since = "if(empty(member_since), [onset_at], member_since)"
        earliest = incident.format(column=f"arrayMin(arrayConcat([onset_at], {since}))")
        listed = "(SELECT arrayJoin(session_ids) AS k FROM incidents WHERE incident_id = {incident_id:String})"
        in_members = f"""cluster_id IN (SELECT arrayJoin({members}) FROM incidents
                                       WHERE incident_id = {{incident_id:String}})
                  AND timestamp >= {earliest}
                  AND timestamp >= arrayElement({incident.format(column=f"any({since})")},
                                                indexOf({incident.format(column=f"any({members})")}, cluster_id))"""
        window = f"""timestamp <= ifNull({incident.format(column="resolved_at")},
                                    toDateTime64('2299-12-31 23:59:59', 3, 'UTC'))
                  AND below_baseline
                  AND ifNull(incident_id, {{incident_id:String}}) = {{incident_id:String}}"""
        where = in_members
        head = self.query("SELECT below_baseline_count, members FROM incidents "
                          "WHERE incident_id = {incident_id:String}", params)
        # Failing answers outside the members: the count beyond the members' (an incident stored
        # without members had none).
        if head and (members_json := json.loads(head[0]["members"] or "[]")) and head[0][
                "below_baseline_count"] > sum(m["below_baseline_count"] for m in members_json):
            # Its listed sessions with no failing answer in a member: only those are looked for
            # elsewhere (bound as one JSON text: a list parameter binds on neither backend alike).
            elsewhere = [row["k"] for row in self.query(f"""
                SELECT k FROM {listed}
                WHERE k NOT IN (SELECT {_SESSION_KEY} FROM interactions
                                WHERE {in_members} AND {window} AND {_SESSION_KEY} IN {listed})""", params)]
            if elsewhere:
                params["elsewhere"] = json.dumps(elsewhere)
                where = (f"(({in_members}) OR ({_SESSION_KEY} IN (SELECT arrayJoin(JSONExtract("
                         f"{{elsewhere:String}}, 'Array(String)'))) AND timestamp >= {earliest} - INTERVAL 1 DAY"
                         f" AND NOT has({incident.format(column=f'any({members})')}, cluster_id)))")
        sql = f"""
            SELECT {_SESSION_COLUMNS}
            FROM (
                SELECT {_SESSION_SOURCE} FROM interactions
                WHERE {where}
                  AND {window}
                  AND {_SESSION_KEY} IN {listed}
                LIMIT 1 BY interaction_id
            )
            GROUP BY session_id"""
        sql += _page(limit, after, params)
        return [_session_from_row(row) for row in self.query(sql, params)]

    def sessions(self, cluster_id: str, since: datetime, until: datetime | None = None,
                 below_baseline: bool = True, *, limit: int | None = None,
                 after: SessionKey | None = None) -> list[Row]:
        """One row per session with answers in ``cluster_id`` during ``[since, until)``.

        With ``below_baseline`` only failing answers count (the analyst's "which sessions got
        a failing answer"); without it every answer does. Same columns as
        :meth:`incident_sessions`.

        Rows come ordered by first answer, then session id (the session without an id last
        among equal times): a keyset. ``limit`` returns at most that many; ``after`` (the
        :func:`session_key` of the last row of the previous page) continues behind it, so a
        page never repeats or skips a session while rows are being added behind the range.
        """
        where = ["cluster_id = {cluster_id:String}",
                 "timestamp >= {since:DateTime64(3, 'UTC')}"]
        params: dict[str, Any] = {"cluster_id": cluster_id, "since": utc(since)}
        if until is not None:
            where.append("timestamp < {until:DateTime64(3, 'UTC')}")
            params["until"] = utc(until)
        if below_baseline:
            where.append("below_baseline")
        sql = (f"SELECT {_SESSION_COLUMNS} FROM (SELECT {_SESSION_SOURCE} FROM interactions WHERE "
               + " AND ".join(where) + " LIMIT 1 BY interaction_id)"
               " GROUP BY session_id" + _page(limit, after, params))
        return [_session_from_row(row) for row in self.query(sql, params)]

    def list_clusters(self, family_id: str | None = None) -> list[Row]:
        """Every cluster (or the members of ``family_id``), with its family, by id."""
        if family_id is None:
            return self.query("SELECT * FROM clusters FINAL ORDER BY cluster_id")
        return self.query("SELECT * FROM clusters FINAL WHERE family_id = {family_id:String} ORDER BY cluster_id",
                          {"family_id": family_id})

    def list_families(self, family_id: str | None = None) -> list[Row]:
        """One row per intent family, from the clusters' latest rows (a cluster stored without a
        family is in none): ``family_id``, ``label`` and ``category`` (as the most recently
        written member says), ``clusters`` (member ids, oldest first: c2 before c10),
        ``n_clusters``, ``size`` (queries assigned to its members), first/last seen and
        ``aliases`` (family ids merged into it: ``family_id`` may name one of them)."""
        params: dict[str, Any] = {}
        where = "family_id IS NOT NULL"
        having = ""
        if family_id is not None:
            having = "HAVING family_id = {family_id:String} OR has(aliases, {family_id:String})"
            params["family_id"] = family_id
        return self.query(f"""
            SELECT family_id,
                   argMax(family_label, updated_at) AS label,
                   argMax(family_category, updated_at) AS category,
                   arraySort(x -> (length(x), x), groupUniqArrayArray(family_aliases)) AS aliases,
                   arraySort(x -> (length(x), x), groupArray(cluster_id)) AS clusters,
                   count() AS n_clusters,
                   sum(size) AS size,
                   min(first_seen) AS first_seen,
                   max(last_seen) AS last_seen
            FROM (SELECT * FROM clusters FINAL WHERE {where})
            GROUP BY family_id
            {having}
            ORDER BY length(family_id), family_id""", params)

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
        params: dict[str, Any] = {"since": utc(since), "until": utc(until), "step": step_minutes}
        cluster = ""
        if cluster_id is not None:
            cluster = " AND cluster_id = {cluster_id:String}"
            params["cluster_id"] = cluster_id
        columns = []
        for name in ("faithfulness", "confidence"):
            columns += [f"if({name}_n = 0, NULL, {name}_q[{i + 1}]) AS {name}_{level}"
                        for i, level in enumerate(_QUANTILE_LEVELS)]
        sql = f"""
            WITH {TIER_BOUNDS}
            SELECT cluster_id, step_bucket AS bucket, interactions, below_baseline, confident_wrong,
                   {", ".join(columns)}
            FROM (
                SELECT cluster_id,
                       toStartOfInterval(bucket, toIntervalMinute({{step:UInt32}})) AS step_bucket,
                       sum(n) AS interactions, sum(n_below) AS below_baseline, sum(n_cw) AS confident_wrong,
                       sum(n_faith) AS faithfulness_n, sum(n_conf) AS confidence_n,
                       quantilesExactWeightedInterpolatedMerge({_LEVELS})(faith_q) AS faithfulness_q,
                       quantilesExactWeightedInterpolatedMerge({_LEVELS})(conf_q) AS confidence_q
                FROM ({tiers(step_minutes, cluster)})
                GROUP BY cluster_id, step_bucket
            )
            ORDER BY cluster_id, step_bucket"""
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
        latest = self.query("SELECT timestamp, baseline_low FROM interactions WHERE cluster_id = {cluster_id:String} "
                            "ORDER BY timestamp DESC LIMIT 1", params)
        last_at = latest[0]["timestamp"] if latest else None
        windows = (("1h", timedelta(hours=1)), ("24h", timedelta(hours=24)), ("7d", timedelta(days=7)), ("all", None))
        rates: dict[str, Row] = {}
        if last_at is not None:
            # A window is (last_at - span, last_at]: its whole minutes from the rollup tiers, the
            # one minute it starts inside of from the raw rows (a narrow key range), so it is exact.
            parts, bound = [], {"cluster_id": cluster_id, "until": last_at + timedelta(milliseconds=1)}
            for name, span in windows:
                if span is None:
                    parts.append(f"SELECT '{name}' AS window, {_RATE_SUMS} FROM (SELECT {_RATE_COLUMNS} "
                                 "FROM rollup_days WHERE cluster_id = {cluster_id:String})")
                    continue
                start = last_at - span
                bound[f"from_{name}"] = start
                bound[f"since_{name}"] = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
                bounds = TIER_BOUNDS.replace("{since:", f"{{since_{name}:")
                parts.append(
                    f"SELECT '{name}' AS window, {_RATE_SUMS} FROM (WITH {bounds} SELECT {_RATE_COLUMNS} FROM ("
                    + tiers(1440, " AND cluster_id = {cluster_id:String}", _RATE_SOURCE) + ") UNION ALL "
                    f"SELECT {_RATE_COLUMNS_RAW} FROM interactions WHERE cluster_id = {{cluster_id:String}} "
                    f"AND timestamp > {{from_{name}:DateTime64(3, 'UTC')}} "
                    f"AND timestamp < {{since_{name}:DateTime64(3, 'UTC')}})")
            rates = {row["window"]: row for row in self.query(" UNION ALL ".join(parts), bound)}
        recent = []
        for name, _ in windows:
            rate = rates.get(name, {})
            n = rate.get("n", 0)
            recent.append({
                "window": name, "first_at": rate["first"] if n else None, "last_at": last_at,
                "interactions": n, "below_baseline": rate.get("below", 0),
                "below_baseline_rate": rate["below"] / n if n else None,
                "confident_wrong": rate.get("cw", 0),
                "confident_wrong_rate": rate["cw"] / n if n else None,
                "mean_faithfulness": _finite(rate["faith"]) if n else None,
                "mean_confidence": _finite(rate["conf"]) if n else None})
        # Two reads backwards along the (cluster_id, timestamp) key that stop after 5 rows each,
        # instead of sorting every answer of the cluster.
        latest_answers = ("SELECT interaction_id, session_id, customer_id, timestamp, query, response, faithfulness, "
                          "confidence, below_baseline, confident_wrong, incident_id FROM interactions "
                          "WHERE cluster_id = {{cluster_id:String}} AND {flag} "
                          "ORDER BY timestamp DESC, interaction_id DESC LIMIT 5")
        examples = self.query(
            "SELECT * FROM (" + latest_answers.format(flag="below_baseline") + " UNION ALL "
            + latest_answers.format(flag="NOT below_baseline") + ") "
            "ORDER BY below_baseline DESC, timestamp DESC, interaction_id", params)
        return {**found[0], "last_at": last_at, "last_baseline_low": latest[0]["baseline_low"] if latest else None,
                "recent_rates": recent, "examples": examples}

    # ---- confidence-gate overrides (migration 0007, services/gates.py) -------------------

    def insert_gate_override(self, row: Row) -> None:
        """Write one change of a scope's gate (a row of ``gate_overrides``)."""
        self._insert("gate_overrides", rows_to_columns([{**row, "at": utc(row["at"])}]))

    def gate_override_history(self, scope: str | None = None) -> list[Row]:
        """Every change of every scope's gate (or of ``scope``'s), oldest first per scope."""
        params: dict[str, Any] = {}
        where = _equal(params, scope=scope)
        return self.query("SELECT scope, version, action, threshold, reason, actor, at FROM gate_overrides FINAL"
                          + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY scope, version", params)

    def insert_gate_decisions(self, rows: Sequence[Row]) -> None:
        """Add per-minute decision counts (rows of ``gate_decision_minutes``)."""
        if rows:
            self._insert("gate_decision_minutes", rows_to_columns([{**r, "minute": utc(r["minute"])} for r in rows]))

    def gate_decision_rates(self, since: datetime, until: datetime | None = None) -> list[Row]:
        """Per cluster and category: gate decisions in ``[since, until)``, answered, deferred and
        the deferral rate, most deferred first."""
        params: dict[str, Any] = {"since": utc(since)}
        where = ["minute >= toStartOfMinute({since:DateTime64(3, 'UTC')})"]
        if until is not None:
            where.append("minute < {until:DateTime64(3, 'UTC')}")
            params["until"] = utc(until)
        return self.query(
            "SELECT cluster_id, category, sum(calls) AS decisions, sumIf(calls, decision = 'answer') AS answered, "
            "sumIf(calls, decision = 'defer') AS deferred, deferred / decisions AS deferral_rate "
            "FROM gate_decision_minutes WHERE " + " AND ".join(where)
            + " GROUP BY cluster_id, category ORDER BY deferred DESC, cluster_id, category", params)
