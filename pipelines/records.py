"""What the pipeline emits: scored interactions, cluster descriptions and incident events.

These are the rows the stores write, the lines ``replay --scored-out/--alerts-out`` print and the
payloads the Kafka topics carry, so every driver and backend speaks the same shapes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ContextRef(_Row):
    """The part of a retrieved passage that matters for root cause: which document, which version."""

    doc_id: str | None
    doc_version: str | None
    stale: bool = False


class ScoredInteraction(_Row):
    interaction_id: str
    session_id: str | None
    customer_id: str | None
    timestamp: datetime
    query: str
    response: str | None
    cluster_id: str
    cluster_label: str
    category: str
    faithfulness: float | None
    faithfulness_source: Literal["producer", "computed", "none"]
    confidence: float | None
    below_baseline: bool
    baseline_low: float | None = Field(description="lower edge of the cluster's faithfulness band when scored")
    confident_wrong: bool = Field(description="below baseline with confidence at or above the cluster's gate")
    stale_context: bool
    contexts: tuple[ContextRef, ...] = ()
    incident_id: str | None = None
    intent_hint: str | None = None
    model: str | None = None
    action_name: str | None = None
    action_reversible: bool | None = None
    metadata: dict[str, Any] | None = None


class ClusterInfo(_Row):
    cluster_id: str
    label: str
    category: str
    terms: tuple[str, ...]
    representative_query: str
    size: int
    centroid_version: int
    first_seen: datetime | None
    last_seen: datetime | None


class SharedDocument(_Row):
    doc_id: str
    doc_version: str | None
    count: int = Field(description="failing answers that retrieved this document version")
    share: float = Field(description="count / failing answers")
    stale: bool = Field(description="the passages were indexed before the source last changed")
    indexed_at: datetime | None = None
    doc_updated_at: datetime | None = None


class SuggestedGate(_Row):
    threshold: float = Field(description="confidence gate that would have held the failing answers back")
    current_gate: float
    failing_held_back: int
    failing_total: int
    faithful_held_back_share: float = Field(description="share of the cluster's faithful answers it would also hold back")
    faithful_held_back: int = Field(0, description="faithful answers in the cluster's baseline window it would also hold back")
    faithful_total: int = Field(0, description="faithful answers in the cluster's baseline window")


class Example(_Row):
    interaction_id: str
    session_id: str | None
    customer_id: str | None
    timestamp: datetime
    query: str
    response: str | None
    faithfulness: float | None
    confidence: float | None
    doc_refs: tuple[ContextRef, ...] = ()


class IncidentEvent(_Row):
    event: Literal["opened", "updated", "resolved"]
    incident_id: str
    sequence: int = Field(description="0 for opened, then 1, 2, ... per incident: with incident_id, the idempotency key")
    cluster_id: str
    cluster_label: str
    category: str
    severity: Literal["info", "warning", "critical"]
    status: Literal["open", "resolved"]
    onset_at: datetime
    detected_at: datetime
    event_at: datetime
    resolved_at: datetime | None = None
    below_baseline_count: int
    affected_sessions: int
    affected_customers: int
    session_ids: tuple[str, ...]
    customer_ids: tuple[str, ...]
    confident_wrong_count: int
    outreach_required: bool
    irreversible_actions: int
    suggested_gate: SuggestedGate | None
    shared_documents: tuple[SharedDocument, ...]
    stale_contexts: int = Field(description="failing answers that retrieved at least one stale passage")
    baseline_faithfulness: float | None
    baseline_low: float | None
    baseline_below_rate: float
    observed_below_rate: float
    statistic: float
    threshold: float
    summary: str
    examples: tuple[Example, ...]
