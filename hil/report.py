"""Checks and the report of a bench run: acceptance checks, glycemic metrics, every fault with the system's response
and how long it took, and the end-to-end latency histogram (CGM emission -> command received by the pump).

Writes ``report.json``, ``report.png`` and ``report.html`` into the output directory.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

CGM_LOSS_BUDGET_MIN = 20.0
INSULIN_COMMANDS = ("temp_basal", "bolus")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def pump_entries(run: Any) -> list[dict]:
    """The pump's history as plain dicts: command_id, kind, start_min, end_min, amount_u, rate_u_per_h."""
    out = []
    for e in run.pump_history:
        if isinstance(e, dict):
            out.append(e)
            continue
        kind = getattr(e.kind, "name", str(e.kind)).lower()
        out.append({"command_id": e.command_id, "kind": kind, "start_min": e.start_min, "end_min": e.end_min,
                    "amount_u": e.amount_mu / 1000.0,
                    "rate_u_per_h": None if e.rate_mu_per_h is None else e.rate_mu_per_h / 1000.0})
    return out


def journal_entries(events: list) -> list[dict]:
    """Deliveries the pump confirmed, from the journal (for transports whose pump history has no command ids)."""
    best: dict[str, dict] = {}
    for ev in events:
        if ev.kind in ("ack", "delivery"):
            d = ev.payload.get("delivery") or {}
            if d.get("status") == "confirmed":
                best[d["command_id"]] = d
    return [{"command_id": d["command_id"], "kind": d["kind"], "start_min": d["start_min"], "end_min": d["end_min"],
             "amount_u": d["amount_u"], "rate_u_per_h": d.get("rate_u_per_h")} for d in best.values()]


def load_events(journal_path: Path) -> tuple[list, dict]:
    from safety.journal import Journal
    j = Journal(journal_path)
    try:
        report = j.verify()
        events = list(j.events())
    finally:
        j.close()
    return events, {"ok": bool(report.ok), "n_events": report.n_events, "reason": report.reason,
                    "first_bad_seq": report.first_bad_seq}


def _cmd_type(payload: dict) -> str:
    return str((payload.get("command") or {}).get("command", {}).get("type", ""))


def _cmd_id(payload: dict) -> str:
    return str((payload.get("command") or {}).get("command_id", ""))


# --------------------------------------------------------------------------------------------------- checks

def check_uncertain(events: list) -> dict:
    """No insulin command (temp basal or bolus) sent while any delivery is uncertain."""
    commanded: set[str] = set()
    uncertain: set[str] = set()
    violations = []
    episodes = 0
    for ev in events:
        p = ev.payload
        if ev.kind == "start":
            uncertain |= commanded  # sent but never answered before the process died
            commanded.clear()
        elif ev.kind == "command_sent":
            if uncertain and _cmd_type(p) in INSULIN_COMMANDS:
                violations.append({"seq": ev.seq, "t_min": ev.t_min, "command": _cmd_id(p),
                                   "uncertain": sorted(uncertain)})
            commanded.add(_cmd_id(p))
        elif ev.kind in ("ack", "delivery"):
            d = p.get("delivery") or {}
            cid, status = d.get("command_id", ""), d.get("status")
            commanded.discard(cid)
            if status == "uncertain":
                if not uncertain:
                    episodes += 1
                uncertain.add(cid)
            elif status in ("confirmed", "failed"):
                uncertain.discard(cid)
    return {"ok": not violations, "violations": violations[:20], "uncertain_episodes": episodes,
            "unresolved_at_end": sorted(uncertain)}


def basal_time_after(entries: list[dict], t_from: float, scheduled: float) -> float | None:
    """First time >= t_from at which no temporary basal or suspension is running on the pump."""
    basal = sorted((e for e in entries if e["kind"] == "basal"), key=lambda e: e["start_min"])
    candidates = sorted({t_from} | {e["end_min"] for e in basal if e["end_min"] >= t_from}
                        | {e["start_min"] for e in basal if e["start_min"] >= t_from})
    for t in candidates:
        current = [e for e in basal if e["start_min"] <= t]
        if not current:
            return t
        last = current[-1]
        if last["end_min"] <= t or (last["end_min"] == last["start_min"]):
            return t
        if last.get("rate_u_per_h") is not None and abs(last["rate_u_per_h"] - scheduled) < 1e-6:
            return t
    return None


