"""Intent families and multi-cluster incidents through the HTTP API and the command line.

The API runs for real (uvicorn on a free port, httpx, the chDB store, the ingest worker with the
hashing embedder, as in test_api.py); the command line reads the same rows from the ClickHouse
HTTP test server (the clickhouse backend), so both store backends serve them. Every expected
answer is exact: the rows are written to the store here.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner

from pipelines.records import (
    ClusterInfo,
    Example,
    IncidentEvent,
    IncidentMember,
    ScoredInteraction,
    SharedDocument,
    SuggestedGate,
)
from services.cli import main
from services.settings import load_settings
from services.testing.live_api import live_api

TOKEN = "families-t0ken"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
CAUSE = SharedDocument(doc_id="pricing-table", doc_version="v3", count=4, share=0.8, stale=True,
                       indexed_at=T0 - timedelta(days=14), doc_updated_at=T0 - timedelta(days=1))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def cluster(cid: str, family: str | None, size: int, category: str = "pricing") -> ClusterInfo:
    return ClusterInfo(
        cluster_id=cid, label=f"{cid} label", category=category, terms=("fee",), representative_query=f"{cid} query",
        size=size, centroid_version=1, first_seen=at(0), last_seen=at(100), family_id=family,
        family_label=None if family is None else f"{family} family", family_category=None if family is None else
        "pricing")


def answer(iid: str, cid: str, minutes: float, session: str, below: bool = True) -> ScoredInteraction:
    return ScoredInteraction(
        interaction_id=iid, session_id=session, customer_id=f"cust-{session}", timestamp=at(minutes),
        query=f"question {iid}", response=f"answer {iid}", cluster_id=cid, cluster_label=f"{cid} label",
        category="pricing", faithfulness=0.2 if below else 0.95, faithfulness_source="producer", confidence=0.85,
        below_baseline=below, baseline_low=0.7, confident_wrong=below, stale_context=below,
        family_id={"c001": "f001", "c010": "f001", "c002": "f002"}.get(cid))


def member(cid: str, since: float, joined_by: str, family: str | None) -> IncidentMember:
    return IncidentMember(cluster_id=cid, cluster_label=f"{cid} label", family_id=family, category="pricing",
                          joined_at=at(since + 5), since=at(since), joined_by=joined_by, below_baseline_count=2,
                          affected_sessions=1)


def incident(incident_id: str, cid: str, sequence: int, onset: float, members: tuple[IncidentMember, ...] = (),
             resolved: float | None = None, sessions: tuple[str, ...] = ("s1", "s2", "s4"),
             **extra: Any) -> IncidentEvent:
    return IncidentEvent(
        event="resolved" if resolved is not None else ("opened" if sequence == 0 else "updated"),
        incident_id=incident_id, sequence=sequence, cluster_id=cid, cluster_label=f"{cid} label", category="pricing",
        severity="critical", status="resolved" if resolved is not None else "open", onset_at=at(onset),
        detected_at=at(onset + 30), event_at=at(onset + 30 + sequence),
        resolved_at=None if resolved is None else at(resolved), below_baseline_count=5, affected_sessions=3,
        affected_customers=3, session_ids=sessions, customer_ids=("cust-s1",), confident_wrong_count=5,
        outreach_required=True, irreversible_actions=0,
        suggested_gate=SuggestedGate(threshold=0.9, current_gate=0.8, failing_held_back=5, failing_total=5,
                                     faithful_held_back_share=0.1),
        shared_documents=(CAUSE, SharedDocument(doc_id="faq", doc_version="v1", count=1, share=0.2, stale=False)),
        stale_contexts=4, baseline_faithfulness=0.9, baseline_low=0.7, baseline_below_rate=0.02,
        observed_below_rate=0.6, statistic=9.0, threshold=5.0, summary=f"{incident_id} summary",
        examples=(Example(interaction_id="a1", session_id="s1", customer_id="cust-s1", timestamp=at(onset + 1),
                          query="q", response="a", faithfulness=0.2, confidence=0.85),),
        members=members, clusters=tuple(m.cluster_id for m in members), family_ids=tuple(
            dict.fromkeys(m.family_id for m in members if m.family_id)), **extra)


MEMBERS = (member("c001", 0, "opened", "f001"), member("c010", 20, "family", "f001"),
           member("c002", 50, "document", "f002"))


def seed(store) -> None:
    """f001 = {c001, c010} (f009 merged into it: an alias), f002 = {c002}, c003 without a family.
    inc-fam: a family-level incident over c001 (since 0), c010 (since 20) and c002 (since 50),
    open; inc-one: a single-cluster incident of c003 stored without members, resolved."""
    store.upsert_clusters([cluster("c001", "f001", 10),
                           cluster("c010", "f001", 4).model_copy(update={"family_aliases": ("f009",)}),
                           cluster("c002", "f002", 6),
                           cluster("c003", None, 3)])
    store.insert_interactions([
        answer("a1", "c001", 1, "s1"), answer("a2", "c010", 10, "s2"), answer("a3", "c010", 25, "s2"),
        answer("a4", "c002", 40, "s3"), answer("a5", "c002", 60, "s4"), answer("a6", "c002", 61, "s5", below=False),
        answer("a7", "c003", 70, "s6"), answer("a8", "c003", 5, "s7")])
    store.insert_incident_events([
        incident("inc-fam", "c001", 0, 0, MEMBERS[:2], level="family", clusters_added=("c001", "c010"), cause=CAUSE),
        incident("inc-fam", "c001", 1, 0, MEMBERS, level="family", clusters_added=("c002",), cause=CAUSE),
        incident("inc-one", "c003", 0, 60, sessions=("s6", "s7")),  # s7 failed before its onset
        incident("inc-one", "c003", 1, 60, resolved=90, sessions=("s6", "s7"))])


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = load_settings(data_dir=tmp_path_factory.mktemp("families-api"), embedding={"backend": "hashing"},
                             cluster={"bootstrap_size": 20}, api={"tokens": [TOKEN]})
    with live_api(settings, seed=seed, batch_size=32, cluster_refresh_seconds=0) as api:
        yield api


def items(res: httpx.Response) -> list[dict]:
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["count"] == len(body["items"])
    return body["items"]


# ---- HTTP API --------------------------------------------------------------------------------

def test_clusters_carry_their_family(api):
    listed = {c["cluster_id"]: c for c in items(api.client.get("/v1/clusters"))}
    assert {cid: (c["family_id"], c["family_label"], c["family_category"]) for cid, c in listed.items()} == {
        "c001": ("f001", "f001 family", "pricing"), "c010": ("f001", "f001 family", "pricing"),
        "c002": ("f002", "f002 family", "pricing"), "c003": (None, None, None)}
    table = list(csv.DictReader(io.StringIO(api.client.get("/v1/clusters?format=csv").text)))
    assert {r["cluster_id"]: r["family_id"] for r in table} == {"c001": "f001", "c010": "f001", "c002": "f002",
                                                                "c003": ""}
    detail = api.client.get("/v1/clusters/c010").json()
    assert detail["family"]["clusters"] == ["c001", "c010"] and detail["family"]["family_id"] == "f001"
    assert detail["open_incidents"] == ["inc-fam"]  # c010 is a member, not the first cluster
    unfamilied = api.client.get("/v1/clusters/c003").json()
    assert unfamilied["family"] is None and unfamilied["open_incidents"] == []


def test_families_list_and_detail(api):
    families = items(api.client.get("/v1/families"))
    assert [(f["family_id"], f["label"], f["category"], f["clusters"], f["n_clusters"], f["size"])
            for f in families] == [("f001", "f001 family", "pricing", ["c001", "c010"], 2, 14),
                                   ("f002", "f002 family", "pricing", ["c002"], 1, 6)]
    assert families[0]["first_seen"] == "2026-11-02T10:00:00Z" and families[0]["last_seen"] == "2026-11-02T11:40:00Z"
    table = list(csv.DictReader(io.StringIO(api.client.get("/v1/families", headers={"Accept": "text/csv"}).text)))
    assert [(r["family_id"], r["n_clusters"], r["clusters"]) for r in table] == [("f001", "2", "c001, c010"),
                                                                                  ("f002", "1", "c002")]
    f001 = api.client.get("/v1/families/f001").json()
    assert [m["cluster_id"] for m in f001["members"]] == ["c001", "c010"]
    assert f001["members"][1]["label"] == "c010 label" and f001["open_incidents"] == ["inc-fam"]
    assert api.client.get("/v1/families/f002").json()["open_incidents"] == ["inc-fam"]  # c002 joined by document
    # f009 merged into f001: its old id (interactions scored before carry it) finds f001.
    assert [f["aliases"] for f in families] == [["f009"], []]
    merged = api.client.get("/v1/families/f009").json()
    assert merged["family_id"] == "f001" and [m["cluster_id"] for m in merged["members"]] == ["c001", "c010"]
    for family_id in ("nope", quote("' OR 1=1 --", safe=""), quote("{family_id:String}", safe="")):
        res = api.client.get(f"/v1/families/{family_id}")
        assert res.status_code == 404 and "no family" in res.json()["detail"]
    assert httpx.get(f"{api.url}/v1/families").status_code == 401
    assert {"/v1/families", "/v1/families/{family_id}"} <= set(api.client.get("/openapi.json").json()["paths"])


@pytest.mark.parametrize(("query", "expected"), [
    ("", ["inc-one", "inc-fam"]),
    ("?cluster=c001", ["inc-fam"]),
    ("?cluster=c010", ["inc-fam"]),
    ("?cluster=c002", ["inc-fam"]),  # joined with the second event
    ("?cluster=c003", ["inc-one"]),  # no member list: its cluster_id
    ("?cluster=c999", []),
    ("?cluster=c010&status=resolved", []),
])
def test_incidents_match_any_member_cluster(api, query, expected):
    assert [i["incident_id"] for i in items(api.client.get(f"/v1/incidents{query}"))] == expected


def test_an_incident_carries_its_members_and_cause(api):
    listed = {i["incident_id"]: i for i in items(api.client.get("/v1/incidents"))}
    assert (listed["inc-fam"]["n_clusters"], listed["inc-one"]["n_clusters"]) == (3, 1)
    assert (listed["inc-one"]["level"], listed["inc-one"]["clusters"], listed["inc-one"]["members"],
            listed["inc-one"]["cause"]) == ("cluster", [], [], None)
    found = api.client.get("/v1/incidents/inc-fam").json()
    assert (found["level"], found["clusters"], found["family_ids"], found["n_clusters"]) == (
        "family", ["c001", "c010", "c002"], ["f001", "f002"], 3)
    assert found["members"] == [json.loads(m.model_dump_json()) for m in MEMBERS]
    assert found["cause"] == json.loads(CAUSE.model_dump_json())
    assert [e["clusters_added"] for e in found["events"]] == [["c001", "c010"], ["c002"]]
    assert [len(e["members"]) for e in found["events"]] == [2, 3]
    header = api.client.get("/v1/incidents?format=csv").text.splitlines()
    assert "n_clusters" in header[0].split(",") and len(header) == 3


def test_the_blast_radius_spans_every_member(api):
    rows = items(api.client.get("/v1/incidents/inc-fam/sessions"))
    # a2 (c010 at 10) is before c010's since (20); a4 (c002 at 40) before c002's (50); a6 passes.
    assert [(r["session_id"], r["customer_id"], r["example_interaction_id"]) for r in rows] == [
        ("s1", "cust-s1", "a1"), ("s2", "cust-s2", "a3"), ("s4", "cust-s4", "a5")]
    table = list(csv.DictReader(io.StringIO(api.client.get("/v1/incidents/inc-fam/sessions?format=csv").text)))
    assert [r["session_id"] for r in table] == ["s1", "s2", "s4"]
    paged = api.client.get("/v1/incidents/inc-fam/sessions?limit=2").json()
    assert [r["session_id"] for r in paged["items"]] == ["s1", "s2"]
    assert [r["session_id"] for r in items(api.client.get(paged["next"]))] == ["s4"]
    # The single-cluster incident: c003 from onset (60) to resolution (90).
    assert [r["session_id"] for r in items(api.client.get("/v1/incidents/inc-one/sessions"))] == ["s6"]


# ---- the command line, against the ClickHouse HTTP test server ---------------------------------

@pytest.fixture(scope="module")
def cli(clickhouse_server, tmp_path_factory):
    database = f"t_{uuid.uuid4().hex[:12]}"
    with clickhouse_server.store(database) as store:
        store.migrate()
        seed(store)
    env = {"FAITHWATCH_DATA_DIR": str(tmp_path_factory.mktemp("families-cli")),
           "FAITHWATCH_STORE__BACKEND": "clickhouse", "FAITHWATCH_STORE__URL": clickhouse_server.url,
           "FAITHWATCH_STORE__PASSWORD": clickhouse_server.password.get_secret_value(),
           "FAITHWATCH_STORE__DATABASE": database}

    def run(*args: str) -> str:
        res = CliRunner().invoke(main, list(args), env=env)
        assert res.exit_code == 0, res.output
        return res.output

    yield run
    with clickhouse_server.store(database) as cleanup:
        cleanup.command(f"DROP DATABASE IF EXISTS {database}")


def test_clusters_list_groups_clusters_by_family(cli):
    lines = cli("clusters", "list").splitlines()
    assert lines[0].split()[:3] == ["family/cluster", "label", "category"]
    assert [line.split()[0] for line in lines[2:]] == ["f001", "c001", "c010", "f002", "c002", "(no", "c003"]
    first = lines[2].split()
    assert first[:5] == ["f001", "f001", "family", "pricing", "14"] and lines[2].rstrip().endswith("2 clusters")
    assert lines[3].startswith("  c001 ") and lines[3].split()[1:3] == ["c001", "label"]
    assert lines[-1].startswith("  c003 ") and lines[-2].startswith("(no family)")
    rows = list(csv.DictReader(io.StringIO(cli("clusters", "list", "--format", "csv"))))
    assert [(r["cluster_id"], r["family_id"], r["family_label"], r["family_category"]) for r in rows] == [
        ("c001", "f001", "f001 family", "pricing"), ("c002", "f002", "f002 family", "pricing"),
        ("c003", "", "", ""), ("c010", "f001", "f001 family", "pricing")]
    assert [(c["cluster_id"], c["family_id"]) for c in json.loads(cli("clusters", "list", "--format", "json"))] == [
        ("c001", "f001"), ("c002", "f002"), ("c003", None), ("c010", "f001")]


def test_clusters_show_names_the_family(cli):
    text = cli("clusters", "show", "c010")
    assert 'family    f001 "f001 family" (category pricing): 2 clusters, c001, c010' in text
    assert "incidents inc-fam" in text
    assert "family    none stored" in cli("clusters", "show", "c003")
    detail = json.loads(cli("clusters", "show", "c010", "--format", "json"))
    assert detail["family"]["clusters"] == ["c001", "c010"] and detail["open_incidents"] == ["inc-fam"]


def test_incidents_list_counts_member_clusters(cli):
    rows = json.loads(cli("incidents", "list", "--format", "json"))
    assert [(r["incident_id"], r["n_clusters"]) for r in rows] == [("inc-one", 1), ("inc-fam", 3)]
    table = cli("incidents", "list").splitlines()
    assert "n_clusters" in table[0].split()
    column = table[0].index("n_clusters")
    assert [line[column:].split()[0] for line in table[2:]] == ["1", "3"]
    assert [r["incident_id"] for r in json.loads(cli("incidents", "list", "--cluster", "c002", "--format", "json"))] \
        == ["inc-fam"]


def test_incidents_show_prints_members_and_cause(cli):
    text = cli("incidents", "show", "inc-fam")
    lines = text.splitlines()
    assert "  clusters     3 member clusters (opened by the family's test), families f001, f002" in lines
    header = next(k for k, line in enumerate(lines) if line.split()[:3] == ["cluster_id", "label", "joined_by"])
    assert lines[header].startswith("    ") and lines[header].split()[3:] == ["since", "failing_answers", "sessions"]
    members = [line.split() for line in lines[header + 2:header + 5]]
    assert [(m[0], m[1], m[3], m[4], m[5], m[6]) for m in members] == [
        ("c001", "c001", "opened", "2026-11-02T10:00:00Z", "2", "1"),
        ("c010", "c010", "family", "2026-11-02T10:20:00Z", "2", "1"),
        ("c002", "c002", "document", "2026-11-02T10:50:00Z", "2", "1")]
    assert ("  cause        4 of 5 cite pricing-table v3 STALE (indexed 2026-10-19, source updated 2026-11-01)"
            in lines)
    assert "  documents    1 of 5 cite faq v1" in lines
    # Stored without members or cause: as before, its shared documents are its causes.
    old = cli("incidents", "show", "inc-one").splitlines()
    assert not any(line.startswith("  clusters ") for line in old)
    assert [line.split()[0] for line in old if line.startswith("  cause")] == ["cause", "cause"]
    assert json.loads(cli("incidents", "show", "inc-fam", "--format", "json"))["members"][2]["joined_by"] == "document"
    sessions = list(csv.DictReader(io.StringIO(cli("incidents", "sessions", "inc-fam", "--format", "csv"))))
    assert [r["session_id"] for r in sessions] == ["s1", "s2", "s4"]
