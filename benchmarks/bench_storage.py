"""Storage: insert throughput and dashboard/analyst query latency on chDB at 1M and 10M rows.

    python -m benchmarks.bench_storage            # 1M then 10M interactions (several minutes)
    python -m benchmarks.bench_storage --quick    # 100k, a smoke run

Insert throughput goes through ``Store.insert_interactions`` with realistic ``ScoredInteraction``
rows (contexts, metadata, every column), batched, with the rollup materialized view running:
the path a replay or the API takes. The 1M/10M tables are then filled fast with
``INSERT ... SELECT FROM numbers()`` in 1M-row chunks (the view fires on those too): about 1,000
answers a minute over 50 clusters of skewed popularity, so 10M is about a week of traffic.
Every query is run ``--repeats`` times after one warm-up; p50/p95 are over those runs.
The store lives in a temporary directory that is deleted at the end.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.common import write_fragment
from pipelines.records import ContextRef, IncidentEvent, ScoredInteraction
from services.store.chdb_store import ChdbStore

START = datetime(2026, 10, 1, tzinfo=UTC)
PER_MINUTE = 1000
CLUSTERS = 50
INSERT_TARGET = 50_000
QUERY_TARGET_MS = 200.0


def realistic_rows(n: int, seed: int = 1) -> list[ScoredInteraction]:
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        faithfulness = rng.betavariate(8, 1.5)
        confidence = rng.betavariate(6, 2)
        below = faithfulness < 0.6
        rows.append(ScoredInteraction(
            interaction_id=f"bench-{seed}-{k}", session_id=f"sess-{k // 4}", customer_id=f"cust-{k // 9}",
            timestamp=START + timedelta(milliseconds=k * 60_000 // PER_MINUTE),
            query=f"how much is the fee for card payment number {k % 997}?",
            response="The fee is 2.5% of the amount, at least $1.",
            cluster_id=f"c{int(CLUSTERS * rng.random() ** 2):03d}",
            cluster_label="fees / card / payment", category="pricing", faithfulness=faithfulness,
            faithfulness_source="computed", confidence=confidence, below_baseline=below, baseline_low=0.6,
            confident_wrong=below and confidence >= 0.8, stale_context=k % 50 == 0,
            contexts=(ContextRef(doc_id="pricing-table", doc_version="v3", stale=k % 50 == 0),
                      ContextRef(doc_id="faq", doc_version="v12")),
            intent_hint="pricing", model="gpt-x", action_name=None, action_reversible=None,
            metadata={"channel": "web", "locale": "en-GB"}))
    return rows


def measure_inserts(store: ChdbStore, n: int, batch: int) -> float:
    rows = realistic_rows(n)
    started = time.perf_counter()
    for start in range(0, n, batch):
        store.insert_interactions(rows[start:start + batch])
    return n / (time.perf_counter() - started)


def fill(store: ChdbStore, start: int, stop: int, chunk: int = 1_000_000) -> None:
    """Rows ``start..stop`` of the synthetic week, generated inside the engine."""
    for low in range(start, stop, chunk):
        count = min(chunk, stop - low)
        store.command(f"""
            INSERT INTO interactions
            SELECT
                'gen-' || toString(number) AS interaction_id,
                'sess-' || toString(intDiv(number, 4)) AS session_id,
                'cust-' || toString(intDiv(number, 9) % 200000) AS customer_id,
                toDateTime64('{START:%Y-%m-%d %H:%M:%S}', 3, 'UTC')
                    + toIntervalMillisecond(intDiv(number * 60000, {PER_MINUTE})) AS timestamp,
                'how much is the fee for card payment number ' || toString(number % 997) AS query,
                'The fee is 2.5% of the amount, at least $1.' AS response,
                concat('c', leftPad(toString(toUInt32({CLUSTERS} * pow(rand(1) / 4294967296.0, 2))), 3, '0'))
                    AS cluster_id,
                'fees / card / payment' AS cluster_label,
                'pricing' AS category,
                rand(2) / 4294967296.0 AS f,
                'computed' AS faithfulness_source,
                rand(3) / 4294967296.0 AS c,
                f < 0.1 AS below_baseline,
                0.1 AS baseline_low,
                f < 0.1 AND c >= 0.8 AS confident_wrong,
                number % 50 = 0 AS stale_context,
                ['pricing-table', 'faq'] AS context_doc_ids,
                ['v3', 'v12'] AS context_doc_versions,
                [number % 50 = 0, false] AS context_stale,
                NULL, 'pricing', 'gpt-x', NULL, NULL, '{{"channel": "web"}}'
            FROM numbers({low}, {count})""")


def incident_events(n: int, end: datetime) -> list[IncidentEvent]:
    events = []
    for k in range(n):
        onset = end - timedelta(hours=3 * (k + 1))
        events.append(IncidentEvent(
            event="opened", incident_id=f"inc-{k}", sequence=0, cluster_id=f"c{k % CLUSTERS:03d}",
            cluster_label="fees", category=("pricing", "policy", "account")[k % 3], severity="warning",
            status="open", onset_at=onset, detected_at=onset + timedelta(minutes=30),
            event_at=onset + timedelta(minutes=30), below_baseline_count=12, affected_sessions=5,
            affected_customers=4, session_ids=("sess-1",), customer_ids=("cust-1",), confident_wrong_count=3,
            outreach_required=k % 2 == 0, irreversible_actions=0, suggested_gate=None, shared_documents=(),
            stale_contexts=0,
            baseline_faithfulness=0.9, baseline_low=0.6, baseline_below_rate=0.05, observed_below_rate=0.4,
            statistic=9.0, threshold=8.0, summary="", examples=()))
    return events


def queries(end: datetime) -> dict[str, tuple[str, object]]:
    """name -> (kind, callable(store)): the analyst recipes and the dashboard/API reads."""
    day, week = end - timedelta(days=1), end - timedelta(days=7)
    return {
        "recipe: sessions hit in a cluster, last 48 h": (
            "analyst", lambda s: s.run_recipe("sessions_hit_in_cluster", {"cluster_id": "c000", "as_of": end})),
        "recipe: incidents by category this quarter": (
            "analyst", lambda s: s.run_recipe("incidents_by_category_this_quarter", {"as_of": end})),
        "recipe: faithfulness by cluster by day, 7 days": (
            "analyst", lambda s: s.run_recipe("faithfulness_by_cluster_by_day", {"since": week, "until": end})),
        "recipe: faithfulness by cluster by day, last day": (
            "analyst", lambda s: s.run_recipe("faithfulness_by_cluster_by_day", {"since": day, "until": end})),
        "recipe: confident-but-wrong rate by cluster, 7 days": (
            "analyst", lambda s: s.run_recipe("confident_wrong_rate_by_cluster", {"since": week, "until": end})),
        "recipe: confident-but-wrong rate by cluster, last day": (
            "analyst", lambda s: s.run_recipe("confident_wrong_rate_by_cluster", {"since": day, "until": end})),
        "dashboard: all clusters, last 24 h by hour (rollups)": (
            "dashboard", lambda s: s.rollups(day, end, step_minutes=60)),
        "dashboard: one cluster, last 6 h by minute (rollups)": (
            "dashboard", lambda s: s.rollups(end - timedelta(hours=6), end, cluster_id="c000")),
        "API: sessions of a cluster, 48 h, below baseline": (
            "analyst", lambda s: s.sessions("c000", since=end - timedelta(hours=48), until=end)),
        "API: incidents list": ("dashboard", lambda s: s.list_incidents(limit=100)),
        "API: incident sessions (blast radius)": ("analyst", lambda s: s.incident_sessions("inc-0")),
    }


def time_queries(store: ChdbStore, end: datetime, repeats: int) -> dict[str, tuple[float, float]]:
    results = {}
    for name, (_, run) in queries(end).items():
        run(store)  # warm-up
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            run(store)
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        p95 = samples[min(len(samples) - 1, max(0, round(0.95 * len(samples)) - 1))]
        results[name] = (statistics.median(samples), p95)
    return results


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k rows, fewer repeats (smoke run)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    sizes = [100_000] if args.quick else [1_000_000, 10_000_000]
    repeats = args.repeats or (5 if args.quick else 20)
    insert_rows, batch = (20_000, 5_000) if args.quick else (200_000, 5_000)
    tmp = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    try:
        with ChdbStore(tmp / "store") as store:
            store.migrate()
            rate = measure_inserts(store, insert_rows, batch)
            store.command("TRUNCATE TABLE interactions")
            store.command("TRUNCATE TABLE interaction_minutes")
            by_size, fill_rates, disk = {}, {}, {}
            filled = 0
            for size in sizes:
                started = time.perf_counter()
                fill(store, filled, size)
                fill_rates[size] = (size - filled) / (time.perf_counter() - started)
                filled = size
                end = START + timedelta(milliseconds=size * 60_000 // PER_MINUTE)
                if not store.counts()["incident_events"]:
                    store.insert_incident_events(incident_events(200, end))
                store.command("OPTIMIZE TABLE interaction_minutes FINAL")
                disk[size] = disk_mb(tmp / "store")
                by_size[size] = time_queries(store, end, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    label = {100_000: "100k", 1_000_000: "1M", 10_000_000: "10M"}
    body = ["### Insert throughput (chDB, embedded)", "",
            "| path | rows | batch | rows/s | target | met |", "|---|---|---|---|---|---|",
            f"| `Store.insert_interactions` (ScoredInteraction rows, rollup view on) | {insert_rows:,} | {batch:,} "
            f"| {rate:,.0f} | >= {INSERT_TARGET:,} | {'met' if rate >= INSERT_TARGET else 'NOT met'} |"]
    for size, fill_rate in fill_rates.items():
        body.append(f"| `INSERT ... SELECT FROM numbers()` (generating the {label[size]} table) | "
                    f"{size:,} | 1,000,000 | {fill_rate:,.0f} | (setup, no target) | |")
    body += ["", f"### Query latency (ms, p50 / p95 over {repeats} runs after a warm-up)", "",
             "| query | kind | " + " | ".join(f"{label[size]} p50 | {label[size]} p95" for size in sizes)
             + " | target (p95 at largest size) |",
             "|---|---|" + "---|---|" * len(sizes) + "---|"]
    largest = sizes[-1]
    missed = []
    for name, (kind, _) in queries(START).items():
        cells = " | ".join(f"{by_size[size][name][0]:.1f} | {by_size[size][name][1]:.1f}" for size in sizes)
        p95 = by_size[largest][name][1]
        ok = p95 < QUERY_TARGET_MS
        if not ok:
            missed.append(name)
        body.append(f"| {name} | {kind} | {cells} | < {QUERY_TARGET_MS:.0f} ms: {'met' if ok else 'NOT met'} |")
    body += ["", "Store size on disk after each fill (interactions + rollups + rest): "
             + ", ".join(f"{label[size]}: {disk[size]:,.0f} MiB" for size in sizes) + ".", ""]
    body.append("Baselines: the issue's targets (>= 50k rows/s inserted; every analyst query < 200 ms p95 at "
                "10M rows); there is no earlier storage layer to compare with.")
    if rate < INSERT_TARGET:
        body.append(f"\nInsert target NOT met ({rate:,.0f} rows/s): the time is mostly Python turning "
                    "ScoredInteraction objects into JSON rows plus the rollup view's set states; the engine "
                    "alone loads far faster (the numbers() fill above).")
    if missed:
        body.append("\nQuery target NOT met at the largest size for: " + "; ".join(missed) + ". Limits: the "
                    "rollups hold exact, duplicate-insensitive sets (one id hash per interaction, distinct "
                    "value pairs for quantiles), so a query over a whole week merges sets of millions of "
                    "elements; narrower windows (last day) and single clusters stay fast. Exactness under "
                    "replays is the reason for this design (see docs/storage.md).")
    command = "python -m benchmarks.bench_storage" + (" --quick" if args.quick else "")
    title = "Storage (chDB): inserts and queries" + (" — quick smoke run" if args.quick else "")
    path = write_fragment("storage", title, command, "\n".join(body))
    print(path.read_text(encoding="utf-8"))
    return path


if __name__ == "__main__":
    main()
