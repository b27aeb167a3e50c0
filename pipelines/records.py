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

    @classmethod
    def trusted(cls, values: dict[str, Any]) -> Any:
        """A row from ``values`` that already are what validation would make of them (every field,
        in declaration order, of its declared type; what the pipeline builds from validated
        input), without validating them again: validation cost more than the rest of the row's
        work. The result is equal to, and dumps exactly as, the validated row (tests check it).
        Like pydantic's ``model_construct`` (which is slower than validating), minus its defaults
        and aliases."""
        row = cls.__new__(cls)
        object.__setattr__(row, "__dict__", values)
        object.__setattr__(row, "__pydantic_fields_set__", set(values))
        object.__setattr__(row, "__pydantic_extra__", None)
        object.__setattr__(row, "__pydantic_private__", None)
        return row


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
    family_id: str | None = Field(None, description="the intent family of cluster_id when scored (see pipelines.family)")
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
    family_id: str | None = Field(None, description="the intent family this cluster belongs to (see pipelines.family)")
    family_label: str | None = Field(None, description="the family's readable label (its largest member's label)")
    family_category: str | None = Field(None, description="the family's one category (the strictest of its members')")
    family_aliases: tuple[str, ...] = Field((), description="family ids merged into this cluster's family earlier (interactions scored before keep them)")


class FamilyInfo(_Row):
    """An intent family: clusters that are one intent (phrasings, city names, ...), monitored as
    one unit besides each cluster. Its id is its oldest member's number (``c007`` -> ``f007``), so
    it stays while the family grows; a family merged into an older one keeps its old id as an alias."""

    family_id: str
    label: str
    category: str
    clusters: tuple[str, ...] = Field(description="member cluster ids, oldest first")
    aliases: tuple[str, ...] = Field((), description="family ids merged into this one earlier")
    size: int = Field(0, description="queries assigned to its members")


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


class IncidentMember(_Row):
    """One cluster of an incident: what it adds to the blast radius and why it belongs."""

    cluster_id: str
    cluster_label: str
    family_id: str | None
    category: str
    joined_at: datetime
    since: datetime = Field(description="time of this cluster's first failing answer in the incident (its blast radius starts here)")
    joined_by: Literal["opened", "family", "document", "sessions"] = Field(description="opened: evidence of the opening test; family: a failing answer in the family of a member; document: the failing answers cite the incident's cause document; sessions: at least half of the failing answers' sessions were already the incident's")
    below_baseline_count: int
    affected_sessions: int


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
    level: Literal["cluster", "family", "document"] = Field("cluster", description="the test that opened the incident: one cluster's, its intent family's, or one document's (the answers of free clusters that retrieved it first)")
    clusters: tuple[str, ...] = Field((), description="every member cluster id, in the order they joined (cluster_id is the first)")
    clusters_added: tuple[str, ...] = Field((), description="member clusters this event adds (all of them for opened)")
    family_ids: tuple[str, ...] = Field((), description="intent families of the member clusters")
    members: tuple[IncidentMember, ...] = ()
    cause: SharedDocument | None = Field(None, description="the document version the incident is correlated by, if its failing answers share one")
