"""Human-readable renderings: an incident for on-call, tables for the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from services.export import as_csv


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list | tuple):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def table(rows: Sequence[dict], columns: Sequence[str], max_width: int = 48) -> str:
    if not rows:
        return "(none)"
    cells = [[_fmt(r.get(c))[:max_width] for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[k]) for row in cells)) for k, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def as_json(rows: Any) -> str:
    return json.dumps(rows, indent=2, sort_keys=True, default=str)


def render(rows: Sequence[dict], columns: Sequence[str], fmt: str) -> str:
    if fmt == "json":
        return as_json(list(rows))
    if fmt == "csv":
        return as_csv(rows, columns)
    return table(rows, columns)


# The member clusters of an incident as `incidents show` prints them.
MEMBER_COLUMNS = ["cluster_id", "label", "joined_by", "since", "failing_answers", "sessions"]


def members_rows(members: Sequence[dict]) -> list[dict]:
    return [{"cluster_id": m["cluster_id"], "label": m["cluster_label"], "joined_by": m["joined_by"],
             "since": m["since"], "failing_answers": m["below_baseline_count"], "sessions": m["affected_sessions"]}
            for m in members]


def document_lines(ev: dict) -> list[tuple[str, str]]:
    """``(heading, text)`` per document the failing answers share: the cause (the document version
    the incident is correlated by) first, the others after it. An incident stored without a cause
    (before families existed) lists its shared documents as its causes, as it always did."""
    cause = ev.get("cause")
    documents = [(cause, "cause")] if cause else []
    for d in ev.get("shared_documents") or []:
        if not (cause and (d["doc_id"], d.get("doc_version")) == (cause["doc_id"], cause.get("doc_version"))):
            documents.append((d, "documents" if cause else "cause"))
    lines = []
    for d, heading in documents:
        stale = " STALE" if d["stale"] else ""
        extra = ""
        if d.get("indexed_at") and d.get("doc_updated_at"):
            extra = f" (indexed {str(d['indexed_at'])[:10]}, source updated {str(d['doc_updated_at'])[:10]})"
        lines.append((heading, f"{d['count']} of {ev['below_baseline_count']} cite {d['doc_id']} "
                               f"{d.get('doc_version') or ''}{stale}{extra}"))
    return lines


def gate_text(g: dict) -> str:
    """The suggested gate and its cost, in one line."""
    return (f"raise {g['current_gate']:.2f} -> {g['threshold']:.2f}: holds back {g['failing_held_back']} of "
            f"{g['failing_total']} failing answers and {g['faithful_held_back_share']:.0%} of faithful ones "
            f"({g.get('faithful_held_back', 0)} of {g.get('faithful_total', 0)} in the baseline window)")


def gates_lines(gates: dict | None) -> list[str]:
    """The active gate of each member cluster and the command adopting the suggested one
    (:func:`services.gates.incident_gates`; absent from alerts, which are events)."""
    if not gates:
        return []
    active = "; ".join(f"{r['cluster_id']} {r['active_gate']:.2f} ({r['source']}"
                       + (f" v{r['override_version']} by {r['override_by']}" if r.get("override_version") else "")
                       + ")" for r in gates["active"])
    lines = [f"  active gate  {active}"]
    if gates.get("adopt"):
        lines.append(f"  adopt        {gates['adopt']}")
    return lines


def incident_text(ev: dict) -> str:
    """The alert as on-call reads it."""
    kind = ev["event"].upper()
    if ev["event"] == "updated" and ev.get("status") == "resolved":
        kind = "UPDATED AFTER RESOLUTION"  # late evidence from its window: not a new page
    lines = [
        f"[{ev['severity'].upper()}] {kind} {ev['incident_id']}",
        f"  cluster      {ev['cluster_id']} \"{ev['cluster_label']}\" (category {ev['category']})",
        f"  since        {ev['onset_at']} (detected {ev['detected_at']})",
        f"  blast radius {ev['below_baseline_count']} failing answers, {ev['affected_sessions']} sessions, "
        f"{ev['affected_customers']} customers",
        f"  baseline     faithfulness median {_fmt(ev.get('baseline_faithfulness'))}, band low "
        f"{_fmt(ev.get('baseline_low'))}; below-baseline rate {ev['baseline_below_rate']:.1%} -> "
        f"{ev['observed_below_rate']:.1%} since onset",
    ]
    members = ev.get("members") or []
    if members:
        level = {"family": " (opened by the family's test)",
                 "document": " (opened by its cause document's test, over the answers that retrieved it first)",
                 }.get(ev.get("level") or "", "")
        lines.append(f"  clusters     {len(members)} member cluster{'' if len(members) == 1 else 's'}{level}"
                     + (f", families {', '.join(ev['family_ids'])}" if ev.get("family_ids") else ""))
        lines += ["    " + line for line in table(members_rows(members), MEMBER_COLUMNS, max_width=40).splitlines()]
    lines += [f"  {heading:<12} {text}" for heading, text in document_lines(ev)]
    lines.append(f"  confident    {ev['confident_wrong_count']} answers at or above the gate were wrong")
    if ev.get("suggested_gate"):
        lines.append(f"  gate         {gate_text(ev['suggested_gate'])}")
    lines += gates_lines(ev.get("gates"))
    lines.append(f"  outreach     {'REQUIRED' if ev['outreach_required'] else 'not required'}")
    if ev.get("irreversible_actions"):
        lines.append(f"  actions      {ev['irreversible_actions']} irreversible")
    for x in (ev.get("examples") or [])[:3]:
        lines.append(f"  example      [{x.get('session_id')}] Q: {x['query'][:70]}")
        lines.append(f"               A: {(x.get('response') or '')[:90]} "
                     f"(faithfulness {_fmt(x.get('faithfulness'))}, confidence {_fmt(x.get('confidence'))})")
    return "\n".join(lines)
