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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from pipelines import knowledge_base as kb
from pipelines.knowledge_base import PRICING_INTENTS, Passage

__all__ = [
    "PRICING_INTENTS",
    "GroundTruth",
    "IncidentSpec",
    "Scenario",
    "ScenarioConfig",
    "generate",
    "to_jsonl_lines",
]

MODEL = "orbit-assist-2.3"
INCIDENT_KINDS = ("stale_document",)

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


@dataclass(frozen=True)
class IncidentSpec:
    """What goes wrong: a stale ``pricing-table`` served after its source moved to v4."""

    kind: str = "stale_document"
    # One intent, so the incident lives in one cluster (several pricing intents reading the same
    # stale table would be one incident per cluster they form).
    intents: tuple[str, ...] = ("exchange_rate",)
    onset_day: float = 2.3  # days after the stream starts
    sessions: int = 23  # distinct sessions hit before the index is fixed
    confidence: float = 0.84  # mean confidence of the wrong answers
    stale_share: float = 0.85  # the rest are wrong another way (a made-up figure)


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


@dataclass(frozen=True)
class GroundTruth:
    incident_interaction_ids: frozenset[str]
    incident_session_ids: frozenset[str]
    incident_customer_ids: frozenset[str]
    incident_intents: tuple[str, ...]
    onset_at: datetime | None
    stale_doc: tuple[str, str] | None  # ("pricing-table", "v3")
    stale_interaction_ids: frozenset[str] = frozenset()  # incident answers citing the stale doc
    fixed_at: datetime | None = None  # when v4 was re-indexed (None: not within the stream)
    noise_interaction_ids: frozenset[str] = frozenset()  # background wrong answers


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


def _hallucinate(text: str, rng: np.random.Generator) -> str:
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
        if new_value > 0 and new_value != value and new_value not in _KNOWN_VALUES:
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


def _check(queries: Mapping[str, Sequence[str]], config: ScenarioConfig) -> None:
    if config.start.tzinfo is None:
        raise ValueError("ScenarioConfig.start must carry a timezone (naive datetimes are banned)")
    if config.days <= 0 or config.per_day < 1 or config.intents < 1:
        raise ValueError("days, per_day and intents must be positive")
    if not 0 <= config.noise_rate <= 1:
        raise ValueError("noise_rate must be within [0, 1]")
    if not any(queries.values()):
        raise ValueError("no queries given")
    spec = config.incident
    if spec is None:
        return
    if spec.kind not in INCIDENT_KINDS:
        raise ValueError(f"unknown incident kind {spec.kind!r}; known: {', '.join(INCIDENT_KINDS)}")
    not_priced = [i for i in spec.intents if i not in kb.PRICING_TABLE]
    if not_priced:
        raise ValueError(f"stale_document intents must read the pricing table: {not_priced}")
    missing = [i for i in spec.intents if not queries.get(i)]
    if missing:
        raise ValueError(f"no queries for incident intents {missing}")
    if not 0 <= spec.onset_day < config.days:
        raise ValueError("incident onset_day must fall inside the stream")
    if spec.sessions < 1 or not 0 <= spec.stale_share <= 1:
        raise ValueError("incident sessions must be >= 1 and stale_share within [0, 1]")


def _profiles(queries: Mapping[str, Sequence[str]], config: ScenarioConfig,
              rng: np.random.Generator) -> dict[str, _IntentProfile]:
    available = sorted(i for i, q in queries.items() if q)
    must = (config.incident or IncidentSpec()).intents
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


def _window(turns: list[_Turn], spec: IncidentSpec, config: ScenarioConfig,
            rng: np.random.Generator) -> _Window:
    onset_ms = round(spec.onset_day * 86_400_000)
    fixed_ms = int(config.days * 86_400_000)
    sessions: set[int] = set()
    hit: list[int] = []
    for pos, turn in enumerate(turns):
        if turn.at_ms < onset_ms or turn.intent not in spec.intents:
            continue
        if turn.session not in sessions and len(sessions) == spec.sessions:
            fixed_ms = turn.at_ms  # the next session would be one too many: v4 is live now
            break
        sessions.add(turn.session)
        hit.append(pos)
    if len(sessions) < spec.sessions:
        raise ValueError(
            f"only {len(sessions)} sessions ask about {spec.intents} after onset; "
            f"lower incident.sessions or raise days/per_day"
        )
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


