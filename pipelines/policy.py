"""Intent categories and what each means for alerting.

A category (pricing, policy, safety, account, ...) sets how much below its baseline an answer must
fall to count (``tolerance``), the confidence gate the product applies (``gate``), the severity of
an incident and whether customers hit by it must be contacted (``outreach``). Clusters get their
category from seed phrases (by embedding similarity), from producers' ``intent_hint`` values, or
from explicit overrides. The editable file is ``alerts/categories.yaml``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


def raise_severity(severity: Severity) -> Severity:
    """One step up (an irreversible action makes any incident worse)."""
    return SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]


class RaiseTo(BaseModel):
    """``on_incident: {raise_to: X}``: while an incident is open, the gate is at least X."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    raise_to: float = Field(ge=0, le=1)


# While an incident is open on a query's cluster or family: ``defer`` every answer, raise the gate
# (``{raise_to: X}``), or change nothing (``none``). See pipelines/gating.py.
OnIncident = Literal["defer", "none"] | RaiseTo


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    seed_phrases: tuple[str, ...] = ()
    hints: tuple[str, ...] = Field((), description="intent_hint values (case-insensitive) that mean this category")
    tolerance: float = Field(0.1, ge=0, le=1, description="minimum drop below the cluster median that counts as below baseline")
    gate: float = Field(0.8, ge=0, le=1, description="the product's confidence gate for these answers")
    severity: Severity = "warning"
    outreach: bool = Field(False, description="customers hit by an incident must be contacted")
    irreversible_gate: float | None = Field(None, ge=0, le=1, description="the gate for answers that lead to an "
                                            "irreversible action (at least `gate`; None: `gate`)")
    on_incident: OnIncident = Field("none", description="what the gate does while an incident is open on the "
                                    "query's cluster or family: defer, {raise_to: X} or none")

    @model_validator(mode="after")
    def _stricter_when_irreversible(self):
        if self.irreversible_gate is not None and self.irreversible_gate < self.gate:
            raise ValueError(f"irreversible_gate ({self.irreversible_gate}) must be at least gate ({self.gate})")
        return self

    @property
    def strict_gate(self) -> float:
        """The gate for an irreversible action."""
        return self.gate if self.irreversible_gate is None else self.irreversible_gate


class Override(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str = Field(description="regular expression searched in the cluster's label and representative query")
    category: str


class CategoryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str = "other"
    categories: tuple[Category, ...]
    overrides: tuple[Override, ...] = ()

    @model_validator(mode="after")
    def _consistent(self):
        names = [c.name for c in self.categories]
        if len(set(names)) != len(names):
            raise ValueError("category names must be unique")
        if self.default not in names:
            raise ValueError(f"default category {self.default!r} is not defined")
        for o in self.overrides:
            if o.category not in names:
                raise ValueError(f"override {o.match!r} names unknown category {o.category!r}")
            re.compile(o.match)
        return self

    def get(self, name: str) -> Category:
        for c in self.categories:
            if c.name == name:
                return c
        return self.get(self.default)

    def by_hint(self, hint: str | None) -> str | None:
        if not hint:
            return None
        h = hint.strip().lower()
        for c in self.categories:
            if any(h == x.lower() for x in c.hints):
                return c.name
        return None

    def override_for(self, text: str) -> str | None:
        for o in self.overrides:
            if re.search(o.match, text, flags=re.IGNORECASE):
                return o.category
        return None


DEFAULT_POLICY = CategoryPolicy(
    default="other",
    categories=(
        Category(name="other", tolerance=0.15, gate=0.8, severity="info"),
    ),
)
