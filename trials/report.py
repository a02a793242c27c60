"""``report.html``: the trial report a diabetes clinic can read (one self-contained HTML file plus PNGs).

Sections: overview cards, consensus targets with pass/fail marks, time in ranges, AGP per group, CVGA, comparison by
group, example subjects, supervisor interventions, CGM-based metrics, every subject, definitions. Built only from the
files of the output folder (summary.json, cvga.json, trial.json, chunks/), so it can be rebuilt at any time with
:func:`write_report`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from trials import plots
from trials.chunkio import GROUPS, iter_chunks
from trials.cvga import ZONES
from trials.metrics import CONSENSUS_TARGETS, meets_target

GROUP_LABELS = {"adolescent": "Adolescents", "adult": "Adults", "child": "Children"}

ROWS = [
    # key, label, unit, decimals, lower-is-better (None = neutral)
    ("tir_pct", "Time in range 70-180 mg/dL", "%", 1, False),
    ("tbr70_pct", "Time below 70 mg/dL", "%", 2, True),
    ("tbr54_pct", "Time below 54 mg/dL", "%", 2, True),
    ("tar180_pct", "Time above 180 mg/dL", "%", 1, True),
    ("tar250_pct", "Time above 250 mg/dL", "%", 1, True),
    ("cv_pct", "Coefficient of variation", "%", 1, True),
    ("mean_mg_dl", "Mean glucose", "mg/dL", 0, None),
    ("sd_mg_dl", "Standard deviation", "mg/dL", 0, True),
    ("gmi_pct", "Glucose management indicator", "%", 2, None),
    ("lbgi", "Low blood glucose index (LBGI)", "", 2, True),
    ("hbgi", "High blood glucose index (HBGI)", "", 2, True),
    ("gri", "Glycemia risk index (GRI)", "", 1, True),
    ("hypo_events", "Hypoglycemia events (>= 15 min < 54)", "", 0, True),
    ("tdi_u", "Total daily insulin", "U/day", 1, None),
]

CSS = """
:root { --ink:#1d2733; --muted:#5d6b7a; --line:#dfe5ec; --bg:#f5f7fa; --ok:#2e7d32; --bad:#c62828; --accent:#1f4e9c; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#fff; border-bottom:3px solid var(--accent); padding:18px 32px 14px; }
header h1 { margin:0; font-size:22px; font-weight:600; }
header .sub { color:var(--muted); margin-top:4px; }
.warn { background:#fff4e5; border-left:4px solid #f0a020; padding:8px 14px; margin:14px 32px 0; font-size:13px; }
main { padding:8px 32px 40px; max-width:1400px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 20px; margin:18px 0; }
section h2 { margin:0 0 10px; font-size:17px; font-weight:600; }
section p.note { color:var(--muted); font-size:12.5px; margin:6px 0 0; }
.cards { display:flex; gap:16px; flex-wrap:wrap; }
.card { flex:1 1 260px; border:1px solid var(--line); border-radius:8px; padding:12px 16px; border-top:4px solid; }
.card h3 { margin:0 0 8px; font-size:15px; }
.kpis { display:grid; grid-template-columns:repeat(3, 1fr); gap:6px 12px; }
.kpi .v { font-size:20px; font-weight:600; }
.kpi .l { font-size:11px; color:var(--muted); text-transform:uppercase; letter-spacing:.03em; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th { background:#f0f3f7; font-weight:600; color:#34414f; }
td.l, th.l { text-align:left; }
tr:hover td { background:#fafbfd; }
.pass { color:var(--ok); font-weight:700; }
.fail { color:var(--bad); font-weight:700; }
.best { background:#eaf5ea; }
.badge { display:inline-block; padding:1px 7px; border-radius:10px; font-size:11px; font-weight:600; }
.badge.pass { background:#e3f2e4; } .badge.fail { background:#fbe4e4; }
img { max-width:100%; height:auto; display:block; margin:8px 0; }
.grid2 { display:grid; grid-template-columns: 1fr 1fr; gap:18px; align-items:start; }
details summary { cursor:pointer; font-weight:600; margin:6px 0; }
dl.defs dt { font-weight:600; margin-top:6px; } dl.defs dd { margin:0 0 0 16px; color:#34414f; font-size:13px; }
footer { color:var(--muted); font-size:12px; padding:0 32px 30px; }
"""


def _fmt(v, decimals: int) -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, (int, np.integer)) and decimals == 0:
        return f"{int(v)}"
    return f"{float(v):.{decimals}f}"


def _target_text(key: str) -> str:
    if key not in CONSENSUS_TARGETS:
        return ""
    op, limit = CONSENSUS_TARGETS[key]
    op = {"<=": "&le;", ">=": "&ge;", "<": "&lt;", ">": "&gt;"}[op]
    return f"{op} {limit:g}%"


def _mark(key: str, value) -> str:
    ok = meets_target(key, value)
    if ok is None:
        return ""
    return ' <span class="pass">&#10003;</span>' if ok else ' <span class="fail">&#10007;</span>'


def _aggregate_chunks(out: Path, controllers) -> tuple[dict, dict]:
    """AGP histograms summed over chunks per controller, and example traces per controller and subject."""
    hists: dict[str, np.ndarray] = {}
    examples: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for name in controllers:
        total = None
        ex: dict[str, dict[str, np.ndarray]] = {}
        for c in iter_chunks(out, name):
            total = c["agp_hist"].astype(np.int64) if total is None else total + c["agp_hist"]
            names = c["names"]
            for j, i in enumerate(c["ex_index"].tolist()):
                ex[str(names[i])] = {"t_min": c["ex_t_min"], "bg": c["ex_bg"][j].astype(float),
                                     "insulin": c["ex_insulin"][j].astype(float),
                                     "bolus": (c["ex_bolus"][j] if "ex_bolus" in c
                                               else np.zeros_like(c["ex_insulin"][j])).astype(float),
                                     "carbs": c["ex_carbs"][j].astype(float)}
        hists[name] = total
        examples[name] = ex
    return hists, examples


def _metrics_table(columns: list[tuple[str, dict]], with_targets: bool = True, best: bool = True) -> str:
    """A metrics table: one column per (label, M); with two columns, a difference column (first - second)."""
    head = "".join(f"<th>{html.escape(label)}</th>" for label, _ in columns)
    delta = len(columns) == 2
    if delta:
        head += f"<th>&Delta; {html.escape(columns[0][0])} &minus; {html.escape(columns[1][0])}</th>"
    tgt_head = "<th>Target</th>" if with_targets else ""
    rows = []
    for key, label, unit, dec, lower in ROWS:
        vals = [m.get(key) for _, m in columns]
        if all(v is None for v in vals) and not all(key in m for _, m in columns):
            continue  # e.g. insulin in the CGM table
        best_i = None
        nums = [v for v in vals if v is not None]
        if best and lower is not None and len(nums) > 1 and len(set(nums)) > 1:
            target = min(nums) if lower else max(nums)
            best_i = vals.index(target)
        cells = "".join(
            f'<td class="{"best" if i == best_i else ""}">{_fmt(v, dec)}{(" " + unit) if unit and v is not None else ""}'
            f'{_mark(key, v) if with_targets else ""}</td>' for i, v in enumerate(vals))
        if delta:
            if vals[0] is None or vals[1] is None:
                cells += "<td>&ndash;</td>"
            else:
                d = float(vals[0]) - float(vals[1])
                better = None if lower is None or abs(d) < 1e-9 else (d < 0) == lower
                cls = "" if better is None else ("pass" if better else "fail")
                du = " pts" if unit == "%" else ((" " + unit) if unit else "")
                cells += f'<td class="{cls}">{d:+.{dec}f}{du}</td>'
        tgt = f"<td>{_target_text(key)}</td>" if with_targets else ""
        rows.append(f'<tr><td class="l">{label}</td>{tgt}{cells}</tr>')
    return f'<table><tr><th class="l">Metric</th>{tgt_head}{head}</tr>{"".join(rows)}</table>'


def _card(name: str, m: dict, i: int) -> str:
    col = plots.color(name, i)
    kp = [("tir_pct", "TIR 70-180", 1, "%"), ("tbr70_pct", "Below 70", 2, "%"), ("tbr54_pct", "Below 54", 2, "%"),
          ("tar250_pct", "Above 250", 1, "%"), ("mean_mg_dl", "Mean", 0, " mg/dL"), ("gmi_pct", "GMI", 2, "%"),
          ("cv_pct", "CV", 1, "%"), ("gri", "GRI", 1, ""), ("tdi_u", "Insulin", 1, " U/d")]
    items = "".join(
        f'<div class="kpi"><div class="v">{_fmt(m.get(k), d)}{u if m.get(k) is not None else ""}{_mark(k, m.get(k))}'
        f'</div><div class="l">{lab}</div></div>' for k, lab, d, u in kp)
    targets = [meets_target(k, m.get(k)) for k in CONSENSUS_TARGETS]
    met = sum(1 for t in targets if t)
    badge = "pass" if met == len(CONSENSUS_TARGETS) else "fail"
    return (f'<div class="card" style="border-top-color:{col}"><h3 style="color:{col}">{html.escape(name)} '
            f'<span class="badge {badge}">{met}/{len(CONSENSUS_TARGETS)} consensus targets met</span></h3>'
            f'<div class="kpis">{items}</div></div>')


def write_report(out: str | Path) -> Path:
    """Write ``report.html`` and its PNGs into the trial folder ``out``; returns the HTML path."""
    out = Path(out)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    cvga = json.loads((out / "cvga.json").read_text(encoding="utf-8"))
    trial = json.loads((out / "trial.json").read_text(encoding="utf-8")) if (out / "trial.json").exists() else {}
    ctrls = list(summary["controllers"])
    first = summary["controllers"][ctrls[0]]
    groups = [g for g in GROUPS if g in first["groups"]]
    hists, examples = _aggregate_chunks(out, ctrls)
    figs: list[str] = []

    # figures
    for g in groups:
        gi = GROUPS.index(g)
        plots.agp_figure(out / f"agp_{g}.png", GROUP_LABELS[g], {c: hists[c][gi] for c in ctrls})
    pts = {}
    for c in ctrls:
        subs = cvga["controllers"][c]["subjects"]
        pts[c] = (np.array([s["x"] if s["x"] is not None else np.nan for s in subs.values()]),
                  np.array([s["y"] if s["y"] is not None else np.nan for s in subs.values()]))
    plots.cvga_figure(out / "cvga.png", pts)
    bars = []
    for c in ctrls:
        bars.append((f"{c} - all", summary["controllers"][c]["overall"]))
    for g in groups:
        for c in ctrls:
            bars.append((f"{c} - {GROUP_LABELS[g].lower()}", summary["controllers"][c]["groups"][g]))
    plots.time_in_ranges_figure(out / "time_in_ranges.png", bars)
    for g in groups:
        subjects = [s for s in examples[ctrls[0]] if s in first["subjects"] and _group_of(s) == g][:4]
        if subjects:
            plots.traces_figure(out / f"traces_{g}.png", f"Example subjects - {GROUP_LABELS[g]}", subjects,
                                {c: examples[c] for c in ctrls})

    n_subjects = len(first["subjects"])
    days = trial.get("days_simulated", "?")
    title = f"In-silico trial: {html.escape(' vs '.join(ctrls))}"
    sub = (f"Scenario <b>{html.escape(str(summary['scenario']))}</b> &middot; cohort <b>{html.escape(str(trial.get('cohort', '')))}</b> "
           f"({n_subjects} virtual subjects) &middot; {days} day(s) &middot; seed {summary['seed']} &middot; "
           f"glucose metrics on plasma glucose, 5-minute samples")
    if "mpc_solver" in trial:
        sub += f" &middot; MPC solver: {html.escape(str(trial['mpc_solver']))}"

    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>",
             f"<header><h1>{title}</h1><div class='sub'>{sub}</div></header>",
             "<div class='warn'>Virtual patients (UVA/Padova S2008). Research software, not a medical device: "
             "these results do not support dosing decisions for any person.</div><main>"]

    parts.append("<section><h2>Overview</h2><div class='cards'>"
                 + "".join(_card(c, summary["controllers"][c]["overall"], i) for i, c in enumerate(ctrls))
                 + "</div><p class='note'>&#10003; / &#10007;: meets / misses the international consensus target "
                   "(Battelino et al., Diabetes Care 2019).</p></section>")

    parts.append("<section><h2>Glycemic targets: all subjects</h2>"
                 + _metrics_table([(c, summary["controllers"][c]["overall"]) for c in ctrls])
                 + "<p class='note'>Shaded cell: the better controller on that metric. Cohort values pool every "
                   "reading of every subject; insulin is the mean per subject; events are totals.</p></section>")

    parts.append("<section><h2>Time in ranges</h2><img src='time_in_ranges.png' alt='time in ranges'>"
                 "<p class='note'>Dotted line: the 70 % time-in-range target.</p></section>")

    parts.append("<section><h2>Ambulatory glucose profile</h2>"
                 + "".join(f"<img src='agp_{g}.png' alt='AGP {g}'>" for g in groups)
                 + "<p class='note'>Median, 25-75 % and 5-95 % of plasma glucose by time of day (15-minute slots, "
                   "smoothed over 45 minutes). Green band: target range 70-180 mg/dL.</p></section>")

    zone_rows = "".join(
        f"<tr><td class='l'>{z}</td>"
        + "".join(f"<td>{cvga['controllers'][c]['zones']['overall'].get(z, 0)}</td>" for c in ctrls) + "</tr>"
        for z in ZONES)
    parts.append("<section><h2>Control variability grid analysis</h2><div class='grid2'><img src='cvga.png' "
                 "alt='CVGA'><div><table><tr><th class='l'>Zone</th>"
                 + "".join(f"<th>{html.escape(c)}</th>" for c in ctrls) + f"</tr>{zone_rows}</table>"
                 "<p class='note'>One point per subject from its minimum and maximum plasma glucose "
                 "(Magni et al. 2008). A: min &gt; 90 and max &lt; 180 mg/dL; B: min 70-90 and/or max 180-300; "
                 "C: a low below 70 with max &lt; 180 (lower) or max &gt; 300 with min &gt; 90 (upper); "
                 "D and E: failure to control.</p></div></div></section>")

    comp = []
    for g in groups:
        comp.append(f"<h3 style='font-size:14px;margin:12px 0 4px'>{GROUP_LABELS[g]} "
                    f"({len([s for s in first['subjects'] if _group_of(s) == g])} subjects)</h3>")
        comp.append(_metrics_table([(c, summary["controllers"][c]["groups"][g]) for c in ctrls]))
    parts.append("<section><h2>Side-by-side by age group</h2>" + "".join(comp) + "</section>")

    for g in groups:
        if (out / f"traces_{g}.png").exists():
            figs.append(f"<img src='traces_{g}.png' alt='traces {g}'>")
    if figs:
        parts.append("<section><h2>Example subjects</h2>" + "".join(figs)
                     + "<p class='note'>Plasma glucose per controller; purple triangles: carbs eaten (g); "
                       "inverted triangles at the top: boluses (U); below: basal insulin delivered (U/h) per "
                       "controller.</p></section>")

    reasons = sorted({r for c in ctrls for r in summary["controllers"][c]["overall"]["interventions"]})
    if reasons:
        rows = "".join(
            f"<tr><td class='l'>{html.escape(_reason_label(r))}</td>"
            + "".join(f"<td>{summary['controllers'][c]['overall']['interventions'].get(r, 0)}</td>" for c in ctrls)
            + "</tr>" for r in reasons)
        inter = (f"<table><tr><th class='l'>Reason</th>"
                 + "".join(f"<th>{html.escape(c)}</th>" for c in ctrls) + f"</tr>{rows}</table>")
    else:
        inter = "<p>No intervention.</p>"
    parts.append("<section><h2>Safety supervisor interventions</h2>" + inter
                 + "<p class='note'>Number of 5-minute decisions in which the supervisor changed or refused the "
                   "controller's proposal, by reason, summed over all subjects.</p></section>")

    parts.append("<section><h2>Metrics on CGM values</h2>"
                 + _metrics_table([(c, summary["controllers"][c]["overall"]["cgm"]) for c in ctrls])
                 + "<p class='note'>The same metrics on what the sensor reported (noise, lag, gaps), as a clinic "
                   "would see them in a CGM download.</p></section>")

    subj_rows = []
    for s in first["subjects"]:
        cells = ""
        for c in ctrls:
            m = summary["controllers"][c]["subjects"][s]
            z = cvga["controllers"][c]["subjects"][s]["zone"]
            cells += (f"<td>{_fmt(m['tir_pct'], 1)}{_mark('tir_pct', m['tir_pct'])}</td>"
                      f"<td>{_fmt(m['tbr70_pct'], 1)}{_mark('tbr70_pct', m['tbr70_pct'])}</td>"
                      f"<td>{_fmt(m['tbr54_pct'], 1)}</td><td>{_fmt(m['mean_mg_dl'], 0)}</td>"
                      f"<td>{_fmt(m['tdi_u'], 1)}</td><td>{z}</td>")
        subj_rows.append(f"<tr><td class='l'>{html.escape(s)}</td>{cells}</tr>")
        if len(subj_rows) >= 500:
            subj_rows.append(f"<tr><td class='l' colspan='99'>... {n_subjects - 500} more in summary.json</td></tr>")
            break
    head1 = "".join(f"<th colspan='6'>{html.escape(c)}</th>" for c in ctrls)
    head2 = "".join("<th>TIR %</th><th>&lt;70 %</th><th>&lt;54 %</th><th>mean</th><th>U/day</th><th>CVGA</th>"
                    for _ in ctrls)
    parts.append("<section><h2>Every subject</h2><details><summary>Show the per-subject table</summary>"
                 f"<table><tr><th></th>{head1}</tr><tr><th class='l'>Subject</th>{head2}</tr>{''.join(subj_rows)}"
                 "</table></details></section>")

    parts.append("""<section><h2>Definitions</h2><dl class='defs'>
<dt>Time in ranges</dt><dd>Share of 5-minute plasma glucose values in 70-180 mg/dL (TIR), below 70 and 54 (TBR),
above 180 and 250 mg/dL (TAR); consensus targets TIR &gt; 70 %, TBR &lt; 4 % and &lt; 1 %, TAR &lt; 25 % and
&lt; 5 %, CV &le; 36 % (Battelino 2019).</dd>
<dt>GMI</dt><dd>3.31 + 0.02392 &times; mean glucose (mg/dL) (Bergenstal 2018).</dd>
<dt>LBGI / HBGI</dt><dd>Kovatchev risk: f = 1.509 ((ln G)<sup>1.084</sup> &minus; 5.381), r = 10 f<sup>2</sup>;
mean of r over readings with f &lt; 0 (LBGI) and f &gt; 0 (HBGI).</dd>
<dt>GRI</dt><dd>3.0 &times; %&lt;54 + 2.4 &times; %54-69 + 1.6 &times; %&gt;250 + 0.8 &times; %181-250, capped at 100
(Klonoff 2022).</dd>
<dt>Hypoglycemia event</dt><dd>At least 15 consecutive minutes below 54 mg/dL; it ends after 15 minutes at or above
54 mg/dL.</dd>
<dt>CVGA</dt><dd>Control variability grid (Magni 2008): minimum versus maximum glucose of each subject.</dd>
<dt>Therapy settings</dt><dd>Each subject's pump is programmed from its clinic data (basal rate, correction factor,
carb ratio, total daily insulin) with the age group's limits; controllers never see the model's parameters.</dd>
</dl></section>""")
    parts.append("</main><footer>twinloop in-silico trial report &middot; files: summary.json, cvga.json, "
                 "trial.json, traces/</footer></body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _group_of(name: str) -> str:
    base = name.split("#", 1)[0]
    return base[4:] if base.startswith("pop-") else base


def _reason_label(name: str) -> str:
    try:
        from safety.supervisor import Reason

        return f"{Reason[name].value} ({name})"
    except (ImportError, KeyError):
        return name