def check_cgm_loss(run: Any, entries: list[dict], horizon_min: float) -> dict:
    """Every gap of the sensor longer than 25 min: scheduled basal within 20 min of the loss (first missed sample)."""
    times = sorted(p["t_min"] for p in run.pushes.values())
    sample = run.patient.sample_time_min
    episodes = []
    for a, b in zip(times, times[1:] + [horizon_min]):
        if b - a <= CGM_LOSS_BUDGET_MIN + sample:
            continue
        t_loss = a + sample
        if t_loss + CGM_LOSS_BUDGET_MIN > horizon_min:
            continue
        t_basal = basal_time_after(entries, t_loss, run.pump_scheduled_basal_u_per_h)
        delay = None if t_basal is None else max(0.0, t_basal - t_loss)
        episodes.append({"last_reading_min": a, "loss_min": t_loss, "next_reading_min": b if b < horizon_min else None,
                         "basal_min": t_basal, "delay_min": delay,
                         "ok": delay is not None and delay <= CGM_LOSS_BUDGET_MIN})
    return {"ok": all(e["ok"] for e in episodes), "episodes": episodes, "count": len(episodes)}


def check_journal(run: Any, events: list, chain: dict, entries: list[dict], horizon_min: float) -> dict:
    sent = {_cmd_id(ev.payload) for ev in events if ev.kind == "command_sent"}
    at_pump = [e["command_id"] for e in entries if e["command_id"]]
    not_journaled = sorted(set(at_pump) - sent)
    executed = getattr(run, "pump_executed", None)
    if executed is not None and executed > len(sent):  # BLE: more executions than journaled commands
        not_journaled.append(f"{executed - len(sent)} executions without a journaled command")
    journaled_seq = {ev.payload.get("sequence") for ev in events if ev.kind in ("reading", "reading_duplicate")}
    expected = [s for s, p in run.pushes.items() if p["t_min"] <= horizon_min - 15]
    missing = sorted(s for s in expected if s not in journaled_seq)
    ok = chain["ok"] and not not_journaled and not missing
    return {"ok": ok, "chain": chain, "commands_at_pump_not_journaled": not_journaled,
            "readings_pushed": len(run.pushes), "readings_missing_from_journal": missing[:50],
            "n_missing": len(missing), "events": len(events)}


def check_double_delivery(events: list, entries: list[dict], pump_bolus_total_u: float | None = None) -> dict:
    ids = [e["command_id"] for e in entries if e["command_id"]]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    confirmed = {}
    for ev in events:
        if ev.kind in ("ack", "delivery"):
            d = ev.payload.get("delivery") or {}
            if d.get("status") == "confirmed":
                confirmed[d.get("command_id")] = d
    boluses = [e for e in entries if e["kind"] == "bolus" and e["amount_u"] > 0]
    unknown = [e["command_id"] for e in boluses if e["command_id"] not in confirmed]
    pump_total = sum(e["amount_u"] for e in boluses) if pump_bolus_total_u is None else pump_bolus_total_u
    journal_total = sum(float(d.get("amount_u", 0.0)) for d in confirmed.values() if d.get("kind") == "bolus")
    if pump_total > journal_total + 0.01:
        unknown.append(f"pump delivered {pump_total:.2f} U of bolus, the journal knows {journal_total:.2f} U")
    return {"ok": not dup and not unknown, "executed_twice": dup, "boluses_unknown_to_runtime": unknown,
            "pump_bolus_total_u": round(pump_total, 3), "journal_confirmed_bolus_total_u": round(journal_total, 3)}


# --------------------------------------------------------------------------------------------------- metrics

def glycemic(values: list[float]) -> dict:
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return {}
    n = len(v)
    mean = sum(v) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / n)
    return {"mean_mg_dl": round(mean, 1), "sd_mg_dl": round(sd, 1), "cv_pct": round(100 * sd / mean, 1),
            "tir_70_180_pct": round(100 * sum(70 <= x <= 180 for x in v) / n, 1),
            "tbr_70_pct": round(100 * sum(x < 70 for x in v) / n, 2),
            "tbr_54_pct": round(100 * sum(x < 54 for x in v) / n, 2),
            "tar_180_pct": round(100 * sum(x > 180 for x in v) / n, 1),
            "tar_250_pct": round(100 * sum(x > 250 for x in v) / n, 1),
            "min_mg_dl": round(min(v), 1), "max_mg_dl": round(max(v), 1), "minutes": n}


