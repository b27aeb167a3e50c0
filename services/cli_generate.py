"""``faithwatch generate``: write a seeded stream (and its ground truth) to try settings on.

The stream is what :mod:`pipelines.scenario` builds from the real queries of a data set shipped in
``data/``; the ground truth (which interactions, sessions and customers the injected incident
hit, from when) goes to ``<stream>.truth.json`` next to it, so a replay's alerts can be checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipelines.errors import FaithwatchError
from pipelines.scenario import INCIDENT_KINDS, IncidentSpec, ScenarioConfig, generate, to_jsonl_lines
from services.cli import main
from services.datasets import INTENT_SETS, load_intents


def truth_path(stream: Path) -> Path:
    """``stream.jsonl`` -> ``stream.truth.json``."""
    return stream.with_name(stream.stem + ".truth.json")


def incident_for(kind: str, dataset: str, intents: tuple[str, ...], onset_day: float | None,
                 sessions: int | None, document: str | None = None) -> IncidentSpec | None:
    if kind == "none":
        return None
    overrides: dict = {"document": document} if document else {}
    if intents:
        overrides["intents"] = intents
    if onset_day is not None:
        overrides["onset_day"] = onset_day
    if sessions is not None:
        overrides["sessions"] = sessions
    if kind == "stale_document" and dataset == "banking77":
        # The product story: pricing-table v3 served stale to exchange-rate questions.
        return IncidentSpec(**overrides)
    return IncidentSpec.of(kind, **overrides)


@main.command("generate")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dataset", type=click.Choice(INTENT_SETS), default="banking77", show_default=True,
              help="whose real queries the stream asks")
@click.option("--split", default="train", show_default=True, help="the data set's split to draw queries from")
@click.option("--days", default=4.0, show_default=True, type=float)
@click.option("--per-day", default=1500, show_default=True, type=int, help="interactions a day on average")
@click.option("--intents", default=30, show_default=True, type=int, help="intents in the stream")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--incident", "kind", type=click.Choice(["none", *INCIDENT_KINDS]), default="stale_document",
              show_default=True, help="the injected incident")
@click.option("--incident-intent", "incident_intents", multiple=True,
              help="intent the incident hits (repeatable; default: picked from the stream)")
@click.option("--onset-day", type=float, help="days after the start when the incident begins")
@click.option("--sessions", type=int, help="sessions the incident hits (spike: at most)")
@click.option("--shared-document", "document",
              help="stale_document: every incident intent reads this one (new) document, which goes stale")
@click.option("--also", "also", multiple=True, metavar="KIND[:INTENT,...]",
              help="one more injected pattern beside --incident (repeatable), with the kind's defaults")
@click.option("--noise-rate", default=0.03, show_default=True, type=float,
              help="background share of answers stating a made-up figure")
@click.option("--producer-faithfulness/--no-producer-faithfulness", default=False, show_default=True,
              help="add the producer's own evaluator score to every record")
def generate_cmd(out, dataset, split, days, per_day, intents, seed, kind, incident_intents, onset_day,
                 sessions, document, also, noise_rate, producer_faithfulness):
    """Write a realistic stream to OUT (JSON Lines) and its ground truth to OUT's .truth.json."""
    queries = load_intents(dataset, split)
    try:
        spec = incident_for(kind, dataset, tuple(incident_intents), onset_day, sessions, document)
        more = []
        for item in also:
            more_kind, _, names = item.partition(":")
            if more_kind not in INCIDENT_KINDS:
                raise ValueError(f"--also {item}: unknown kind {more_kind!r}; known: {', '.join(INCIDENT_KINDS)}")
            more.append(IncidentSpec.of(more_kind, intents=tuple(n for n in names.split(",") if n)))
        if more and spec is None:
            raise ValueError("--also needs an --incident beside it")
        config = ScenarioConfig(seed=seed, days=days, per_day=per_day, intents=intents, noise_rate=noise_rate,
                                incident=spec, incidents=tuple(more), producer_faithfulness=producer_faithfulness)
        scenario = generate(queries, config)
    except ValueError as exc:
        raise FaithwatchError(str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        fh.writelines(to_jsonl_lines(scenario.records))
    truth = scenario.truth.to_json()
    truth.update({"dataset": dataset, "split": split, "seed": seed, "days": days, "per_day": per_day,
                  "intents": intents, "noise_rate": noise_rate, "producer_faithfulness": producer_faithfulness,
                  "records": len(scenario.records)})
    tpath = truth_path(out)
    tpath.write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    click.echo(json.dumps({"stream": str(out), "truth": str(tpath), "records": len(scenario.records),
                           "incident": truth["kind"], "incident_intents": truth["incident_intents"],
                           "onset_at": truth["onset_at"],
                           "incident_sessions": len(truth["incident_session_ids"]),
                           **({"patterns": [{"kind": p["kind"], "intents": p["intents"], "onset_at": p["onset_at"],
                                             "stale_doc": p["stale_doc"], "sessions": len(p["session_ids"])}
                                            for p in truth["patterns"]]} if "patterns" in truth else {})},
                          sort_keys=True))
    click.echo(f"Replay it: faithwatch replay {out} --alerts-out alerts.jsonl", err=True)
