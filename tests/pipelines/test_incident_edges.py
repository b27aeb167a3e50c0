"""The edges of an incident's session list (its blast radius): where it starts.

- A pattern that ramps up fails rarely at first, so its first failing answers lie before the
  change point the CUSUM estimates; the session list reaches back over them (an earlier change
  point for a smaller shift, over the answers the baseline still holds back).
- One isolated failing answer before the change point is the baseline's noise: left out.
- A slow pattern in a quiet cluster spreads its failures over many holdback windows: while the
  cluster's test is in an excursion its baseline holds its answers back (up to a day), so they
  are not learned as normal, and the incident has them all.
- Two failures close together in answers but hours apart (a quiet cluster's night) before an
  abrupt pattern are not its start: only the holdback window before it counts as its ramp.
- A failing answer the baseline committed as normal long before the onset is never the
  incident's, even when the evidence that joins carries it (a slow cluster's excursion can
  start with a noise hit a day earlier).
- When a cluster's test opens it, the failing readers of its cause document in other clusters
  that the document's own test counted (with at least ln 100 of evidence) are its sessions too.

Where it ends:

- After the fix, while the incident waits for the evidence that its clusters are back, their
  isolated failing answers are the baseline's noise: they do not join (nobody to contact).
- Failures that keep coming at the pattern's rate, or in a row in one member, or that retrieved
  the incident's cause document stale, do; so do failures at a lower rate (a partial fix) once
  they are the evidence that would open an incident. The rate they are weighed against is the one
  the incident showed when failures last joined it: the passing answers after a fix do not lower
  it (a small pattern's incident stays open for a day after its fix, and its noise used to join).
  A fresh copy of the cause document is no such evidence: a made-up figure stated over the
  intent's own (right) passage makes that passage the cause, and every answer of the intent
  retrieves it, the noise after the fix too.

An incident a document's test opened is its readers': the answers that retrieved the document
first, as that test counted them, decide its recovery (a neighbouring intent that reads it second
passing all night is no sign the pattern is over). A join resets every document test that counted
the failures it took, so none alarms on them again once the incident resolves. The same cause
failing again the next day (``rejoin_hours``) re-opens its incident: no second one.

When it is reported: once an open incident settles (no newer failing answer for
``update_settle_minutes``), the sessions it took since its last event are in an update, even
when no member answer came to check the growth factor.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.config import BaselineConfig, DetectConfig
from pipelines.detector import PatternDetector
from pipelines.interaction import Context, Interaction
from pipelines.policy import Category

T0 = datetime(2026, 11, 2, tzinfo=UTC)
CAT = Category(name="pricing", tolerance=0.08, gate=0.8, severity="warning", outreach=True)
DOC = Context(doc_id="pricing-table", doc_version="v3", text="Transfers cost £1.50.",
              indexed_at=T0 - timedelta(days=20), doc_updated_at=T0 - timedelta(days=30))
STALE = DOC.model_copy(update={"doc_updated_at": T0 + timedelta(days=3)})
NODOC = Context(text="Transfers are free.")
OTHER = Context(doc_id="faq", doc_version="v1", text="We answer in 2 days.",
                indexed_at=T0 - timedelta(days=20), doc_updated_at=T0 - timedelta(days=30))


class Feed:
    """Answers one a minute, each its own session; ``fail`` marks the below-baseline ones."""

    def __init__(self, config: DetectConfig | None = None, baseline: BaselineConfig | None = None) -> None:
        self.d = PatternDetector(baseline or BaselineConfig(), config or DetectConfig())
        self.t = T0
        self.k = 0
        self.events: list = []

    def answer(self, cid: str, fail: bool, ctx: Context | tuple[Context, ...] = OTHER, minutes: float = 1.0,
               session: str | None = None) -> str:
        self.t += timedelta(minutes=minutes)
        self.k += 1
        sid = session or f"s{self.k}"
        i = Interaction(interaction_id=f"i{self.k}", session_id=sid, timestamp=self.t, query="q",
                        response="a", confidence=0.9, contexts=ctx if isinstance(ctx, tuple) else (ctx,))
        f = 0.2 if fail else 0.8 + (self.k % 10) * 0.01
        self.events += self.d.observe(i, cluster_id=cid, label=cid, category=CAT, faithfulness=f).events
        return sid

    def warm(self, cid: str, n: int = 600) -> None:
        """A baseline with 2 % noise (every 50th answer fails)."""
        for k in range(n):
            self.answer(cid, k % 50 == 25)

    def last(self, incident_id: str | None = None):
        evs = [e for e in self.events if incident_id in (None, e.incident_id)]
        return evs[-1]


def test_a_ramp_s_first_failures_before_the_change_point_are_in_the_session_list():
    feed = Feed()
    feed.warm("c1")
    # The ramp: one failure in 9 answers (below the rate the test is tuned to: its statistic
    # falls back to zero between them), then three in four.
    early = [feed.answer("c1", k % 9 == 4) for k in range(36)]
    early = [sid for k, sid in enumerate(early) if k % 9 == 4]
    for k in range(20):
        feed.answer("c1", k % 4 != 3)
    opened = next(e for e in feed.events if e.event == "opened")
    first = T0 + timedelta(minutes=int(early[0][1:]))
    assert first < opened.onset_at, "the change point should lie after the ramp's first failures"
    assert set(early) <= set(opened.session_ids)


def test_an_isolated_failure_before_an_abrupt_pattern_is_noise_and_left_out():
    feed = Feed()
    feed.warm("c1")
    for _ in range(3):
        feed.answer("c1", False)
    noise = feed.answer("c1", True)  # one failure, then passing answers, then the pattern
    for _ in range(12):
        feed.answer("c1", False)
    pattern = [feed.answer("c1", True, STALE) for _ in range(8)]
    for _ in range(10):
        feed.answer("c1", False)
    sessions = set(feed.last().session_ids)
    assert set(pattern) <= sessions
    assert noise not in sessions


def _failures_then_a_spike(feed: Feed, failures: int) -> tuple[list[str], list[str]]:
    """``failures`` failing answers in a row, three passing ones, then a spike that fails every
    answer, until the incident resolves: (the first failures' sessions, the spike's)."""
    feed.warm("c1")
    before = [feed.answer("c1", True) for _ in range(failures)]
    for _ in range(3):
        feed.answer("c1", False)
    pattern = [feed.answer("c1", True, STALE) for _ in range(8)]
    while not any(e.event == "resolved" for e in feed.events):
        feed.answer("c1", False)
    return before, pattern


def test_a_noise_failure_minutes_before_a_spike_is_not_its_start():
    feed = Feed()
    # Three passing answers weigh little against one failure for the rate the test is tuned to
    # (0.4): its excursion starts at the noise. The pattern then fails every answer, and at that
    # rate the three passing answers say it started after them.
    (noise,), pattern = _failures_then_a_spike(feed, 1)
    opened = next(e for e in feed.events if e.event == "opened")
    assert opened.onset_at == T0 + timedelta(minutes=int(pattern[0][1:]))
    assert noise not in opened.session_ids
    assert set(pattern) == set(feed.last().session_ids)


def test_two_failures_close_together_before_a_spike_stay_in_it():
    feed = Feed()
    # Two failures in a row may be a ramp's first (the early edge takes such pairs too): the
    # spike's rate does not move its start past them.
    first, pattern = _failures_then_a_spike(feed, 2)
    opened = next(e for e in feed.events if e.event == "opened")
    assert opened.onset_at == T0 + timedelta(minutes=int(first[0][1:]))
    assert set(first + pattern) == set(feed.last().session_ids)


def _slow_pattern(feed: Feed, answers: int) -> list[str]:
    """A quiet cluster (60 answers of history), then one answer every 40 minutes, one in four
    failing (a rare intent's made-up figure): its failing sessions."""
    feed.warm("c1", 60)
    failing = []
    for k in range(answers):
        sid = feed.answer("c1", k % 4 == 0, minutes=40)
        if k % 4 == 0:
            failing.append(sid)
    return failing


def test_a_slow_pattern_in_a_quiet_cluster_is_not_learned_as_normal_before_its_test_decides():
    feed = Feed()
    failing = _slow_pattern(feed, 40)
    opened = next(e for e in feed.events if e.event == "opened")
    # Its first failure came many hours (and many holdback windows) before the test decided; all
    # of it is the incident's: the baseline held the answers back while the test was in its
    # excursion.
    assert opened.onset_at == T0 + timedelta(minutes=60 + 40)
    assert opened.detected_at - opened.onset_at > timedelta(hours=12)
    assert set(failing[:8]) <= set(opened.session_ids)
    # With the usual holdback only (3 h), the baseline learned those failures as its noise (its
    # rate and band moved), and 100 hours of the same answers opened nothing.
    feed = Feed(baseline=BaselineConfig(suspect_holdback=0, suspect_holdback_hours=0))
    _slow_pattern(feed, 150)
    assert not [e for e in feed.events if e.event == "opened"]


def test_two_noise_failures_in_a_quiet_cluster_s_night_are_not_a_spike_s_start():
    feed = Feed()
    feed.warm("c1", 60)
    # A quiet cluster: a noise failure, six passing answers over three hours, another; its test
    # stays in one excursion all night (few answers to bring it down) and holds them back. Then
    # a spike, nine hours later. The two failures are close together in answers, not in time.
    noise = [feed.answer("c1", True, minutes=30)]
    for _ in range(6):
        feed.answer("c1", False, minutes=30)
    noise.append(feed.answer("c1", True, minutes=30))
    for _ in range(3):
        feed.answer("c1", False, minutes=180)
    pattern = [feed.answer("c1", True, STALE) for _ in range(8)]
    opened = next(e for e in feed.events if e.event == "opened")
    assert opened.onset_at == T0 + timedelta(minutes=60 + 30 + 6 * 30 + 30 + 3 * 180 + 1)
    assert set(opened.session_ids) <= set(pattern)
    assert not set(noise) & {s for e in feed.events for s in e.session_ids}


def test_a_failure_committed_long_before_the_onset_does_not_join_with_a_slow_cluster():
    feed = Feed()
    feed.warm("c1")
    feed.warm("c2", 300)
    # c2 is slow: a noise failure citing the pricing table (not yet stale), then an answer every
    # few hours; its test still remembers that failure when the stale table reaches it.
    old = feed.answer("c2", True, DOC)
    for _ in range(2):
        feed.answer("c2", False, minutes=180)
    pattern = [feed.answer("c1", True, STALE) for _ in range(8)]
    late = feed.answer("c2", True, STALE)
    ev = feed.last()
    assert ev.event == "updated" and "c2" in ev.clusters
    assert late in ev.session_ids and set(pattern) <= set(ev.session_ids)
    assert old not in ev.session_ids


def _pattern_then_fix(feed: Feed) -> list[str]:
    feed.warm("c1")
    return [feed.answer("c1", True, STALE) for _ in range(8)]


def test_isolated_failures_after_the_fix_are_not_the_incident_s_sessions():
    feed = Feed()
    pattern = _pattern_then_fix(feed)
    noise, k = [], 0
    while not any(e.event == "resolved" for e in feed.events):  # fixed: 1 failure in 8 answers
        k += 1
        sid = feed.answer("c1", k % 8 == 0)
        noise += [sid] if k % 8 == 0 else []
        assert k < 2_000, "never resolved"
    resolved = next(e for e in feed.events if e.event == "resolved")
    assert noise, "the test needs noise between the fix and the resolution"
    assert set(pattern) <= set(resolved.session_ids)
    assert not set(noise) & set(resolved.session_ids)
    assert resolved.below_baseline_count == len(pattern)


def test_a_noise_failure_soon_after_a_spike_s_fix_does_not_join():
    feed = Feed()
    pattern = _pattern_then_fix(feed)  # every answer failed: far above the tested rate p1
    for _ in range(3):  # fixed: three passing answers are strong evidence against that rate
        feed.answer("c1", False)
    noise = feed.answer("c1", True)
    while not any(e.event == "resolved" for e in feed.events):
        feed.answer("c1", False)
    resolved = next(e for e in feed.events if e.event == "resolved")
    assert set(pattern) == set(resolved.session_ids)
    assert noise not in resolved.session_ids


def test_noise_after_the_fix_citing_the_cause_document_fresh_does_not_join():
    feed = Feed()
    feed.warm("c1")
    # A made-up figure over the right passage: the cause is the (fresh) document every answer of
    # the intent retrieves, before the fix and after it.
    pattern = [feed.answer("c1", True, DOC) for _ in range(8)]
    noise, k = [], 0
    while not any(e.event == "resolved" for e in feed.events):  # fixed: 1 failure in 8 answers
        k += 1
        sid = feed.answer("c1", k % 8 == 0, DOC)
        noise += [sid] if k % 8 == 0 else []
        assert k < 2_000, "never resolved"
    resolved = next(e for e in feed.events if e.event == "resolved")
    assert resolved.cause is not None and resolved.cause.doc_id == DOC.doc_id
    assert noise, "the test needs noise between the fix and the resolution"
    assert set(pattern) <= set(resolved.session_ids)
    assert not set(noise) & set(resolved.session_ids)


def test_a_small_pattern_s_noise_after_the_fix_does_not_join_through_the_passes_since():
    feed = Feed()
    feed.warm("c1")
    # A rare intent's made-up figure over its own (right) passage: every answer failed, an hour
    # apart. After the fix its answers come hours apart, and its noise is what the incident
    # still sees: one failure after four passing answers, another after one more pass.
    pattern = [feed.answer("c1", True, DOC, minutes=60) for _ in range(8)]
    (inc,) = feed.d.incidents.values()
    for _ in range(4):
        feed.answer("c1", False, DOC, minutes=180)
    noise = [feed.answer("c1", True, DOC, minutes=60)]
    feed.answer("c1", False, DOC, minutes=60)
    noise.append(feed.answer("c1", True, DOC, minutes=2))
    # Weighed against the rate it had shown when its failures last joined (every answer), not one
    # the passes since the fix lowered (about 0.7), the lull is evidence the pattern has ended.
    assert inc.shown_rate >= 0.95 and inc.observed_rate < 0.75
    assert inc.back > 0 and inc.cited > 0 and len(inc.pending) == 2
    while not any(e.event == "resolved" for e in feed.events):
        feed.answer("c1", False, DOC, minutes=60)
    resolved = next(e for e in feed.events if e.event == "resolved")
    assert set(pattern) == set(resolved.session_ids)
    assert not set(noise) & set(resolved.session_ids)


def test_the_pattern_s_last_failures_in_a_cluster_shared_with_other_intents_still_join():
    feed = Feed()
    feed.warm("c1")
    # The pattern's intent reads DOC; the cluster's other intents (OTHER) keep passing between its
    # failures, so over the whole cluster the recovery test leans "back" while it still fails.
    pattern = [feed.answer("c1", True, DOC) for _ in range(8)]
    for _ in range(6):
        sparse = []
        for _ in range(7):
            feed.answer("c1", False)
        sparse.append(feed.answer("c1", True, DOC))
        pattern += sparse
    (inc,) = feed.d.incidents.values()
    assert inc.recovery is not None and inc.recovery.statistic > 0, "the cluster should lean back"
    noise, k = [], 0
    while not any(e.event == "resolved" for e in feed.events):  # fixed: its readers pass too
        k += 1
        sid = feed.answer("c1", k % 9 == 0, DOC if k % 3 else OTHER)
        noise += [sid] if k % 9 == 0 else []
        assert k < 2_000, "never resolved"
    resolved = next(e for e in feed.events if e.event == "resolved")
    assert set(pattern) <= set(resolved.session_ids)
    assert not set(noise) & set(resolved.session_ids)


def test_failures_at_the_pattern_s_rate_or_citing_its_document_still_join():
    feed = Feed()
    pattern = _pattern_then_fix(feed)
    # One in three still fails (the slower rate of a fix half rolled out), with no document. Far
    # below the rate the pattern showed (every answer), so each failure waits; they join, all of
    # them, once they are the evidence that would open an incident (the cluster test's threshold).
    slower = [feed.answer("c1", k % 3 == 0, NODOC) for k in range(19)]
    slower = [sid for k, sid in enumerate(slower) if k % 3 == 0]
    for _ in range(7):
        feed.answer("c1", False)
    cited = feed.answer("c1", True, STALE)  # isolated, but the stale pricing table again
    while not any(e.event == "resolved" for e in feed.events):
        feed.answer("c1", False)
    resolved = next(e for e in feed.events if e.event == "resolved")
    assert set(pattern) | set(slower) | {cited} == set(resolved.session_ids)


def test_pending_failures_survive_a_checkpoint():
    feed = Feed()
    _pattern_then_fix(feed)
    for _ in range(7):
        feed.answer("c1", False)
    feed.answer("c1", True)  # pending: the recovery test leans towards "back"
    (inc,) = feed.d.incidents.values()
    assert len(inc.pending) == 1
    state = json.loads(json.dumps(feed.d.to_state()))
    copy = Feed()
    copy.d = PatternDetector.from_state(state, BaselineConfig(), DetectConfig())
    copy.t, copy.k = feed.t, feed.k
    for f in (feed, copy):
        f.events = []
        for k in range(3):  # a failure in a row with the waiting one: the cluster is still failing
            f.answer("c1", k != 1)  # (the third, after a pass, waits and is dropped)
        while not any(e.event == "resolved" for e in f.events):
            f.answer("c1", False)
    assert [e.model_dump() for e in feed.events] == [e.model_dump() for e in copy.events]
    assert feed.events[-1].below_baseline_count == 8 + 2


RARE = Context(doc_id="rare-intent", doc_version="v1", text="The rare intent's passage.",
               indexed_at=T0 - timedelta(days=20), doc_updated_at=T0 - timedelta(days=30))


def test_a_document_s_old_noise_is_not_the_sessions_its_test_needs():
    # A document few answers read keeps old noise failures in its test for hours. When the
    # pattern's own failures then make it alarm, the old ones (older than the holdback window
    # before the pattern's first failure) are not the incident's, and what is left must still be
    # min_sessions sessions: two sessions failing twice each are not yet a pattern.
    feed = Feed()
    feed.warm("c2")
    for k in range(600):  # c3 is the rare intent: every answer reads its passage
        feed.answer("c3", k % 50 == 25, RARE)
    old = [feed.answer("c2", True, RARE) for _ in range(2)]
    for _ in range(200):
        feed.answer("c2", False, minutes=2)
    for sid in ("x", "x", "y", "y"):
        feed.answer("c3", True, RARE, session=sid)
    test = feed.d.documents[("rare-intent", "v1")]
    assert test.cusum.alarm and len({f.session_key for f in test.excursion}) == 4
    assert [e for e in feed.events if e.event == "opened"] == []
    feed.answer("c3", True, RARE, session="z")
    opened = [e for e in feed.events if e.event == "opened"]
    assert len(opened) == 1 and opened[0].clusters == ("c3",)
    assert set(opened[0].session_ids) == {"x", "y", "z"} and not set(old) & set(opened[0].session_ids)


def test_a_document_s_test_does_not_alarm_again_on_the_failures_its_incident_took():
    # The cluster's test alarms a little before its document's (its threshold is lower), and the
    # incident takes the failures both tests counted. The document's test starts over without
    # them: else it kept its statistic while the incident held its only readers' cluster, went on
    # from there once the incident resolved, and the next failing reader, a day later and past
    # rejoin_hours, made it alarm on the same failures: a second page with the first one's sessions.
    feed = Feed()
    feed.warm("c3")
    pattern = []
    while not any(e.event == "opened" for e in feed.events):
        pattern.append(feed.answer("c3", True, RARE))
        assert len(pattern) < 20, "never opened"
    (opened,) = feed.events
    assert opened.level == "cluster" and set(pattern) == set(opened.session_ids)
    assert ("rare-intent", "v1") not in feed.d.documents
    while not any(e.event == "resolved" for e in feed.events):  # fixed
        feed.answer("c3", False, minutes=10)
    for _ in range(int(feed.d.config.rejoin_hours * 6) + 10):  # past rejoin_hours, no answer reads the passage
        feed.answer("c3", False, minutes=10)
    feed.answer("c3", True, RARE)
    assert [e.event for e in feed.events] == ["opened", "resolved"], feed.events[2:]


def test_the_same_cause_back_the_next_day_reopens_its_incident():
    # A pattern whose intent sleeps overnight: its answers pass in the evening, its incident
    # resolves, and the same cause fails again with the next day's users 14 hours later
    # (BANKING77 `low_volume`, fresh seed 10). Within rejoin_hours (a day) that re-opens the
    # incident, the same one; with 12 hours it opened a second incident.
    def run(config: DetectConfig) -> tuple[list[str], set[str]]:
        feed = Feed(config)
        feed.warm("c1")
        for _ in range(8):
            feed.answer("c1", True, DOC)
        while not any(e.event == "resolved" for e in feed.events):  # fixed for the evening
            feed.answer("c1", False, DOC)
        for _ in range(14 * 6):  # the night: an answer every 10 minutes, all passing
            feed.answer("c1", False, DOC, minutes=10)
        for _ in range(8):  # the next day: the same cause again
            feed.answer("c1", True, DOC)
        kinds = ["reopened" if e.summary.startswith("Reopened") else e.event for e in feed.events]
        return [k for k in kinds if k != "updated"], {e.incident_id for e in feed.events}

    kinds, ids = run(DetectConfig())
    assert kinds == ["opened", "resolved", "reopened"] and len(ids) == 1
    kinds, ids = run(DetectConfig(rejoin_hours=12))
    assert kinds == ["opened", "resolved", "opened"] and len(ids) == 2


def _spike_in_c1(feed: Feed, failures: int) -> str:
    """Warm clusters c1 and c2, then ``failures`` failing answers in c1 (each its own session):
    the incident's id."""
    feed.warm("c1")
    feed.warm("c2", 50)
    for _ in range(failures):
        feed.answer("c1", True, STALE)
    return next(e for e in feed.events if e.event == "opened").incident_id


def test_sessions_that_joined_since_the_last_event_are_reported_once_the_incident_settles():
    feed = Feed()
    # The incident opens, and an update follows each time its sessions grow by half
    # (update_growth); after the last of those, a few more join without reaching it.
    iid = _spike_in_c1(feed, 6)
    reported = feed.last(iid).affected_sessions
    inc = feed.d.incidents[iid]
    while len(inc.sessions) == reported:
        feed.answer("c1", True, STALE)
    last_failure = feed.t
    settle = timedelta(minutes=DetectConfig().update_settle_minutes)
    # Traffic goes on elsewhere (the members are quiet: no member answer checks the growth).
    for _ in range(int(settle.total_seconds() // 60) + 30):
        feed.answer("c2", False)
    updates = [e for e in feed.events if e.incident_id == iid and e.event_at > last_failure]
    assert [e.event for e in updates] == ["updated"]  # one, once it settled; no trickle after it
    assert updates[0].event_at >= last_failure + settle
    assert updates[0].status == "open"
    assert set(updates[0].session_ids) == set(inc.sessions) and len(inc.sessions) > reported


def test_a_settled_incident_whose_new_failures_are_known_sessions_sends_no_update():
    feed = Feed()
    iid = _spike_in_c1(feed, 8)
    for _ in range(60):  # it settles: every session is reported
        feed.answer("c2", False)
    reported = feed.last(iid)
    assert set(reported.session_ids) == set(feed.d.incidents[iid].sessions)
    # Another failing answer in a session it already reported: a failure, no new session.
    feed.answer("c1", True, STALE, session=reported.session_ids[0])
    for _ in range(90):
        feed.answer("c2", False)
    assert feed.last(iid) == reported


def test_a_member_quiet_since_its_failures_holds_the_incident_open_while_a_healthy_one_answers():
    feed = Feed()
    iid = _spike_in_c1(feed, 6)  # a burst of the stale document's failures in c1
    feed.answer("c2", True, STALE)  # c2 retrieved it stale too: it joins as a member
    assert set(feed.d.incidents[iid].members) == {"c1", "c2"}
    # c1 goes quiet between bursts; c2's own intents answer well. Its passing answers alone say
    # nothing of c1, whose latest answers failed: the incident stays open (it used to resolve,
    # then re-open on c1's next burst, which paged again).
    for _ in range(60):
        feed.answer("c2", False)
    for _ in range(3):
        feed.answer("c1", True, STALE)
    assert [e.event for e in feed.events if e.incident_id == iid and e.event == "resolved"] == []
    # A member quiet for member_quiet_hours no longer holds it open.
    # (Then it waits out resolve_hold_minutes, back at baseline, before it resolves.)
    quiet = DetectConfig().member_quiet_hours * 60 + DetectConfig().resolve_hold_minutes
    for _ in range(int(quiet) + 30):
        feed.answer("c2", False)
    assert feed.last(iid).event == "resolved"


def test_a_member_failing_in_a_row_keeps_its_sessions_while_a_healthy_member_passes():
    feed = Feed()
    iid = _spike_in_c1(feed, 6)  # the stale document's failures in c1
    feed.answer("c2", True, STALE)  # c2 joins; its own intents answer well
    for _ in range(8):
        feed.answer("c2", False)
    # c1 still fails, in answers that did not retrieve the document (the pattern's intent, a
    # passage away). Over both members the recovery test leans "back", and each failure resets
    # its start: counted from there, c1 showed one failure at a time, which waited, and the fix
    # dropped them.
    late = [feed.answer("c1", True, OTHER) for _ in range(2)]
    inc = feed.d.incidents[iid]
    assert inc.back > 0.0, "the pooled recovery test should lean back"
    while not any(e.event == "resolved" for e in feed.events):  # fixed
        feed.answer("c1" if feed.k % 2 else "c2", False)
        assert feed.k < 10_000, "never resolved"
    resolved = next(e for e in feed.events if e.event == "resolved")
    assert set(late) <= set(resolved.session_ids)


def test_a_neighbour_intent_s_noise_in_a_member_cluster_is_not_the_incident_s_sessions():
    # c1 holds the pattern's intent, whose answers read the pricing table and state a made-up
    # figure, and a busier neighbour that reads its own passage (OTHER) and fails at its usual
    # rate (BANKING77 `low_volume`, fresh seed 38: two of the neighbour's failures were 2 of the
    # incident's 10 sessions). The pattern's answers that retrieval sent to the help centre fail
    # too: they join once they are shown to fail at the pattern's rate; the neighbour's do not.
    # (The noise starts after the opening; for noise in the evidence that opens it, see the next
    # test.)
    feed = Feed()
    feed.warm("c1")
    pattern, misses, noise = [], [], []
    for k in range(240):
        if k % 4 == 0:
            pattern.append(feed.answer("c1", True, DOC))
        elif k % 40 == 1:
            misses.append(feed.answer("c1", True, FALLBACK))
        else:
            fail = k % 25 == 22
            sid = feed.answer("c1", fail, OTHER)
            noise += [sid] if fail else []
    while not any(e.event == "resolved" for e in feed.events):  # fixed
        feed.answer("c1", False, OTHER)
        assert feed.k < 10_000, "never resolved"
    resolved = next(e for e in feed.events if e.event == "resolved")
    assert len(misses) >= 5 and len(noise) >= 5
    assert set(pattern) | set(misses) <= set(resolved.session_ids)
    assert not set(noise) & set(resolved.session_ids)


def _pattern_and_noise(feed: Feed, cid: str, until: Callable[[], bool],
                       beside: str | None = None) -> tuple[list[str], list[str]]:
    """Answers in ``cid`` until ``until()``: the pattern's failing answer over DOC every third, two
    of a neighbour's failures over OTHER among its first three, passing answers over OTHER
    otherwise; each followed by a failing answer over DOC in ``beside``, if given. Returns the
    pattern's and the neighbour's failing sessions."""
    pattern: list[str] = []
    noise: list[str] = []
    k = 0
    while not until():
        if k % 3 == 0:
            pattern.append(feed.answer(cid, True, DOC))
        else:
            fail = k in (1, 4)
            sid = feed.answer(cid, fail, OTHER)
            noise += [sid] if fail else []
        if beside is not None:
            feed.answer(beside, True, DOC)
        k += 1
        assert k < 100, "never happened"
    return pattern, noise


def test_a_neighbour_intent_s_noise_in_the_opening_evidence_waits_and_is_not_paged():
    # As above, but two of the neighbour's failures come between the pattern's first three: the
    # cluster test's excursion holds them, and at 3eb4e75 the incident opened with five
    # sessions, two of them the neighbour's, and kept them (BANKING77 `low_volume`, fresh seed 43:
    # a family's test opened with four other intents' sessions among ten).
    feed = Feed()
    feed.warm("c1")
    pattern, noise = _pattern_and_noise(feed, "c1", lambda: any(e.event == "opened" for e in feed.events))
    opened = next(e for e in feed.events if e.event == "opened")
    assert len(noise) == 2 and len(pattern) >= DetectConfig().min_sessions
    assert set(opened.session_ids) == set(pattern)
    assert {f.session_key for f in feed.d.incidents[opened.incident_id].pending} == set(noise)
    for k in range(30):
        if k % 3 == 0:
            pattern.append(feed.answer("c1", True, DOC))
        else:
            feed.answer("c1", False, OTHER)
    while not any(e.event == "resolved" for e in feed.events):  # fixed
        feed.answer("c1", False, OTHER)
        assert feed.k < 10_000, "never resolved"
    resolved = next(e for e in feed.events if e.event == "resolved")
    assert set(pattern) <= set(resolved.session_ids)
    assert not set(noise) & set(resolved.session_ids)


def test_a_neighbour_intent_s_noise_in_the_evidence_that_joins_an_incident_waits_too():
    # The same in a second cluster whose test joins an open incident by its cause: the noise
    # there (two failures over another passage among the pattern's first three) waits in the
    # incident's pending, where c2, now a member, keeps it from the sessions.
    feed = Feed()
    feed.warm("c1")
    feed.warm("c2")
    for k in range(12):
        feed.answer("c1", k % 2 == 0, DOC)
    (iid,) = {e.incident_id for e in feed.events}
    inc = feed.d.incidents[iid]
    pattern, noise = _pattern_and_noise(feed, "c2", lambda: "c2" in inc.members, beside="c1")
    assert feed.last(iid).clusters == ("c1", "c2") and len(noise) == 2
    assert set(pattern) <= set(inc.sessions) and not set(noise) & set(inc.sessions)
    assert {f.session_key for f in inc.pending} == set(noise)
    while not any(e.event == "resolved" for e in feed.events):  # fixed
        feed.answer("c2" if feed.k % 2 else "c1", False, OTHER)
        assert feed.k < 10_000, "never resolved"
    resolved = next(e for e in feed.events if e.event == "resolved")
    assert not set(noise) & set(resolved.session_ids)


def test_a_stale_index_s_failures_stay_in_evidence_its_fallback_page_dominates():
    # A stale index that misses more often than it serves the stale passage: most of the
    # evidence's failures are over the fallback page, which is then its cause. The failures over
    # the stale document are the pattern's, not another intent's: at 38b9e82 they were held back
    # as failures over another document (seeded CLINC150 kb-account-help, seed 44: they opened a
    # second incident).
    feed = Feed()
    feed.warm("c1")
    stale, fallback = [], []
    k = 0
    while not any(e.event == "opened" for e in feed.events):
        if k % 5 == 0:
            stale.append(feed.answer("c1", True, STALE))
        elif k % 5 < 4:
            fallback.append(feed.answer("c1", True, FALLBACK))
        else:
            feed.answer("c1", False, OTHER)
        k += 1
        assert k < 100, "never opened"
    opened = next(e for e in feed.events if e.event == "opened")
    assert feed.d.incidents[opened.incident_id].cause == ("help-centre", "v1") and len(stale) >= 2
    assert set(opened.session_ids) == set(stale) | set(fallback)


@pytest.mark.parametrize("cause, joined", [(STALE, True), (DOC, False)])
def test_two_failures_over_a_fallback_page_join_a_stale_index_s_incident_at_once(cause, joined):
    # A stale index misses now and then, and the answers it misses land on a fallback page: the
    # pattern's too. A made-up figure is stated over the intent's own passage: two failures over
    # another document are not yet shown to be its pattern's (see the test above).
    feed = Feed()
    feed.warm("c1")
    misses = []
    for k in range(40):
        if k % 4 == 0:
            feed.answer("c1", True, cause)
        elif k in (21, 29):  # after the opening
            misses.append(feed.answer("c1", True, FALLBACK))
        else:
            feed.answer("c1", False, OTHER)
    (inc,) = feed.d.incidents.values()
    assert (set(misses) <= set(inc.sessions)) is joined
    assert (set(misses) <= {f.session_key for f in inc.pending}) is not joined
    copy = PatternDetector.from_state(json.loads(json.dumps(feed.d.to_state())), BaselineConfig(), DetectConfig())
    assert copy.incidents[inc.incident_id].aside == inc.aside and inc.aside["help-centre"] > 0


def _burst_lull_and_more(config: DetectConfig | None = None) -> tuple[Feed, list[str]]:
    """A pattern (an answer every 3 minutes) that opens on a burst, then fails once in 30 answers
    for 90 minutes (a ramp's early hours, or a pause: back at baseline by every test), then fails
    every other answer again for 90 minutes before its fix. Returns the feed and the sessions of
    the failing answers after the lull."""
    feed = Feed(config)
    feed.warm("c1")
    for f in (1, 1, 0, 1, 1, 1, 0, 1):
        feed.answer("c1", bool(f), minutes=3)
    for k in range(30):
        feed.answer("c1", k == 6, minutes=3)
    later = [feed.answer("c1", k % 2 == 0, minutes=3) for k in range(30)]
    for _ in range(200):
        feed.answer("c1", False, minutes=3)
    return feed, later[::2]


def test_a_lull_shorter_than_the_hold_does_not_resolve_the_incident_then_reopen_it():
    # Without the hold it resolves in the lull and re-opens 57 minutes later: two pages, one cause.
    feed, _ = _burst_lull_and_more(DetectConfig(resolve_hold_minutes=0))
    assert [e.summary.split()[0] for e in feed.events if e.event != "updated" or e.status == "open"
            and e.summary.startswith("Reopened")] == ["Pattern", "Resolved", "Reopened", "Resolved"]
    # With it (60 minutes by default): one incident, open through the lull, resolved once.
    feed, later = _burst_lull_and_more()
    ids = {e.incident_id for e in feed.events}
    assert len(ids) == 1
    assert [e.event for e in feed.events if e.event != "updated"] == ["opened", "resolved"]
    assert not any(e.summary.startswith("Reopened") for e in feed.events)
    resolved = feed.events[-1]
    assert set(later) <= set(resolved.session_ids)
    # Resolved as of when the answers came back after the last burst; the event an hour later.
    hold = timedelta(minutes=DetectConfig().resolve_hold_minutes)
    assert resolved.resolved_at > feed.d.resolved[resolved.incident_id].failures[-1].at
    assert resolved.event_at >= resolved.resolved_at + hold


def test_in_the_hold_noise_failures_in_a_row_that_do_not_read_the_cause_stay_out():
    feed = Feed()
    iid = _spike_in_c1(feed, 6)  # the stale table's failures
    fixed = DOC.model_copy(update={"doc_version": "v4"})  # the fix: a new version, fresh
    inc = feed.d.incidents[iid]
    while inc.recovered_at is None:  # back at baseline: the hold begins
        feed.answer("c1", False, fixed)
        assert feed.k < 10_000, "never back"
    # Two noise failures in a row in the busy member, over the fixed table. While the incident
    # was not yet back, a member failing in a row joined (see the test above); in the hold, an
    # answer that did not retrieve the cause (the stale version) is no evidence the pattern is
    # back: they wait, and are dropped at resolution. (They took four sessions, with two that
    # waited before, in a BANKING77 stale_document stream.)
    assert inc.observed_rate < 0.4, "a rate below p1: it waits out the hold"
    noise = [feed.answer("c1", True, fixed) for _ in range(2)]
    assert iid in feed.d.incidents and {f.session_id for f in inc.pending} >= set(noise)
    while not any(e.event == "resolved" for e in feed.events):
        feed.answer("c1", False, fixed)
        assert feed.k < 10_000, "never resolved"
    resolved = next(e for e in feed.events if e.event == "resolved")
    assert not set(noise) & set(resolved.session_ids)
    assert resolved.resolved_at is not None and resolved.resolved_at < feed.t


def test_an_incident_that_failed_at_p1_or_more_resolves_as_soon_as_it_is_back():
    # 40 failing answers, then the fix: a dozen passing answers against a rate that high are no
    # lull. It resolves at once, as before the hold (an hour more open only let noise join:
    # five patterns lost session precision on the published seeds).
    feed = Feed()
    iid = _spike_in_c1(feed, 40)
    fixed = DOC.model_copy(update={"doc_version": "v4"})
    while iid in feed.d.incidents:
        feed.answer("c1", False, fixed)
        assert feed.k < 10_000, "never resolved"
    resolved = feed.last(iid)
    assert resolved.event == "resolved" and resolved.event_at == resolved.resolved_at
    assert resolved.observed_below_rate >= 0.4


def test_a_rare_intent_s_document_pattern_in_a_busy_intent_s_cluster_opens_with_its_first_sessions():
    # c1 is a busy intent's cluster, and a rare intent's answers land there too: only those read
    # the rare intent's passage, so the document's test sees the pattern while c1's own test sees
    # a few failures among passing answers. Two failing readers an hour and a half apart, five
    # quiet hours, then three failures in one session: the document's test alarms on the last.
    # c1 is the member only because no cluster is mostly the passage's readers, so its other
    # intents' passing answers must not make the first two look like noise: they are the
    # pattern's first sessions. (Weighed with them, the evidence left was one session, and
    # nothing opened while the first two stayed in the test.)
    feed, first = _rare_intent_in_a_busy_cluster(quiet=2)
    opened = [e for e in feed.events if e.event == "opened"]
    assert len(opened) == 1 and (opened[0].level, opened[0].clusters) == ("document", ("c1",)), feed.events
    assert set(opened[0].session_ids) == {*first, "burst"}


def _rare_intent_in_a_busy_cluster(quiet: int, warm: tuple[str, ...] = ("c1",)) -> tuple[Feed, list[str]]:
    """c1 (and the others of ``warm``) warm; two failing readers of RARE 20 minutes into five
    passing answers each, ``quiet`` more passing answers 100 minutes apart, then three failures
    in session "burst"; returns the feed and the first two sessions."""
    feed = Feed()
    for cid in warm:
        feed.warm(cid)
    first = []
    for _ in range(2):
        first.append(feed.answer("c1", True, RARE, minutes=20))
        for _ in range(5):
            feed.answer("c1", False, minutes=20)
    for _ in range(quiet):
        feed.answer("c1", False, minutes=100)
    for k in range(3):
        feed.answer("c1", True, RARE, minutes=100 if k == 0 else 1, session="burst")
    return feed, first


def test_a_neighbour_intent_reading_the_cause_second_does_not_resolve_a_document_s_incident():
    # HWU64: the rare intent (lights dim) reads its passage first; its neighbour in the same
    # cluster (lights off) reads its own first and the lights-dim passage second. The document's
    # test counted the answers that retrieved the passage first, and so does the incident's
    # recovery: the neighbour passing all night while the rare intent slept is no sign the
    # pattern is over. (Counted, it resolved the incident, and the rare intent's failures in the
    # morning re-opened it: a second page for one cause.)
    feed, first = _rare_intent_in_a_busy_cluster(quiet=0)
    (opened,) = feed.events
    assert opened.level == "document"
    for _ in range(40):  # the night: the neighbour intent only, every 15 minutes
        feed.answer("c1", False, (OTHER, RARE), minutes=15)
    morning = [feed.answer("c1", True, RARE, minutes=10) for _ in range(3)]
    assert "resolved" not in [e.event for e in feed.events], [(e.event, e.event_at) for e in feed.events]
    (inc,) = feed.d.incidents.values()  # the morning's failures are its sessions, at once
    assert set(inc.sessions) == {*first, "burst", *morning} and not inc.pending



@pytest.mark.parametrize("member_answers", [False, True])
def test_a_document_s_incident_resolves_on_its_readers_elsewhere_once_its_members_are_quiet(member_answers):
    # HWU64 `spike`, fresh seed 40: a small-talk intent reads its passage first in some twenty
    # clusters. Its document's incident had as members the few where the spike's failures
    # massed, and after the one-hour spike those got 12 of its readers' answers in 32 hours, too
    # few for the recovery test. The readers in the other clusters passed, but only the members'
    # readers counted: it stayed open to the stream's end and took six noise failures after the
    # fix as its sessions. Once its members are quiet, its readers elsewhere speak for it. While a
    # member still answers (here c1's own intent, which does not read the passage) they do not:
    # BANKING77's healthy top-up intents read the pattern's passage first too, and their passing
    # answers resolved a `low_volume` incident hours before its last sessions.
    feed, first = _rare_intent_in_a_busy_cluster(quiet=0, warm=("c2", "c1"))
    (opened,) = feed.events
    assert (opened.level, opened.clusters) == ("document", ("c1",))
    for _ in range(48):  # eight hours: after the fix the intent's questions land in c2, and pass
        if member_answers:
            feed.answer("c1", False, minutes=5)
        feed.answer("c2", False, RARE, minutes=5 if member_answers else 10)
    if member_answers:
        assert [e.event for e in feed.events] == ["opened"]
        return
    resolved = feed.last()
    assert resolved.event == "resolved", [(e.event, e.event_at) for e in feed.events]
    assert set(resolved.session_ids) == {*first, "burst"} and not feed.d.incidents
    late = feed.answer("c2", True, RARE, minutes=10)  # a reader's noise, hours after the fix
    assert feed.last() is resolved and late not in resolved.session_ids


def test_the_cause_document_s_test_gives_the_incident_its_readers_failures_in_other_clusters():
    # A rare intent reads its passage first wherever its phrasings land: c1 mostly, c2 sometimes.
    # c1's failures in the morning take its test most of the way; healthy readers (c3) then bring
    # the document's test back to 0, and c1 goes quiet. Two failing readers in c2 later, and c1's
    # next failure opens the incident through c1's test: the document's test, at about 5.4 then
    # (twice ln 100's worth would be its own alarm), has shown its readers failing at the
    # pattern's rate, so c2's two sessions are the incident's too. (Before, they were left out:
    # c2's own test never got there, and its later readers were all the outside evidence saw.)
    feed = Feed()
    for cid in ("c1", "c2"):
        feed.warm(cid)
    for k in range(200):
        feed.answer("c3", k % 50 == 25, RARE)
    early = [feed.answer("c1", True, RARE) for _ in range(4)]
    for _ in range(30):
        feed.answer("c3", False, RARE)
    assert ("rare-intent", "v1") not in feed.d.documents  # back at 0
    c2 = [feed.answer("c2", True, RARE, minutes=5) for _ in range(2)]
    assert 4.6 < feed.d.documents[("rare-intent", "v1")].cusum.statistic < 13
    last = feed.answer("c1", True, RARE)
    (opened,) = feed.events
    assert (opened.level, opened.clusters) == ("cluster", ("c1",))
    assert set(opened.session_ids) == {*early, last, *c2}


MENU = Context(doc_id="menu", doc_version="v2", text="Delivery is free.", indexed_at=T0 - timedelta(days=20),
               doc_updated_at=T0 + timedelta(days=3))
FALLBACK = Context(doc_id="help-centre", doc_version="v1", text="See our help pages.",
                   indexed_at=T0 - timedelta(days=20), doc_updated_at=T0 - timedelta(days=30))


def test_the_fallback_page_s_failures_join_the_incident_that_has_half_their_sessions():
    # Two stale documents at once, each its own intent's (c1, c2) and customers. The answers that
    # miss their passage retrieve the one fallback help page, every intent's, and make the figure
    # up; some land in c3. Half of c3's failing sessions are the first incident's, none the
    # second's: they join the first (joined_by "sessions"), no third page, and the two causes stay
    # apart. (HWU64 two causes, fresh seed 18: the fallback page's test opened a third incident on
    # 4 sessions, 2 of them the second incident's and 1 the first's.)
    feed = Feed()
    for cid in ("c1", "c2", "c3"):
        feed.warm(cid)
    a = [feed.answer("c1", True, STALE, session=f"a{k}") for k in range(5)]
    b = [feed.answer("c2", True, MENU, session=f"b{k}") for k in range(5)]
    assert [e.event for e in feed.events] == ["opened", "opened"]
    for sid in ("a0", "a1", "x0", "x1", "x1"):
        feed.answer("c3", True, FALLBACK, session=sid)
    final = {e.incident_id: e for e in feed.events}
    assert len(final) == 2, [(e.event, e.incident_id, e.clusters) for e in feed.events]
    first, second = (final[e.incident_id] for e in feed.events if e.event == "opened")
    assert first.clusters == ("c1", "c3") and [m.joined_by for m in first.members] == ["opened", "sessions"]
    assert set(first.session_ids) == {*a, "x0", "x1"} and second.clusters == ("c2",)
    assert set(second.session_ids) == set(b)