def generate(queries_by_intent: Mapping[str, Sequence[str]], config: ScenarioConfig) -> Scenario:
    """Build the stream and its ground truth (see the module docstring for an example)."""
    _check(queries_by_intent, config)
    base_seq, incident_seq, producer_seq = np.random.SeedSequence(config.seed).spawn(3)
    # Separate streams: the incident and the producer score never shift the base stream, so a
    # clean run and an incident run differ only where the incident acts.
    rng = np.random.default_rng(base_seq)
    irng = np.random.default_rng(incident_seq)
    prng = np.random.default_rng(producer_seq)

    start = config.start.astimezone(UTC)
    profiles = _profiles(queries_by_intent, config, rng)
    intents = list(profiles)
    weights = np.array([p.weight for p in profiles.values()])
    turns, n_sessions = _turns(config, intents, weights, rng)

    session_ids = [_uid(rng, "ses_") for _ in range(n_sessions)]
    n_customers = max(1, n_sessions // 3)  # about three sessions each, spread over the days
    customer_ids = [_uid(rng, "cus_", 5) for _ in range(n_customers)]
    # Mildly skewed: a few regulars come back often, most customers a handful of times.
    customer_weights = np.arange(1, n_customers + 1) ** -0.3
    customer_weights /= customer_weights.sum()
    session_customer = rng.choice(n_customers, size=n_sessions, p=customer_weights)

    spec = config.incident
    window = _window(turns, spec, config, irng) if spec else None
    onset_at = start + timedelta(milliseconds=window.onset_ms) if window else None
    fixed_at = start + timedelta(milliseconds=window.fixed_ms) if window else None

    def doc_times(doc_id: str) -> tuple[datetime, datetime]:
        doc = kb.DOCUMENTS[doc_id]
        updated = start - timedelta(days=doc.updated_days_before_start)
        return updated, updated + timedelta(hours=doc.index_lag_hours)

    records: list[dict[str, Any]] = []
    incident_ids: set[str] = set()
    stale_ids: set[str] = set()
    noise_ids: set[str] = set()
    hit_sessions: set[str] = set()
    hit_customers: set[str] = set()
    for pos, turn in enumerate(turns):
        at = start + timedelta(milliseconds=turn.at_ms)
        profile = profiles[turn.intent]
        interaction_id = _uid(rng, "int_")
        session_id = session_ids[turn.session]
        customer_id = customer_ids[int(session_customer[turn.session])]
        options = queries_by_intent[turn.intent]
        query = options[int(rng.integers(len(options)))]
        template = int(rng.integers(len(_TEMPLATES)))

        # Which pricing table the retriever serves at this moment, and how it is dated: v3 is
        # current until onset; from onset the source is v4 but the index still holds v3 (stale);
        # from the fix the index serves v4.
        pricing_version = "v3"
        pricing_dates = doc_times(kb.PRICING_DOC)
        if window is not None and turn.at_ms >= window.fixed_ms:
            pricing_version, pricing_dates = "v4", (onset_at, fixed_at)
        elif window is not None and turn.at_ms >= window.onset_ms:
            pricing_dates = (onset_at, pricing_dates[1])

        best = kb.passage_for(turn.intent, pricing_version)
        neighbours = kb.neighbours_of(turn.intent, pricing_version)
        n_extra = min(len(neighbours), int(rng.choice(3, p=_EXTRA_CONTEXT_PROBS)))
        extra = [neighbours[int(i)] for i in rng.choice(len(neighbours), n_extra, replace=False)]
        top = float(rng.uniform(0.74, 0.93))
        scores = [top, *sorted((top - float(rng.uniform(0.08, 0.3)) for _ in extra),
                               reverse=True)]
        contexts = [
            _context(p, s, *(pricing_dates if p.doc_id == kb.PRICING_DOC else doc_times(p.doc_id)))
            for p, s in zip([best, *extra], scores, strict=True)
        ]
        confidence = rng.normal(profile.mean_confidence(turn.at_ms / 86_400_000), _CONFIDENCE_SD)
        noisy = bool(rng.random() < config.noise_rate)
        # Its own generator: how many draws a made-up figure takes depends on the passage
        # version, and must not shift the rest of the stream.
        figure_seed = int(rng.integers(2**63))
        if noisy:
            response = _answer(_hallucinate(best.text, np.random.default_rng(figure_seed)),
                               template)
        else:
            response = _answer(best.text, template)
        metadata = None
        if rng.random() < 0.4:
            metadata = {"channel": _CHANNELS[int(rng.integers(len(_CHANNELS)))],
                        "locale": "en-GB"}

        wrong = noisy
        if window is not None and pos in window.hit:
            noisy, wrong = False, True
            incident_ids.add(interaction_id)
            hit_sessions.add(session_id)
            hit_customers.add(customer_id)
            confidence = irng.normal(spec.confidence, _INCIDENT_CONFIDENCE_SD)
            if pos in window.stale:
                # The answer quotes the stale v3 passage faithfully, so its prices are wrong.
                stale_ids.add(interaction_id)
                response = _answer(best.text, template)
            else:
                # Retrieval missed the table; the model made up a price near the real one.
                faq = Passage(kb.FEES_FAQ_DOC, kb.DOCUMENTS[kb.FEES_FAQ_DOC].version, kb.FEES_FAQ)
                contexts = [_context(faq, top, *doc_times(kb.FEES_FAQ_DOC))]
                true_text = kb.passage_for(turn.intent, "v4").text
                response = _answer(_hallucinate(true_text, irng), template)
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
            score = prng.normal(0.3, 0.12) if wrong else prng.normal(0.92, 0.05)
            record["faithfulness"] = round(float(np.clip(score, 0.0, 1.0)), 4)
        if metadata is not None:
            record["metadata"] = metadata
        records.append(record)

    truth = GroundTruth(
        incident_interaction_ids=frozenset(incident_ids),
        incident_session_ids=frozenset(hit_sessions),
        incident_customer_ids=frozenset(hit_customers),
        incident_intents=tuple(spec.intents) if spec else (),
        onset_at=onset_at,
        stale_doc=(kb.PRICING_DOC, "v3") if spec else None,
        stale_interaction_ids=frozenset(stale_ids),
        fixed_at=fixed_at if window and window.fixed_ms < int(config.days * 86_400_000) else None,
        noise_interaction_ids=frozenset(noise_ids),
    )
    return Scenario(records=records, truth=truth)
