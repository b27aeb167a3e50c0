"""A seeded stream of realistic interactions, optionally with one injected incident.

Queries are real (passed in, e.g. BANKING77); answers quote passages of the invented knowledge
base (:mod:`pipelines.knowledge_base`) so a grounding scorer finds them supported. Traffic
follows a daily cycle, sessions are short bursts of turns, customers come back over days, and a
small share of answers state a number no passage contains (background noise).

The ``stale_document`` incident replays the story faithwatch must catch: at onset the source of
``pricing-table`` is updated from v3 to v4, but retrieval keeps serving the v3 passage, so every
pricing answer quotes old prices with the usual ~0.84 confidence (above the 0.80 gate) until the
index is fixed after ``sessions`` sessions were hit. :class:`GroundTruth` says exactly which.

Pure: no file or clock access; same queries and config give the same records byte for byte.

>>> queries = {"exchange_rate": ["What rate do you use?", "Is the rate fair?"],
...            "card_arrival": ["Where is my card?"]}
>>> config = ScenarioConfig(days=1, per_day=300, intents=2,
...                         incident=IncidentSpec(intents=("exchange_rate",), onset_day=0.5,
...                                               sessions=3))
>>> scenario = generate(queries, config)
>>> len(scenario.records), len(scenario.truth.incident_session_ids)
(300, 3)
>>> hit = next(r for r in scenario.records
...            if r["interaction_id"] in scenario.truth.incident_interaction_ids
...            and r["contexts"][0]["doc_id"] == "pricing-table")
>>> hit["contexts"][0]["doc_version"], hit["contexts"][0]["doc_updated_at"] > hit["contexts"][0]["indexed_at"]
('v3', True)
>>> clean = generate(queries, ScenarioConfig(days=1, per_day=300, intents=2, incident=None))
>>> clean.truth.incident_interaction_ids, clean.truth.stale_doc
(frozenset(), None)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from pipelines import knowledge_base as kb
from pipelines.knowledge_base import PRICING_INTENTS, Passage

__all__ = [
    "PRICING_INTENTS",
    "INCIDENT_KINDS",
    "GroundTruth",
    "IncidentSpec",
    "PatternTruth",
    "Scenario",
    "ScenarioConfig",
    "generate",
    "to_jsonl_lines",
]

MODEL = "orbit-assist-2.3"
INCIDENT_KINDS = ("stale_document", "gradual", "spike", "low_volume", "high_confidence")

_TEMPLATES = (
    "{p}",
    "Thanks for getting in touch. {p}",
    "Here is what applies to your account: {p}",
    "{p} Is there anything else I can help with?",
    "Good question. {p} You can also find this in the app.",
)
_TURN_PROBS = (0.38, 0.27, 0.17, 0.11, 0.07)  # 1 to 5 turns; mean about 2.2
_EXTRA_CONTEXT_PROBS = (0.35, 0.40, 0.25)  # 0, 1 or 2 passages below the best match
_SAME_INTENT = 0.85  # a follow-up turn mostly stays on the session's topic
_CHANNELS = ("app", "web", "chat-widget")
_CONFIDENCE_SD = 0.04
_INCIDENT_CONFIDENCE_SD = 0.025
_KNOWN_VALUES = frozenset(float(n) for n in kb.KNOWN_NUMBERS)
_GENERIC_VALUES = _KNOWN_VALUES | frozenset(float(n) for n in kb.GENERIC_NUMBERS)


@dataclass(frozen=True)
class IncidentSpec:
    """What goes wrong, in which intents, from when and for how many sessions.

    Kinds (use :meth:`of` for each kind's defaults):

    - ``stale_document``: the source of the intents' document changes at onset but retrieval
      keeps serving the old passage; every answer quotes it faithfully (so its figures are out of
      date) until the index is fixed after ``sessions`` sessions. Pricing-table intents of
      BANKING77 switch ``pricing-table`` v3 -> v4; other data sets' intents their own generated
      document.
    - ``gradual``: a model or prompt change degrades one intent: the share of answers stating a
      made-up figure ramps from 0 to ``peak_share`` over ``ramp_hours``, until ``sessions``
      sessions were hit.
    - ``spike``: every answer in the intent is wrong for ``duration_minutes`` (a bad deploy rolled
      back), at most ``sessions`` sessions.
    - ``low_volume``: every answer states a made-up figure, in the stream's rarest intent.
    - ``high_confidence``: every answer states a made-up figure at a confidence well above the
      gate (``confidence`` 0.95).

    ``intents=()`` picks the intent from the stream: the second most popular one (the rarest for
    ``low_volume``) among those the kind can hit.
    """

    kind: str = "stale_document"
    # One intent, so the incident lives in one cluster (several pricing intents reading the same
    # stale table would be one incident per cluster they form).
    intents: tuple[str, ...] = ("exchange_rate",)
    onset_day: float = 2.3  # days after the stream starts
    sessions: int = 23  # distinct sessions hit before the index is fixed
    confidence: float = 0.84  # mean confidence of the wrong answers
    stale_share: float = 0.85  # the rest are wrong another way (a made-up figure)
    peak_share: float = 1.0  # gradual: the failing share reached at the end of the ramp
    ramp_hours: float = 0.0  # gradual: hours from onset to the peak share
    duration_minutes: float | None = None  # spike: the burst ends this long after onset
    # stale_document on generated documents: one document all the intents retrieve (from the
    # stream's start) instead of each its own ``kb-<intent>``; it is the one that goes stale.
    document: str | None = None

    @classmethod
    def of(cls, kind: str, **overrides: Any) -> IncidentSpec:
        """The spec of ``kind`` with that kind's defaults, intent picked from the stream.

        >>> IncidentSpec.of("gradual").ramp_hours, IncidentSpec.of("low_volume").sessions
        (12.0, 8)
        """
        defaults: dict[str, dict[str, Any]] = {
            "stale_document": {},
            "gradual": {"peak_share": 0.6, "ramp_hours": 12.0, "sessions": 30, "confidence": 0.85},
            "spike": {"duration_minutes": 60.0, "sessions": 1_000, "confidence": 0.86,
                      "onset_day": 2.6},
            "low_volume": {"sessions": 8, "confidence": 0.85, "onset_day": 1.5},
            "high_confidence": {"confidence": 0.95},
        }
        if kind not in defaults:
            raise ValueError(f"unknown incident kind {kind!r}; known: {', '.join(INCIDENT_KINDS)}")
        return cls(**{"kind": kind, "intents": (), **defaults[kind], **overrides})


@dataclass(frozen=True)
class ScenarioConfig:
    seed: int = 7
    start: datetime = datetime(2026, 11, 2, tzinfo=UTC)
    days: float = 4.0
    per_day: int = 1500  # interactions per day on average
    intents: int = 30  # BANKING77 intents in the stream (always includes the pricing ones)
    noise_rate: float = 0.03  # background share of answers with a hallucinated figure
    incident: IncidentSpec | None = field(default_factory=IncidentSpec)
    gate: float = 0.80  # the product's confidence gate: answers at or above it are shown as is
    producer_faithfulness: bool = False  # add the producer's own evaluator score to each record
    # More injected patterns beside ``incident`` (each its own intents, cause and onset; they may
    # overlap in time). Their ground truth is in ``GroundTruth.patterns``.
    incidents: tuple[IncidentSpec, ...] = ()

    def specs(self) -> tuple[IncidentSpec, ...]:
        """Every injected pattern: ``incident`` first, then ``incidents``."""
        return ((self.incident,) if self.incident else ()) + tuple(self.incidents)


@dataclass(frozen=True)
class PatternTruth:
    """One injected pattern (one :class:`IncidentSpec`): what a single incident should cover."""

    kind: str
    intents: tuple[str, ...]
    onset_at: datetime
    fixed_at: datetime | None  # when it stopped (None: not within the stream)
    stale_doc: tuple[str, str] | None  # the cause document and the version served stale
    interaction_ids: frozenset[str]
    session_ids: frozenset[str]
    customer_ids: frozenset[str]
    stale_interaction_ids: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "intents": list(self.intents), "onset_at": _iso(self.onset_at),
            "fixed_at": _iso(self.fixed_at) if self.fixed_at else None,
            "stale_doc": list(self.stale_doc) if self.stale_doc else None,
            "interaction_ids": sorted(self.interaction_ids), "session_ids": sorted(self.session_ids),
            "customer_ids": sorted(self.customer_ids),
            "stale_interaction_ids": sorted(self.stale_interaction_ids),
        }


@dataclass(frozen=True)
class GroundTruth:
    """What was injected. The ``incident_*`` fields cover every pattern together (``onset_at``,
    ``fixed_at``, ``stale_doc`` and ``kind`` are the first pattern's); ``patterns`` has each one
    (one per spec, ``ScenarioConfig.incident`` first)."""

    incident_interaction_ids: frozenset[str]
    incident_session_ids: frozenset[str]
    incident_customer_ids: frozenset[str]
    incident_intents: tuple[str, ...]
    onset_at: datetime | None
    stale_doc: tuple[str, str] | None  # ("pricing-table", "v3"); None unless stale_document
    stale_interaction_ids: frozenset[str] = frozenset()  # incident answers citing the stale doc
    fixed_at: datetime | None = None  # when v4 was re-indexed (None: not within the stream)
    noise_interaction_ids: frozenset[str] = frozenset()  # background wrong answers
    kind: str | None = None  # the incident kind (None: a clean stream)
    patterns: tuple[PatternTruth, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-safe, ids sorted (what ``faithwatch generate`` writes next to the stream).

        ``patterns`` is written only for a stream with more than one (one pattern: the
        ``incident_*`` fields are it, and the file stays as it always was)."""
        def iso(t: datetime | None) -> str | None:
            return _iso(t) if t else None
        out = {
            "kind": self.kind, "incident_intents": list(self.incident_intents),
            "onset_at": iso(self.onset_at), "fixed_at": iso(self.fixed_at),
            "stale_doc": list(self.stale_doc) if self.stale_doc else None,
            "incident_interaction_ids": sorted(self.incident_interaction_ids),
            "incident_session_ids": sorted(self.incident_session_ids),
            "incident_customer_ids": sorted(self.incident_customer_ids),
            "stale_interaction_ids": sorted(self.stale_interaction_ids),
            "noise_interaction_ids": sorted(self.noise_interaction_ids),
        }
        if len(self.patterns) > 1:
            out["patterns"] = [p.to_json() for p in self.patterns]
        return out


@dataclass(frozen=True)
class Scenario:
    records: list[dict[str, Any]]  # contract-valid, JSON-safe, sorted by timestamp
    truth: GroundTruth


def to_jsonl_lines(records: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    """One JSON line per record (keys sorted, newline included), ready for ``writelines``.

    >>> list(to_jsonl_lines([{"query": "fee?", "interaction_id": "a"}]))
    ['{"interaction_id": "a", "query": "fee?"}\\n']
    """
    for record in records:
        yield json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"


# --- time -----------------------------------------------------------------------------------

def _traffic(hour: float) -> float:
    """Relative traffic at an hour of the day (peak 1.0 mid-afternoon, quiet nights)."""
    afternoon = math.exp(-(((hour - 14.5) / 4.0) ** 2))
    evening = 0.35 * math.exp(-(((hour - 20.5) / 1.8) ** 2))
    return min(1.0, 0.08 + 0.92 * afternoon + evening)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- answers ----------------------------------------------------------------------------------

def _format_like(token: str, value: float) -> str:
    body = token.strip("£%")
    decimals = len(body.split(".")[1]) if "." in body else 0
    while decimals < 2 and abs(round(value, decimals) - value) > 1e-9:
        decimals += 1  # 2% moved by 0.35 reads 2.35%, not a rounded-back 2%
    text = f"{value:,.{decimals}f}" if "," in body else f"{value:.{decimals}f}"
    return ("£" if token.startswith("£") else "") + text + ("%" if token.endswith("%") else "")


def _hallucinate(text: str, rng: np.random.Generator, known: frozenset[float] = _KNOWN_VALUES) -> str:
    """``text`` with one figure (a price or rate when there is one) changed to a value that no
    passage states: the kind of confident, specific mistake a grounding check must catch."""
    spans = kb.number_spans(text)
    money = [s for s in spans if s[2].startswith("£") or s[2].endswith("%")]
    start, end, token = (money or spans)[int(rng.integers(len(money or spans)))]
    value = float(kb.normalise_number(token))
    for attempt in range(50):
        if token.endswith("%"):
            new = value + float(rng.choice((-0.3, 0.2, 0.35, 0.6, 1.0, 1.5)))
        elif token.startswith("£"):
            new = value * float(rng.choice((0.6, 1.4, 1.5, 2.0, 2.5, 3.0)))
        else:
            new = value + float(rng.choice((1, 2, 3, 4, 6, 9))) + attempt
        candidate = _format_like(token, new)
        new_value = float(kb.normalise_number(candidate))
        if new_value > 0 and new_value != value and new_value not in known:
            return text[:start] + candidate + text[end:]
    raise AssertionError(f"no unused figure found for {token!r}")  # pragma: no cover


def _answer(passage_text: str, template: int) -> str:
    return _TEMPLATES[template].format(p=passage_text)


# --- the stream -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Turn:
    at_ms: int
    session: int
    index: int
    intent: str


@dataclass(frozen=True)
class _IntentProfile:
    weight: float
    confidence: float
    drift: float
    period_days: float
    phase: float

    def mean_confidence(self, days: float) -> float:
        # Slow drift: product confidence moves with model and index updates, not per query.
        return self.confidence + self.drift * math.sin(2 * math.pi * days / self.period_days
                                                       + self.phase)


@dataclass(frozen=True)
class _ScoreProfile:
    """How the producer's own evaluator scores an intent's right answers: its level and spread
    differ between intents and drift slowly (evaluator and index updates)."""

    mean: float
    sd: float
    drift: float
    period_days: float
    phase: float

    def at(self, days: float) -> float:
        return self.mean + self.drift * math.sin(2 * math.pi * days / self.period_days + self.phase)


def _score_profiles(intents: Sequence[str], rng: np.random.Generator) -> dict[str, _ScoreProfile]:
    return {i: _ScoreProfile(mean=float(rng.uniform(0.86, 0.96)), sd=float(rng.uniform(0.025, 0.06)),
                             drift=float(rng.uniform(0.005, 0.02)), period_days=float(rng.uniform(3, 8)),
                             phase=float(rng.uniform(0, 2 * math.pi)))
            for i in intents}


def _check(queries: Mapping[str, Sequence[str]], config: ScenarioConfig) -> None:
    if config.start.tzinfo is None:
        raise ValueError("ScenarioConfig.start must carry a timezone (naive datetimes are banned)")
    if config.days <= 0 or config.per_day < 1 or config.intents < 1:
        raise ValueError("days, per_day and intents must be positive")
    if not 0 <= config.noise_rate <= 1:
        raise ValueError("noise_rate must be within [0, 1]")
    if not any(queries.values()):
        raise ValueError("no queries given")
    for spec in config.specs():
        _check_spec(queries, config, spec)
    extra = config.incidents
    if any(spec is None for spec in extra):
        raise ValueError("ScenarioConfig.incidents holds IncidentSpecs only (no None)")
    named = [i for spec in config.specs() for i in spec.intents]
    if len(named) != len(set(named)):
        raise ValueError("two injected patterns name the same intent; each needs intents of its own")
    specs = config.specs()
    pricing = [spec for spec in specs if spec.kind == "stale_document" and spec.intents
               and kb.passage_for(spec.intents[0]).doc_id == kb.PRICING_DOC]
    if len(pricing) > 1 or (pricing and pricing[0] is not specs[0]):
        raise ValueError("only the first injected pattern (ScenarioConfig.incident) can serve the "
                         "pricing table stale")
    documents = [spec.document for spec in specs if spec.document]
    if len(documents) != len(set(documents)):
        raise ValueError("two injected patterns name the same document")


def _check_spec(queries: Mapping[str, Sequence[str]], config: ScenarioConfig, spec: IncidentSpec) -> None:
    if spec.kind not in INCIDENT_KINDS:
        raise ValueError(f"unknown incident kind {spec.kind!r}; known: {', '.join(INCIDENT_KINDS)}")
    if spec.kind == "stale_document":
        not_priced = [i for i in spec.intents if not _can_go_stale(i)]
        if not_priced:
            raise ValueError("stale_document intents must read the pricing table or a generated "
                             f"document: {not_priced}")
        if len({kb.passage_for(i).doc_id == kb.PRICING_DOC for i in spec.intents}) > 1:
            raise ValueError("stale_document intents must all read the pricing table, or none")
    if spec.document is not None:
        if spec.kind != "stale_document":
            raise ValueError("incident document is for stale_document incidents only")
        if (not spec.document or spec.document in kb.DOCUMENTS
                or any(not kb.is_generic(i) for i in spec.intents)):
            raise ValueError("a shared incident document must be a new document id, read by intents "
                             "with generated passages (not BANKING77's)")
    if not 0 < spec.peak_share <= 1 or spec.ramp_hours < 0:
        raise ValueError("incident peak_share must be within (0, 1] and ramp_hours >= 0")
    if spec.duration_minutes is not None and spec.duration_minutes <= 0:
        raise ValueError("incident duration_minutes must be positive")
    missing = [i for i in spec.intents if not queries.get(i)]
    if missing:
        raise ValueError(f"no queries for incident intents {missing}")
    if not 0 <= spec.onset_day < config.days:
        raise ValueError("incident onset_day must fall inside the stream")
    if spec.sessions < 1 or not 0 <= spec.stale_share <= 1:
        raise ValueError("incident sessions must be >= 1 and stale_share within [0, 1]")


def _can_go_stale(intent: str) -> bool:
    return intent in kb.PRICING_TABLE or kb.is_generic(intent)


def _incident_intents(spec: IncidentSpec, profiles: Mapping[str, _IntentProfile],
                      taken: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The spec's intents, or (``intents=()``) the one the kind picks from the stream (not one
    another pattern already hits: ``taken``)."""
    if spec.intents:
        return tuple(spec.intents)
    eligible = [i for i in profiles if (spec.kind != "stale_document" or _can_go_stale(i))
                and i not in taken and (spec.document is None or kb.is_generic(i))]
    if not eligible:
        raise ValueError(f"no intent in the stream can carry a {spec.kind} incident; name one")
    ranked = sorted(eligible, key=lambda i: (-profiles[i].weight, i))
    return (ranked[-1],) if spec.kind == "low_volume" else (ranked[min(1, len(ranked) - 1)],)


def _profiles(queries: Mapping[str, Sequence[str]], config: ScenarioConfig,
              rng: np.random.Generator) -> dict[str, _IntentProfile]:
    available = sorted(i for i, q in queries.items() if q)
    must = (config.incident or IncidentSpec()).intents
    must += tuple(i for spec in config.incidents for i in spec.intents if i not in must)
    must = tuple(i for i in must if i in available)
    # The incident intents are the only readers of the pricing table in the stream, so every
    # answer citing the stale table belongs to the incident.
    rest = [i for i in available if i not in must and i not in kb.PRICING_TABLE]
    extra = min(max(0, config.intents - len(must)), len(rest))
    picked = sorted(rng.choice(rest, size=extra, replace=False).tolist()) if extra else []
    chosen = [*must, *picked]
    # Zipf-like popularity over a random ranking: a few intents dominate, many are rare. The
    # incident's intents rank just behind the most popular one: pricing questions are common,
    # and a stream that takes a week to hit 23 sessions would not be the story.
    ranks = rng.permutation(len(chosen))
    for k, intent in enumerate(must):
        j = chosen.index(intent)
        swap = int(np.flatnonzero(ranks == min(1 + k, len(chosen) - 1))[0])
        ranks[j], ranks[swap] = ranks[swap], ranks[j]
    weights = 1.0 / (ranks + 1.0)
    weights /= weights.sum()
    return {
        intent: _IntentProfile(
            weight=float(w),
            confidence=float(rng.uniform(0.82, 0.93)),
            drift=float(rng.uniform(0.005, 0.02)),
            period_days=float(rng.uniform(3.0, 8.0)),
            phase=float(rng.uniform(0, 2 * math.pi)),
        )
        for intent, w in zip(chosen, weights, strict=True)
    }


def _turns(config: ScenarioConfig, intents: list[str], weights: np.ndarray,
           rng: np.random.Generator) -> tuple[list[_Turn], int]:
    """Session bursts until the stream holds ``days * per_day`` turns; returns (turns, sessions)."""
    total = max(1, round(config.days * config.per_day))
    horizon_ms = int(config.days * 86_400_000)
    start = config.start.astimezone(UTC)
    start_hour = start.hour + start.minute / 60 + start.second / 3600
    turns: list[_Turn] = []
    session = 0
    while len(turns) < total:
        while True:  # rejection-sample a session start from the daily cycle
            at = float(rng.uniform(0, horizon_ms))
            if rng.random() < _traffic((start_hour + at / 3_600_000) % 24):
                break
        topic = intents[int(rng.choice(len(intents), p=weights))]
        n = 1 + int(rng.choice(len(_TURN_PROBS), p=_TURN_PROBS))
        for index in range(n):
            if index:
                at += 30_000 + float(rng.exponential(150_000))  # minutes apart
                intent = topic if rng.random() < _SAME_INTENT else intents[
                    int(rng.choice(len(intents), p=weights))]
            else:
                intent = topic
            if at >= horizon_ms or len(turns) >= total:
                break
            turns.append(_Turn(int(at), session, index, intent))
        session += 1
    turns.sort(key=lambda t: (t.at_ms, t.session, t.index))
    return turns, session


def _uid(rng: np.random.Generator, prefix: str, nbytes: int = 8) -> str:
    return prefix + rng.bytes(nbytes).hex()


@dataclass(frozen=True)
class _Window:
    """The incident as it unfolds on this stream: who is hit and when the index is fixed."""

    onset_ms: int
    fixed_ms: int  # first turn served from the re-indexed v4 (horizon when never fixed)
    hit: frozenset[int]  # turn positions answered wrongly
    stale: frozenset[int]  # of those, the ones citing the stale v3 passage


def _window(turns: list[_Turn], spec: IncidentSpec, intents: tuple[str, ...],
            config: ScenarioConfig, rng: np.random.Generator) -> _Window:
    onset_ms = round(spec.onset_day * 86_400_000)
    horizon_ms = int(config.days * 86_400_000)
    end_ms = None
    if spec.duration_minutes is not None:
        end_ms = onset_ms + round(spec.duration_minutes * 60_000)
    fixed_ms = min(end_ms, horizon_ms) if end_ms is not None else horizon_ms
    sessions: set[int] = set()
    hit: list[int] = []
    for pos, turn in enumerate(turns):
        if turn.at_ms < onset_ms or turn.intent not in intents:
            continue
        if end_ms is not None and turn.at_ms >= end_ms:
            break  # the burst is over
        if turn.session not in sessions and len(sessions) == spec.sessions:
            fixed_ms = turn.at_ms  # the next session would be one too many: v4 is live now
            break
        if spec.peak_share < 1 or spec.ramp_hours > 0:
            ramp = min(1.0, (turn.at_ms - onset_ms) / 3_600_000 / spec.ramp_hours) if spec.ramp_hours else 1.0
            if rng.random() >= spec.peak_share * ramp:
                continue  # not (yet) failing: the share ramps up
        sessions.add(turn.session)
        hit.append(pos)
    if end_ms is not None and not sessions:
        raise ValueError(f"no session asks about {intents} during the spike; move onset_day "
                         "or lengthen duration_minutes")
    if end_ms is None and len(sessions) < spec.sessions:
        raise ValueError(
            f"only {len(sessions)} sessions ask about {intents} after onset; "
            f"lower incident.sessions or raise days/per_day"
        )
    if spec.kind != "stale_document":
        return _Window(onset_ms, fixed_ms, frozenset(hit), frozenset())
    n_stale = round(spec.stale_share * len(hit))
    stale = rng.choice(len(hit), size=n_stale, replace=False) if n_stale else []
    return _Window(onset_ms, fixed_ms, frozenset(hit), frozenset(hit[int(i)] for i in stale))


def _context(passage: Passage, score: float, updated_at: datetime,
             indexed_at: datetime) -> dict[str, Any]:
    return {
        "doc_id": passage.doc_id,
        "doc_version": passage.version,
        "doc_updated_at": _iso(updated_at),
        "indexed_at": _iso(indexed_at),
        "score": round(float(score), 4),
        "text": passage.text,
    }


@dataclass
class _Pattern:
    """One injected pattern while the stream is built: its spec, window, generator and findings."""

    spec: IncidentSpec
    intents: tuple[str, ...]
    window: _Window
    rng: np.random.Generator
    onset_at: datetime
    fixed_at: datetime
    stale_pricing: bool
    # Generated documents that go stale: each hit intent's own ``kb-`` id -> the intent.
    stale_docs: dict[str, str]
    interactions: set[str] = field(default_factory=set)
    stale: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)
    customers: set[str] = field(default_factory=set)

    @property
    def stale_kind(self) -> bool:
        return self.spec.kind == "stale_document"


def generate(queries_by_intent: Mapping[str, Sequence[str]], config: ScenarioConfig) -> Scenario:
    """Build the stream and its ground truth (see the module docstring for an example)."""
    _check(queries_by_intent, config)
    root = np.random.SeedSequence(config.seed)
    specs = config.specs()
    base_seq, incident_seq, producer_seq, score_seq, *extra_seqs = root.spawn(4 + len(config.incidents))
    # Separate streams: the incident and the producer score never shift the base stream, so a
    # clean run and an incident run differ only where the incident acts. Each further pattern
    # has a generator of its own (the first pattern's draws are those of a one-pattern stream).
    rng = np.random.default_rng(base_seq)
    irng = np.random.default_rng(incident_seq)
    prng = np.random.default_rng(producer_seq)

    start = config.start.astimezone(UTC)
    profiles = _profiles(queries_by_intent, config, rng)
    intents = list(profiles)
    score_profiles = _score_profiles(intents, np.random.default_rng(score_seq))
    weights = np.array([p.weight for p in profiles.values()])
    turns, n_sessions = _turns(config, intents, weights, rng)

    session_ids = [_uid(rng, "ses_") for _ in range(n_sessions)]
    n_customers = max(1, n_sessions // 3)  # about three sessions each, spread over the days
    customer_ids = [_uid(rng, "cus_", 5) for _ in range(n_customers)]
    # Mildly skewed: a few regulars come back often, most customers a handful of times.
    customer_weights = np.arange(1, n_customers + 1) ** -0.3
    customer_weights /= customer_weights.sum()
    session_customer = rng.choice(n_customers, size=n_sessions, p=customer_weights)

    patterns: list[_Pattern] = []
    taken: set[str] = set()
    for k, spec in enumerate(specs):
        hit_intents = _incident_intents(spec, profiles, frozenset(taken))
        missing = [i for i in hit_intents if i not in profiles]
        if missing:
            raise ValueError(f"incident intents {missing} are not in the stream")
        if taken & set(hit_intents):
            raise ValueError(f"incident intents {sorted(taken & set(hit_intents))} are hit by two patterns")
        taken |= set(hit_intents)
        prng_k = irng if k == 0 else np.random.default_rng(extra_seqs[k - 1])
        window = _window(turns, spec, hit_intents, config, prng_k)
        stale_kind = spec.kind == "stale_document"
        stale_pricing = stale_kind and kb.passage_for(hit_intents[0]).doc_id == kb.PRICING_DOC
        if stale_pricing and k:
            raise ValueError("only the first injected pattern can serve the pricing table stale")
        if spec.document is not None and not all(kb.is_generic(i) for i in hit_intents):
            raise ValueError("a shared incident document needs intents with generated passages")
        patterns.append(_Pattern(
            spec, hit_intents, window, prng_k,
            onset_at=start + timedelta(milliseconds=window.onset_ms),
            fixed_at=start + timedelta(milliseconds=window.fixed_ms),
            stale_pricing=stale_pricing,
            # A generated document of its own per intent goes stale (the pricing table has its path).
            stale_docs=({kb.generic_doc(i): i for i in hit_intents}
                        if stale_kind and not stale_pricing else {}),
        ))
    pattern_at = {pos: p for p in patterns for pos in p.window.hit}
    pricing = next((p for p in patterns if p.stale_pricing), None)
    # The pattern each generated document belongs to (its intents are the only readers).
    stale_owner = {doc: p for p in patterns for doc in p.stale_docs}
    # A shared document: its intents' passages are sections of that one document, from the start.
    shared_of = {kb.generic_doc(i): p.spec.document for p in patterns if p.spec.document
                 for i in p.intents}

    def doc_times(doc_id: str) -> tuple[datetime, datetime]:
        doc = kb.document(doc_id)
        updated = start - timedelta(days=doc.updated_days_before_start)
        return updated, updated + timedelta(hours=doc.index_lag_hours)

    def redoc(passage: Passage, revision: int = 0) -> Passage:
        shared = shared_of.get(passage.doc_id)
        if shared is None:
            return passage
        doc = kb.document(shared)
        return Passage(shared, f"v{int(doc.version[1:]) + revision}", passage.text)

    def served(passage: Passage, at_ms: int) -> tuple[Passage, tuple[datetime, datetime]]:
        """A generated passage as the index serves it at ``at_ms`` (stale docs change)."""
        owner = stale_owner.get(passage.doc_id)
        times = doc_times(shared_of.get(passage.doc_id, passage.doc_id))
        if owner is None or at_ms < owner.window.onset_ms:
            return redoc(passage), times
        if at_ms >= owner.window.fixed_ms:
            return (redoc(kb.generic_passage(owner.stale_docs[passage.doc_id], revision=1), 1),
                    (owner.onset_at, owner.fixed_at))
        return redoc(passage), (owner.onset_at, times[1])

    records: list[dict[str, Any]] = []
    noise_ids: set[str] = set()
    among = tuple(intents)
    for pos, turn in enumerate(turns):
        at = start + timedelta(milliseconds=turn.at_ms)
        profile = profiles[turn.intent]
        interaction_id = _uid(rng, "int_")
        session_id = session_ids[turn.session]
        customer_id = customer_ids[int(session_customer[turn.session])]
        options = queries_by_intent[turn.intent]
        query = options[int(rng.integers(len(options)))]
        template = int(rng.integers(len(_TEMPLATES)))
        known = _GENERIC_VALUES if kb.is_generic(turn.intent) else _KNOWN_VALUES

        # Which pricing table the retriever serves at this moment, and how it is dated: v3 is
        # current until onset; from onset the source is v4 but the index still holds v3 (stale);
        # from the fix the index serves v4.
        pricing_version = "v3"
        pricing_dates = doc_times(kb.PRICING_DOC)
        if pricing is not None and turn.at_ms >= pricing.window.fixed_ms:
            pricing_version, pricing_dates = "v4", (pricing.onset_at, pricing.fixed_at)
        elif pricing is not None and turn.at_ms >= pricing.window.onset_ms:
            pricing_dates = (pricing.onset_at, pricing_dates[1])

        best, best_dates = served(kb.passage_for(turn.intent, pricing_version), turn.at_ms)
        neighbours = kb.neighbours_of(turn.intent, pricing_version, among)
        if stale_owner:
            # Only a pattern's own intents retrieve its stale document.
            neighbours = tuple(p for p in neighbours if p.doc_id not in stale_owner
                               or turn.intent in stale_owner[p.doc_id].intents)
        n_extra = min(len(neighbours), int(rng.choice(3, p=_EXTRA_CONTEXT_PROBS)))
        extra = [neighbours[int(i)] for i in rng.choice(len(neighbours), n_extra, replace=False)]
        top = float(rng.uniform(0.74, 0.93))
        scores = [top, *sorted((top - float(rng.uniform(0.08, 0.3)) for _ in extra),
                               reverse=True)]
        contexts = [_context(best, scores[0], *(pricing_dates if best.doc_id == kb.PRICING_DOC
                                                else best_dates))]
        for p, sc in zip(extra, scores[1:], strict=True):
            if p.doc_id == kb.PRICING_DOC:
                contexts.append(_context(p, sc, *pricing_dates))
            else:
                shown, dates = served(p, turn.at_ms)
                # The neighbour's text as it always was (only its dating and id follow the index).
                contexts.append(_context(redoc(p, int(shown.version[1:]) - int(redoc(p).version[1:]))
                                         if shared_of else p, sc, *dates))
        confidence = rng.normal(profile.mean_confidence(turn.at_ms / 86_400_000), _CONFIDENCE_SD)
        noisy = bool(rng.random() < config.noise_rate)
        # Its own generator: how many draws a made-up figure takes depends on the passage
        # version, and must not shift the rest of the stream.
        figure_seed = int(rng.integers(2**63))
        if noisy:
            response = _answer(_hallucinate(best.text, np.random.default_rng(figure_seed), known),
                               template)
        else:
            response = _answer(best.text, template)
        metadata = None
        if rng.random() < 0.4:
            metadata = {"channel": _CHANNELS[int(rng.integers(len(_CHANNELS)))],
                        "locale": "en-GB"}

        wrong = noisy
        pattern = pattern_at.get(pos)
        if pattern is not None:
            prn = pattern.rng
            noisy, wrong = False, True
            pattern.interactions.add(interaction_id)
            pattern.sessions.add(session_id)
            pattern.customers.add(customer_id)
            confidence = prn.normal(pattern.spec.confidence, _INCIDENT_CONFIDENCE_SD)
            if not pattern.stale_kind:
                # The model states a figure its (right) passage does not: a made-up price or rate.
                response = _answer(_hallucinate(best.text, prn, known), template)
            elif pos in pattern.window.stale:
                # The answer quotes the stale passage faithfully, so its figures are out of date.
                pattern.stale.add(interaction_id)
                response = _answer(best.text, template)
            elif pattern.stale_pricing:
                # Retrieval missed the table; the model made up a price near the real one.
                faq = Passage(kb.FEES_FAQ_DOC, kb.DOCUMENTS[kb.FEES_FAQ_DOC].version, kb.FEES_FAQ)
                contexts = [_context(faq, top, *doc_times(kb.FEES_FAQ_DOC))]
                true_text = kb.passage_for(turn.intent, "v4").text
                response = _answer(_hallucinate(true_text, prn), template)
            else:
                fallback = kb.fallback_passage()
                contexts = [_context(fallback, top, *doc_times(fallback.doc_id))]
                true_text = kb.generic_passage(turn.intent, revision=1).text
                response = _answer(_hallucinate(true_text, prn, _GENERIC_VALUES), template)
        if noisy:
            noise_ids.add(interaction_id)

        record: dict[str, Any] = {
            "interaction_id": interaction_id,
            "session_id": session_id,
            "customer_id": customer_id,
            "timestamp": _iso(at),
            "query": query,
            "response": response,
            "contexts": contexts,
            "confidence": round(float(np.clip(confidence, 0.01, 0.999)), 4),
            "model": MODEL,
        }
        if config.producer_faithfulness:
            right = score_profiles[turn.intent]
            score = (prng.normal(0.3, 0.12) if wrong
                     else prng.normal(right.at(turn.at_ms / 86_400_000), right.sd))
            record["faithfulness"] = round(float(np.clip(score, 0.0, 1.0)), 4)
        if metadata is not None:
            record["metadata"] = metadata
        records.append(record)

    horizon_ms = int(config.days * 86_400_000)
    truths = tuple(PatternTruth(
        kind=p.spec.kind, intents=p.intents, onset_at=p.onset_at,
        fixed_at=p.fixed_at if p.window.fixed_ms < horizon_ms else None,
        stale_doc=_stale_doc(p, redoc),
        interaction_ids=frozenset(p.interactions), session_ids=frozenset(p.sessions),
        customer_ids=frozenset(p.customers), stale_interaction_ids=frozenset(p.stale),
    ) for p in patterns)
    first = truths[0] if truths else None
    truth = GroundTruth(
        incident_interaction_ids=frozenset().union(*(t.interaction_ids for t in truths)),
        incident_session_ids=frozenset().union(*(t.session_ids for t in truths)),
        incident_customer_ids=frozenset().union(*(t.customer_ids for t in truths)),
        incident_intents=tuple(i for t in truths for i in t.intents),
        onset_at=first.onset_at if first else None,
        stale_doc=first.stale_doc if first else None,
        stale_interaction_ids=frozenset().union(*(t.stale_interaction_ids for t in truths)),
        fixed_at=first.fixed_at if first else None,
        noise_interaction_ids=frozenset(noise_ids),
        kind=first.kind if first else None,
        patterns=truths,
    )
    return Scenario(records=records, truth=truth)


def _stale_doc(pattern: _Pattern, redoc: Callable[[Passage], Passage]) -> tuple[str, str] | None:
    if pattern.stale_pricing:
        return (kb.PRICING_DOC, "v3")
    if pattern.stale_docs:
        first = redoc(kb.passage_for(pattern.intents[0]))
        return (first.doc_id, first.version)
    return None