def latencies(run: Any, events: list) -> dict:
    samples = []
    received = getattr(run, "pump_received_list", None)
    if received is not None:  # BLE: no command ids at the pump; the first command after a reading's emission
        cmd_seqs = {ev.payload.get("reading_sequence") for ev in events
                    if ev.kind == "command_sent" and ev.payload.get("trigger") == "reading"}
        pushes = sorted(run.pushes.items(), key=lambda kv: kv[1]["mono"])
        for i, (seq, p) in enumerate(pushes):
            if seq not in cmd_seqs:
                continue
            nxt = pushes[i + 1][1]["mono"] if i + 1 < len(pushes) else float("inf")
            first = next((r for r in received if p["mono"] <= r < nxt), None)
            if first is not None:
                samples.append((first - p["mono"]) * 1e3)
    for ev in events:
        if ev.kind != "command_sent" or received is not None:
            continue
        seq = ev.payload.get("reading_sequence")
        cid = _cmd_id(ev.payload)
        push = run.pushes.get(seq) if seq is not None else None
        recv = run.pump_received.get(cid)
        if push is None or recv is None or ev.payload.get("trigger") != "reading":
            continue
        if abs(ev.payload.get("reading_t_min", push["t_min"]) - push["t_min"]) > 1e-6:
            continue
        samples.append((recv - push["mono"]) * 1e3)
    # keep the first command of each reading (the one the reading caused first)
    cycle_totals = [ev.payload["latency_ms"]["total"] for ev in events
                    if ev.kind == "cycle" and ev.payload.get("trigger") == "reading" and ev.payload.get("commands")]
    return {"samples_ms": [round(x, 3) for x in samples], "count": len(samples),
            "p50_ms": _r(_pct(samples, 50)), "p99_ms": _r(_pct(samples, 99)), "max_ms": _r(max(samples, default=None)),
            "runtime_cycle_p50_ms": _r(_pct(cycle_totals, 50)), "runtime_cycle_p99_ms": _r(_pct(cycle_totals, 99))}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


# --------------------------------------------------------------------------------------------------- faults

