"""``faithwatch dashboards render OUT_DIR``: the dashboards drawn without Grafana, from the same
SQL, into one PNG per panel and one HTML page (matplotlib).

Each panel's SQL goes through :func:`dashboards.macros.expand` (the ClickHouse plugin's rules),
over the dashboard's default time range ending at the store's latest answer (event time, so a
replayed stream reads like a live one) unless ``until`` is given, at an interval of about 100
points, with each variable set to a value its own query offers (the latest incident; the first
member cluster of that incident). Tables show their first rows; text panels are copied as text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402 - after the backend is chosen
import matplotlib.pyplot as plt  # noqa: E402

from dashboards.generate import dashboards  # noqa: E402
from dashboards.macros import apply_variables, expand  # noqa: E402
from pipelines.errors import FaithwatchError  # noqa: E402

ORDER = ("overview.json", "cluster.json", "incident.json")
_STEPS = [timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30, 60, 180, 360, 720, 1440)]
_RANGE = re.compile(r"^now-(\d+)([mhd])$")
TABLE_ROWS = 15
Row = dict[str, Any]


def interval_for(span: timedelta, points: int = 100) -> timedelta:
    """The smallest of Grafana's usual steps that gives at most ``points`` buckets.

    >>> interval_for(timedelta(hours=24)), interval_for(timedelta(days=7))
    (datetime.timedelta(seconds=900), datetime.timedelta(seconds=10800))
    """
    for step in _STEPS:
        if span / step <= points:
            return step
    return _STEPS[-1]


def time_range(model: Mapping, until: datetime) -> tuple[datetime, datetime]:
    match = _RANGE.match(model.get("time", {}).get("from", "now-24h"))
    amount, unit = (int(match.group(1)), match.group(2)) if match else (24, "h")
    return until - timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount}), until


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _draw_series(ax, rows: Sequence[Row], heat: bool) -> None:
    names = list(rows[0])
    time, rest = names[0], names[1:]
    labels = [n for n in rest if any(isinstance(r[n], str) for r in rows)]
    values = [n for n in rest if n not in labels and any(_numeric(r[n]) for r in rows)]
    series: dict[str, list[tuple[datetime, float]]] = {}
    for row in rows:
        for name in values:
            key = " ".join(str(row[label]) for label in labels) if labels else name
            if len(values) > 1 and labels:
                key = f"{key} {name}"
            if _numeric(row[name]):
                series.setdefault(key, []).append((row[time], float(row[name])))
    if heat:
        times = sorted({t for points in series.values() for t, _ in points})
        keys = sorted(series)
        grid = [[float("nan")] * len(times) for _ in keys]
        column = {t: i for i, t in enumerate(times)}
        for y, key in enumerate(keys):
            for t, v in series[key]:
                grid[y][column[t]] = v
        edges = mdates.date2num(times + [times[-1] + (times[-1] - times[0]) / max(len(times) - 1, 1)])
        image = ax.pcolormesh(edges, range(len(keys) + 1), grid, cmap="Oranges", shading="flat")
        ax.set_yticks([i + 0.5 for i in range(len(keys))], keys, fontsize=7)
        ax.figure.colorbar(image, ax=ax, fraction=0.03)
        ax.xaxis_date()
    else:
        for key, points in list(series.items())[:12]:
            ax.plot([t for t, _ in points], [v for _, v in points], label=key, linewidth=1.2)
        if series:
            ax.legend(fontsize=7, loc="upper left", ncols=min(4, len(series)))
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.grid(alpha=0.3)


def _draw_stat(ax, rows: Sequence[Row]) -> None:
    ax.axis("off")
    row = rows[0]
    items = [(name, value) for name, value in row.items() if _numeric(value)]
    for i, (name, value) in enumerate(items):
        x = (i + 0.5) / max(len(items), 1)
        text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3g}"
        ax.text(x, 0.55, text, ha="center", va="center", fontsize=26, weight="bold", color="#c4461a")
        ax.text(x, 0.15, name.replace("_", " "), ha="center", va="center", fontsize=9)


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value) if value is not None else ""
    return text if len(text) <= 28 else text[:27] + "…"


def _draw_table(ax, rows: Sequence[Row]) -> None:
    ax.axis("off")
    names = list(rows[0])
    cells = [[_cell(row[n]) for n in names] for row in rows[:TABLE_ROWS]]
    table = ax.table(cellText=cells, colLabels=names, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(len(names))))


def draw_panel(panel: Mapping, results: Sequence[Sequence[Row]], path: Path) -> None:
    """One panel's PNG from its queries' rows."""
    kind = panel["type"]
    rows = [row for result in results for row in result]
    width = 12 if panel.get("gridPos", {}).get("w", 12) > 12 or kind == "table" else 7
    height = 1.8 if kind == "stat" else (0.6 + 0.22 * min(len(rows), TABLE_ROWS) if kind == "table" else 3.2)
    if kind == "heatmap" and rows:  # one readable row per cluster
        labels = {tuple(v for v in row.values() if isinstance(v, str)) for row in rows}
        height = max(height, 1.0 + 0.16 * len(labels))
    fig, ax = plt.subplots(figsize=(width, max(height, 1.6)), dpi=100)
    try:
        ax.set_title(panel["title"], fontsize=10, loc="left")
        if not rows:
            ax.axis("off")
            ax.text(0.5, 0.5, "No data", ha="center", va="center", color="grey")
        elif kind in ("timeseries", "heatmap"):
            if kind == "timeseries" and len(results) > 1:
                for result in results:  # several queries: one set of lines each
                    if result:
                        _draw_series(ax, result, heat=False)
            else:
                _draw_series(ax, rows, heat=kind == "heatmap")
        elif kind == "stat":
            _draw_stat(ax, rows)
        else:
            _draw_table(ax, rows)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def _variables(store, model: Mapping, start: datetime, end: datetime, step: timedelta,
               chosen: Mapping[str, str | None]) -> dict[str, str]:
    values: dict[str, str] = {}
    for variable in model.get("templating", {}).get("list", []):
        name = variable["name"]
        if variable["type"] != "query":
            values[name] = chosen.get(name) or str(variable.get("query") or "")
            continue
        offered = [list(row.values())[0] for row in store.query(expand(variable["query"], start, end, step))]
        value = chosen.get(name)
        if value is None and offered:
            value = offered[0]
        if value is None:
            raise FaithwatchError(f"no value for the dashboard variable {name}: its query offers none")
        values[name] = str(value)
    return values


def latest_answer(store) -> datetime | None:
    rows = store.query("SELECT toDateTime64(max(last_at), 3, 'UTC') AS at FROM rollup_days HAVING count() > 0")
    return rows[0]["at"] if rows else None


def render(store, out_dir: Path, until: datetime | None = None, cluster: str | None = None,
           incident: str | None = None) -> Path:
    """Draws every dashboard into ``out_dir``; returns the HTML page."""
    until = until or latest_answer(store)
    if until is None:
        raise FaithwatchError("the store holds no answers yet: nothing to draw")
    out_dir.mkdir(parents=True, exist_ok=True)
    models = dashboards()
    chosen: dict[str, str | None] = {"incident": incident, "cluster": cluster}
    if cluster is None:
        # The cluster dashboard shows the first member of the incident the incident dashboard shows.
        start, end = time_range(models["incident.json"], until)
        picked = incident or next(iter(_variables(store, models["incident.json"], start, end,
                                                  interval_for(end - start), chosen).values()), None)
        members = store.query("SELECT arrayJoin(if(empty(member_clusters), [cluster_id], member_clusters)) AS c "
                              "FROM incidents WHERE incident_id = {i:String}", {"i": picked or ""})
        chosen["cluster"] = members[0]["c"] if members else None
    sections = []
    for name in ORDER:
        model = models[name]
        start, end = time_range(model, until)
        step = interval_for(end - start)
        values = _variables(store, model, start, end, step, chosen)
        figures = []
        for index, panel in enumerate(model["panels"]):
            title = html.escape(panel.get("title", ""))
            if panel["type"] == "text":
                text = html.escape(apply_variables(panel["options"]["content"], values))
                figures.append(f'<figure class="text"><figcaption>{title}</figcaption><pre>{text}</pre></figure>')
                continue
            results = [store.query(expand(t["rawSql"], start, end, step, values)) for t in panel.get("targets", [])]
            png = f"{Path(name).stem}-{index:02d}.png"
            draw_panel(panel, results, out_dir / png)
            figures.append(f'<figure class="panel" data-panel="{title}"><img src="{png}" alt="{title}">'
                           f"<figcaption>{title}</figcaption></figure>")
        shown = ", ".join(f"{k} = {html.escape(v)}" for k, v in values.items() if k != "api_url")
        sections.append(f'<section id="{model["uid"]}"><h2>{html.escape(model["title"])}</h2>'
                        f'<p class="range">{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, every '
                        f'{int(step.total_seconds() // 60)} min{"; " + shown if shown else ""}</p>'
                        + "\n".join(figures) + "</section>")
    page = out_dir / "index.html"
    page.write_text(_PAGE.replace("{sections}", "\n".join(sections)), encoding="utf-8")
    return page


# Marks each image loaded or not once the page has loaded (what the test reads in Chromium).
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>faithwatch dashboards</title>
<style>body{font-family:sans-serif;margin:1.5em;background:#fafafa} figure{display:inline-block;margin:.5em;
vertical-align:top;background:#fff;border:1px solid #ddd;padding:.3em} img{max-width:100%}
figcaption{font-size:.8em;color:#555} pre{white-space:pre-wrap;font-size:.8em;max-width:40em}</style></head>
<body><h1>faithwatch dashboards</h1>
<p>Drawn by <code>faithwatch dashboards render</code> from the same SQL as the Grafana dashboards.</p>
{sections}
<script>
window.addEventListener("load", () => {
  let loaded = 0;
  for (const img of document.images) {
    const ok = img.complete && img.naturalWidth > 0;
    img.dataset.loaded = ok ? "yes" : "no";
    loaded += ok ? 1 : 0;
  }
  document.body.dataset.panels = String(document.images.length);
  document.body.dataset.loaded = String(loaded);
});
</script></body></html>
"""
