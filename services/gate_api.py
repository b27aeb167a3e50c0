"""The confidence-gate routes of the HTTP API: ``POST /v1/gate`` and ``/v1/gates`` (overrides).

Mounted by :func:`services.api.create_app` with the same bearer-token dependency as every route.
The decision itself is :class:`services.gates.GateService`; the rules are pipelines/gating.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from alerts.categories import load_policy
from services.gates import (
    GateError,
    GateRequest,
    GateService,
    ModelUnavailable,
    UnknownScope,
    gate_table,
    set_override,
    unset_override,
)
from services.metrics import Metrics
from services.store.base import Store

# A batch larger than this is refused (422): split it; one call stays on the answer path.
MAX_GATE_BATCH = 1_000


class GateAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    reversible: bool = Field(True, description="false: the answer leads to an irreversible action, and the "
                                               "category's stricter irreversible_gate applies")


class GateQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, description="the customer's question")
    confidence: float = Field(ge=0, le=1, description="the model's confidence in the answer it is about to show")
    action: GateAction | None = None
    session_id: str | None = None
    customer_id: str | None = None


class GateAnswer(BaseModel):
    cluster_id: str | None = Field(description="the intent cluster the query falls in (null: none is close)")
    family_id: str | None
    category: str
    threshold: float = Field(description="the confidence the answer needed")
    decision: str = Field(description="answer: show it; defer: hold it back (human review, fallback)")
    reasons: list[str] = Field(description="where the threshold came from, strongest rule first, and the verdict")
    incident_id: str | None = Field(description="the open incident on the query's cluster or family, if any")
    source: str = Field(description="cluster override, family override or category gate")


class GateSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(ge=0, le=1)
    reason: str = Field(min_length=1, description="why (kept with the change)")
    by: str = Field("api", min_length=1, description="who (kept with the change)")


def mount(app: FastAPI, store: Store, ingestor: Any, metrics: Metrics, auth: list, clock: Callable[[], datetime],
          categories_file=None) -> GateService | None:
    """Add the gate routes; the :class:`GateService` (None when the ingestor offers no cluster model:
    see :meth:`services.ingest.Ingestor.gate_inputs`)."""
    inputs = ingestor.gate_inputs()
    service = None if inputs is None else GateService(*inputs, ingestor.cluster_model, store, metrics)
    app.state.gates = service

    def policy():
        if service is not None:
            return service.policy
        from alerts.categories import DEFAULT_CATEGORIES
        return load_policy(categories_file or DEFAULT_CATEGORIES)

    app.state.gate_policy = policy  # the incident view shows the active gates too (services/api.py)

    @app.post("/v1/gate", dependencies=auth, tags=["gate"], response_model=GateAnswer | list[GateAnswer],
              responses={422: {"description": "a bad body: `detail` names the field"},
                         503: {"description": "no cluster model yet (Kafka mode: none published or read yet)"}})
    async def gate(body: Annotated[GateQuery | list[GateQuery], Body()]) -> Any:
        """Show this answer, or defer it? One object, or a list (a batch, answered in order).

        The query is placed read-only in the clusters the stream last published; the threshold is
        the operator's override for its cluster or family, else its category's gate, raised for
        irreversible actions and while an incident is open (docs/gates.md). Nothing is stored."""
        if service is None:
            raise HTTPException(503, "gate decisions need a cluster model: this server has no pipeline and "
                                     "follows no published model")
        items = body if isinstance(body, list) else [body]
        if len(items) > MAX_GATE_BATCH:
            raise HTTPException(422, f"body: {len(items)} queries, at most {MAX_GATE_BATCH} per call: split the batch")
        requests = [GateRequest(q.query, q.confidence, q.action.reversible if q.action else True) for q in items]
        try:
            answers = await run_in_threadpool(service.decide, requests)
        except ModelUnavailable as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
        return answers if isinstance(body, list) else answers[0]

    @app.get("/v1/gate/decisions", dependencies=auth, tags=["gate"])
    def decisions(since: Annotated[str, Query(description="decisions at or after (RFC 3339 with offset)")],
                  until: Annotated[str | None, Query(description="decisions before (RFC 3339 with offset)")] = None
                  ) -> Any:
        """The decision log per cluster and category: decisions, answered, deferred and the deferral
        rate (the human-deferral rate per intent), from the per-minute counts in the store (written
        every few seconds, so the latest seconds may be missing)."""
        from services.api import instant

        lo, hi = instant("since", since), instant("until", until)
        rows = store.gate_decision_rates(lo, hi)  # type: ignore[arg-type]
        return {"count": len(rows), "items": rows}

    @app.get("/v1/gates", dependencies=auth, tags=["gate"])
    def gates(history: Annotated[bool, Query(description="every change instead of the active gates")] = False
              ) -> Any:
        """Per cluster: the active gate and its source beside the suggested gate of its latest incident
        (with its cost); with ``history=true``, every override change with who, when and why."""
        rows = store.gate_override_history() if history else gate_table(store, policy())
        return {"count": len(rows), "items": rows}

    def changed(row: dict) -> dict:
        if service is not None:
            service.invalidate()
        return row

    @app.put("/v1/gates/{scope}", dependencies=auth, tags=["gate"],
             responses={404: {"description": "no such cluster or family"}})
    def put_gate(scope: str, body: GateSet) -> Any:
        """Set the gate of a cluster or intent family (a new version; who/when/why kept)."""
        try:
            return changed(set_override(store, scope, body.threshold, body.reason, body.by, clock()))
        except GateError as exc:
            raise HTTPException(404 if isinstance(exc, UnknownScope) else 422, str(exc)) from None

    @app.delete("/v1/gates/{scope}", dependencies=auth, tags=["gate"],
                responses={404: {"description": "no active override for this scope"}})
    def delete_gate(scope: str, reason: Annotated[str, Query(min_length=1)],
                    by: Annotated[str, Query(min_length=1)] = "api") -> Any:
        """Remove a cluster's or family's override: its category's gate applies again."""
        try:
            return changed(unset_override(store, scope, reason, by, clock()))
        except GateError as exc:
            raise HTTPException(404 if isinstance(exc, UnknownScope) else 422, str(exc)) from None

    return service