def fault_responses(run: Any, events: list, cgm_loss: dict) -> list[dict]:
    out = []
    readings = [(ev.t_min, ev.payload) for ev in events if ev.kind == "reading"]
    for f in run.faults:
        item = {"kind": f.kind, "t_min": f.t_min, "duration_min": f.duration_min, "params": f.params,
                "response": None, "response_min": None, "ok": True}
        if f.kind == "cgm_dropout":
            ep = next((e for e in cgm_loss["episodes"] if e["last_reading_min"] <= f.t_min <= e["loss_min"] + 5), None)
            if ep:
                item.update(response=f"scheduled basal at t={ep['basal_min']}", response_min=ep["delay_min"],
                            ok=ep["ok"])
        elif f.kind == "cgm_lost":
            window = [p for p in run.pushes.values() if f.t_min <= p["t_min"] < f.t_min + max(5, f.duration_min)]
            first = min((t for t, p in readings if f.t_min <= p.get("t_min", -1) < f.t_min + max(5, f.duration_min)),
                        default=None)
            got = [p for t, p in readings if f.t_min <= p.get("t_min", -1) < f.t_min + max(5, f.duration_min)]
            item.update(response=f"{len(got)}/{len(window)} lost readings back-filled",
                        response_min=None if first is None else round(first - f.t_min, 2),
                        ok=len(got) >= len(window))
        elif f.kind in ("corruption", "disconnect", "pump_delay", "occlusion"):
            end = f.end_min
            nxt = min((t for t, p in readings if t >= end), default=None)
            during = [t for t, p in readings if f.t_min <= t < end]
            text = f"{len(during)} readings during the fault; next reading {None if nxt is None else round(nxt - end, 2)} min after it ended"
            if f.kind == "occlusion":
                alarm = min((ev.t_min for ev in events if ev.kind == "alarm" and ev.t_min >= f.t_min
                             and "occlu" in json.dumps(ev.payload).lower()), default=None)
                text = f"occlusion alarm at t={alarm}" if alarm is not None else "no occlusion alarm"
                item.update(response=text, response_min=None if alarm is None else round(alarm - f.t_min, 2),
                            ok=alarm is not None)
            elif f.kind == "pump_delay":
                acks = [ev for ev in events if ev.kind in ("ack", "delivery") and f.t_min <= ev.t_min < end]
                conf = sum(1 for ev in acks if (ev.payload.get("delivery") or {}).get("status") == "confirmed")
                item.update(response=f"{conf}/{len(acks)} commands confirmed while delayed; " + text,
                            response_min=None)
            else:
                item.update(response=text, response_min=None if nxt is None else round(nxt - end, 2),
                            ok=nxt is not None)
        elif f.kind == "pump_lost":
            unc = min((ev.t_min for ev in events if ev.kind == "delivery" and ev.t_min >= f.t_min
                       and (ev.payload.get("delivery") or {}).get("status") == "uncertain"), default=None)
            rec = None if unc is None else min(
                (ev.t_min for ev in events if ev.kind == "delivery" and ev.t_min >= unc and ev.payload.get("reconciled")),
                default=None)
            item.update(response=f"uncertain at t={unc}, reconciled at t={rec}",
                        response_min=None if rec is None else round(rec - f.t_min, 2), ok=unc is not None and rec is not None)
        elif f.kind == "kill":
            kill = next((k for k in run.kills if abs(k["t_min"] - f.t_min) <= 1.01), None)
            if kill is not None:
                restart = kill.get("restarted_t_min")
                starts = [ev.t_min for ev in events if ev.kind == "start" and restart is not None and ev.t_min >= restart - 1]
                first_cycle = min((ev.t_min for ev in events if ev.kind == "cycle" and starts and ev.t_min >= starts[0]),
                                  default=None)
                item.update(response=f"killed (exit {kill['exit_code']}), restarted at t={restart}, journal restored "
                                     f"at t={starts[0] if starts else None}, first cycle at t={first_cycle}",
                            response_min=None if first_cycle is None else round(first_cycle - f.t_min, 2),
                            ok=bool(starts) and first_cycle is not None)
        out.append(item)
    return out


# --------------------------------------------------------------------------------------------------- all

def analyse(run: Any) -> dict:
    horizon = run.options.hours * 60.0
    events, chain = load_events(run.journal_path)
    entries = pump_entries(run) if run.pump_history else journal_entries(events)
    cgm_loss = check_cgm_loss(run, entries, horizon)
    checks = {
        "no_crashes": {"ok": not run.crashes and (run.runtime_exit_codes[-1:] == [0]),
                       "crashes": run.crashes, "exit_codes": run.runtime_exit_codes,
                       "cycle_errors": sum(1 for ev in events if ev.kind == "cycle" and ev.payload.get("error"))},
        "journal_complete": check_journal(run, events, chain, entries, horizon),
        "no_insulin_while_uncertain": check_uncertain(events),
        "basal_within_20_min_of_cgm_loss": cgm_loss,
        "no_double_delivery": check_double_delivery(events, entries, getattr(run, "pump_bolus_total_u", None)),
    }
    kinds_injected = sorted({f.kind for f in run.faults if f.injected_mono is not None})
    lat = latencies(run, events)
    result = {
        "transport": run.options.transport,
        "runtime_process": "separate process (python -m twinloop run)",
        "runtime_pids": list(getattr(run, "runtime_pids", [])),
        "subject": run.options.subject, "scenario": run.options.scenario, "hours": run.options.hours,
        "speed": run.options.speed, "controller": run.options.controller, "real_s": round(run.real_s, 1),
        "passed": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "faults_injected": kinds_injected,
        "faults": fault_responses(run, events, cgm_loss),
        "glycemic_bg": glycemic(run.patient.trace.bg_mg_dl),
        "glycemic_cgm": glycemic(run.patient.trace.cgm_mg_dl),
        "latency": lat,
        "meals": run.meals,
        "kills": run.kills,
        "notes": run.notes,
        "journal_events": len(events),
        "pump_commands": len(entries),
    }
    return result


