"""Each channel's request for each kind of incident event: what PagerDuty, Slack, Alertmanager and
a Standard Webhooks receiver get, within their documented limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from pipelines.records import Example, IncidentMember
from services.notify import alertmanager, pagerduty, slack, webhook
from services.notify.message import Links
from services.notify.notify_file import AlertmanagerChannel, PagerDutyChannel, SlackChannel, WebhookChannel
from services.notify.sample import ONSET, sample_event

PD = PagerDutyChannel(type="pagerduty", routing_key="pd-routing-key", url="http://127.0.0.1:1/v2/enqueue")
SLACK = SlackChannel(type="slack", webhook_url="http://127.0.0.1:1/hook")
AM = AlertmanagerChannel(type="alertmanager", url="http://127.0.0.1:9093/")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOOK = WebhookChannel(type="webhook", url="http://127.0.0.1:1/faithwatch", secret=SECRET)
LINKS = Links(grafana_url="https://grafana.example/", api_url="https://fw.example")
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
RESOLVED_AT = ONSET + timedelta(hours=5)

OPENED = sample_event()
GREW = sample_event(event="updated", sequence=1, below_baseline_count=40, affected_sessions=9)
RESOLVED = sample_event(event="resolved", sequence=2, status="resolved", resolved_at=RESOLVED_AT)
LATE = sample_event(event="updated", sequence=3, status="resolved", resolved_at=RESOLVED_AT, below_baseline_count=41)
REOPENED = sample_event(event="updated", sequence=4, status="open", below_baseline_count=45)


def body(request) -> dict:
    return json.loads(request.body)


# ---- PagerDuty ----------------------------------------------------------------------------------


def test_pagerduty_opens_grows_and_resolves_one_alert_keyed_by_the_incident():
    opened, grew, reopened = (body(pagerduty.request(ev, PD, LINKS, NOW)) for ev in (OPENED, GREW, REOPENED))
    resolved = body(pagerduty.request(RESOLVED, PD, LINKS, NOW))
    assert [b["event_action"] for b in (opened, grew, resolved, reopened)] == ["trigger", "trigger", "resolve",
                                                                                "trigger"]
    assert {b["dedup_key"] for b in (opened, grew, resolved, reopened)} == {"inc-1"}
    assert {b["routing_key"] for b in (opened, resolved)} == {"pd-routing-key"}
    assert "payload" not in resolved
    assert "40 failing answers" in grew["payload"]["summary"]


def test_a_late_update_after_resolution_never_pages():
    assert pagerduty.request(LATE, PD, LINKS, NOW) is None


def test_pagerduty_payload_carries_what_on_call_needs():
    p = body(pagerduty.request(OPENED, PD, LINKS, NOW))["payload"]
    assert p["source"] == "faithwatch" and p["severity"] == "critical" and p["component"] == "c001"
    d = p["custom_details"]
    assert d["blast_radius"] == {"failing_answers": 23, "sessions": 2, "customers": 1}
    assert d["clusters"][0]["cluster_id"] == "c001"
    assert d["cause"].startswith("19 of 23 cite pricing-table v3 STALE (indexed 2026-10-19")
    assert d["cause_documents"][0]["stale"] is True
    assert d["confident_but_wrong"] == 19 and d["outreach_required"] is True
    assert d["suggested_gate"].startswith("raise 0.80 -> 0.89: holds back 19 of 23 failing answers")
    links = body(pagerduty.request(OPENED, PD, LINKS, NOW))["links"]
    assert links == [
        {"href": "https://grafana.example/d/faithwatch-incident/incident?var-incident=inc-1",
         "text": "Grafana: incident inc-1"},
        {"href": "https://fw.example/v1/incidents/inc-1", "text": "faithwatch API: incident inc-1"}]
    assert "links" not in body(pagerduty.request(OPENED, PD, Links(), NOW))


@pytest.mark.parametrize(("severity", "mapping", "expected"), [
    ("info", {}, "info"), ("warning", {}, "warning"), ("critical", {}, "critical"),
    ("warning", {"warning": "error"}, "error"), ("critical", {"warning": "error"}, "critical"),
])
def test_pagerduty_severity_follows_the_category_and_the_channel_mapping(severity, mapping, expected):
    channel = PagerDutyChannel(type="pagerduty", routing_key="k", severities=mapping)
    request = pagerduty.request(sample_event(severity=severity), channel, LINKS, NOW)
    assert body(request)["payload"]["severity"] == expected


def test_pagerduty_summary_is_cut_to_1024_characters():
    long = sample_event(cluster_label="rates " * 400)
    summary = body(pagerduty.request(long, PD, LINKS, NOW))["payload"]["summary"]
    assert len(summary) == pagerduty.SUMMARY_LIMIT and summary.endswith("…")


# ---- Slack --------------------------------------------------------------------------------------


def texts(block: dict) -> list[str]:
    found = [block["text"]["text"]] if "text" in block else []
    found += [f["text"] for f in block.get("fields", [])]
    found += [e["text"] for e in block.get("elements", [])]
    return found


def test_slack_message_has_the_header_and_the_facts():
    msg = body(slack.request(OPENED, SLACK, LINKS, NOW))
    header, *rest = msg["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "emoji": False,
                                                 "text": '[CRITICAL] OPENED: c001 "fees / fee"'}}
    fields = [t for b in rest for t in b.get("fields") and texts(b) or []]
    assert [f.split("\n")[0] for f in fields] == ["*Category*", "*Since*", "*Sessions / customers*", "*Cause*",
                                                  "*Confident but wrong*", "*Gate*", "*Outreach*"]
    assert "2 sessions, 1 customers" in fields[2] and "REQUIRED" in fields[6]
    assert sum("*Example*" in t for b in rest for t in texts(b)) == 1
    assert "<https://fw.example/v1/incidents/inc-1|faithwatch API: incident inc-1>" in texts(rest[-1])[0]
    assert msg["text"].startswith("[CRITICAL] OPENED pricing")


def test_slack_resolve_and_late_evidence_are_messages_that_say_so():
    resolved = body(slack.request(RESOLVED, SLACK, LINKS, NOW))["blocks"]
    assert resolved[0]["text"]["text"].startswith("[CRITICAL] RESOLVED")
    assert "Resolved at 2026-11-02 15:00 UTC" in resolved[1]["text"]["text"]
    late = body(slack.request(LATE, SLACK, LINKS, NOW))["blocks"]
    assert late[0]["text"]["text"].startswith("[CRITICAL] LATE EVIDENCE")
    assert "stays resolved; nobody is paged" in late[1]["text"]["text"]
    assert not any("*Example*" in t for b in resolved + late for t in texts(b))


def test_slack_message_stays_within_block_kit_limits():
    huge = "x" * 10_000
    members = tuple(IncidentMember(cluster_id=f"c{k:03d}", cluster_label=huge, family_id="f001", category="pricing",
                                   joined_at=ONSET, since=ONSET, joined_by="family", below_baseline_count=1,
                                   affected_sessions=1) for k in range(40))
    examples = tuple(Example(interaction_id=f"i{k}", session_id="s", customer_id=None, timestamp=ONSET, query=huge,
                             response=huge, faithfulness=0.1, confidence=0.9) for k in range(10))
    ev = sample_event(cluster_label=huge, summary=huge, members=members, examples=examples,
                      clusters=tuple(m.cluster_id for m in members))
    blocks = body(slack.request(ev, SLACK, LINKS, NOW))["blocks"]
    assert len(blocks) <= slack.BLOCKS_LIMIT
    assert len(blocks[0]["text"]["text"]) <= slack.HEADER_LIMIT
    for block in blocks[1:]:
        if "text" in block:
            assert len(block["text"]["text"]) <= slack.SECTION_LIMIT
        assert len(block.get("fields", [])) <= slack.FIELDS_PER_SECTION
        assert all(len(f["text"]) <= slack.FIELD_LIMIT for f in block.get("fields", []))
    assert sum("*Example*" in t for b in blocks for t in texts(b)) == slack.EXAMPLES
    # the cut text says it was cut
    assert any(t.endswith("…") for b in blocks for t in texts(b))


def test_slack_text_is_escaped():
    ev = sample_event(summary="answers cite <pricing> & <fees>")
    assert "answers cite &lt;pricing&gt; &amp; &lt;fees&gt;" in json.dumps(body(slack.request(ev, SLACK, LINKS, NOW)))


# ---- Alertmanager -------------------------------------------------------------------------------


def test_alertmanager_alert_labels_annotations_and_times():
    request = alertmanager.request(OPENED, AM, LINKS, NOW)
    assert request.url == "http://127.0.0.1:9093/api/v2/alerts"
    [alert] = body(request)
    assert alert["labels"] == {"alertname": "FaithwatchIncident", "incident_id": "inc-1", "cluster": "c001",
                               "category": "pricing", "severity": "critical"}
    assert alert["startsAt"] == ONSET.isoformat() and "endsAt" not in alert
    assert set(alert["annotations"]) == {"summary", "description", "links"}
    assert "cause: 19 of 23 cite pricing-table v3" in alert["annotations"]["description"]
    assert alert["annotations"]["links"].split() == [href for _, href in LINKS.of(OPENED)]
    [ended] = body(alertmanager.request(RESOLVED, AM, LINKS, NOW))
    assert ended["endsAt"] == RESOLVED_AT.isoformat() and ended["labels"] == alert["labels"]
    assert alertmanager.request(LATE, AM, LINKS, NOW) is None  # stays ended
    [again] = body(alertmanager.request(REOPENED, AM, LINKS, NOW))
    assert "endsAt" not in again


# ---- webhook ------------------------------------------------------------------------------------


def test_the_standard_webhooks_test_vector():
    # From the Standard Webhooks reference libraries' test suites (every language uses this vector).
    signed = webhook.signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                               datetime.fromtimestamp(1614265330, tz=UTC), b'{"test": 2432232314}')
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_webhook_is_the_event_signed_so_a_receiver_verifies_it():
    now = datetime.now(UTC)  # a receiver checks the timestamp against its own clock
    request = webhook.request(GREW, HOOK, LINKS, now)
    assert json.loads(request.body) == GREW.to_json_dict()
    assert request.headers["webhook-id"] == "inc-1:1"
    assert Webhook(SECRET).verify(request.body, request.headers) == GREW.to_json_dict()
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(SECRET).verify(request.body.replace(b"40", b"41"), request.headers)


def test_a_retry_keeps_the_webhook_id_and_signs_its_own_timestamp():
    first = webhook.request(OPENED, HOOK, LINKS, NOW)
    retry = webhook.request(OPENED, HOOK, LINKS, NOW + timedelta(seconds=30))
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]
    assert int(retry.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 30
    assert first.headers["webhook-signature"] != retry.headers["webhook-signature"]
    assert webhook.request(LATE, HOOK, LINKS, NOW) is not None  # informational: status says resolved