def write(result: dict, run: Any, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "png": out_dir / "report.png", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(result, indent=2, default=str))
    try:
        _plot(result, run, paths["png"])
    except Exception as exc:  # the figure is a convenience; the JSON is the record
        result.setdefault("notes", []).append(f"figure not drawn: {exc}")
        paths.pop("png")
    paths["html"].write_text(_html(result, "report.png" if "png" in paths else None))
    return paths


def _plot(result: dict, run: Any, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = run.patient.trace
    fig, axes = plt.subplots(3, 1, figsize=(11, 9), gridspec_kw={"height_ratios": [3, 1.2, 1.6]})
    ax = axes[0]
    ax.plot([t / 60 for t in tr.t_min], tr.bg_mg_dl, lw=1, label="plasma glucose")
    ax.plot([t / 60 for t in tr.cgm_t_min], tr.cgm_mg_dl, ".", ms=3, label="CGM")
    ax.axhspan(70, 180, color="green", alpha=0.07)
    for f in result["faults"]:
        ax.axvspan(f["t_min"] / 60, (f["t_min"] + max(f["duration_min"], 2)) / 60, color="red", alpha=0.15)
        ax.text(f["t_min"] / 60, ax.get_ylim()[1] * 0.97, f["kind"], rotation=90, fontsize=7, va="top")
    ax.set_ylabel("mg/dL")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"HIL {result['transport']}: {result['subject']} / {result['scenario']}, {result['hours']} h at "
                 f"{result['speed']}x, controller {result['controller']}")
    axes[1].step([t / 60 for t in tr.t_min], [u * 60 for u in tr.insulin_u], where="post", lw=0.8)
    axes[1].set_ylabel("insulin U/h\n(per-minute)")
    axes[1].set_xlabel("simulated hours")
    lat = result["latency"]["samples_ms"]
    if lat:
        axes[2].hist(lat, bins=40)
    axes[2].set_xlabel("CGM emission -> command received by the pump (ms)")
    axes[2].set_ylabel("commands")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _html(result: dict, png: str | None) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(k)}</td><td class={'ok' if v['ok'] else 'bad'}>{'PASS' if v['ok'] else 'FAIL'}</td>"
                   f"<td><code>{e(json.dumps({x: y for x, y in v.items() if x != 'ok'}, default=str)[:600])}</code>"
                   f"</td></tr>" for k, v in result["checks"].items())
    frows = "".join(f"<tr><td>{e(f['kind'])}</td><td>{f['t_min']}</td><td>{f['duration_min']}</td>"
                    f"<td>{e(str(f['response']))}</td><td>{f['response_min']}</td>"
                    f"<td class={'ok' if f['ok'] else 'bad'}>{'ok' if f['ok'] else 'NO'}</td></tr>"
                    for f in result["faults"])
    lat = result["latency"]
    g = result["glycemic_bg"]
    img = f'<img src="{png}" width="900">' if png else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>twinloop HIL report</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px}}
table{{border-collapse:collapse}}.ok{{color:green}}.bad{{color:#b00;font-weight:bold}}</style></head><body>
<h1>HIL run: {e(result['transport'])} ({e(result['runtime_process'])}) &mdash;
<span class={'ok' if result['passed'] else 'bad'}>{'PASSED' if result['passed'] else 'FAILED'}</span></h1>
<p>{e(result['subject'])}, scenario {e(result['scenario'])}, {result['hours']} simulated hours at {result['speed']}x
({result['real_s']} s real), controller {e(result['controller'])}; {result['journal_events']} journal events,
{result['pump_commands']} pump commands.</p>
<h2>Acceptance checks</h2><table><tr><th>check</th><th></th><th>detail</th></tr>{rows}</table>
<h2>Glycemic metrics (plasma glucose)</h2><p><code>{e(json.dumps(g))}</code></p>
<h2>Faults and responses</h2><table><tr><th>fault</th><th>t (min)</th><th>duration</th><th>response</th>
<th>response time (min)</th><th></th></tr>{frows}</table>
<h2>Latency: CGM emission &rarr; command received by the pump</h2>
<p>{lat['count']} commands: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms
(runtime cycle p50 {lat['runtime_cycle_p50_ms']} ms, p99 {lat['runtime_cycle_p99_ms']} ms)</p>
{img}</body></html>"""
