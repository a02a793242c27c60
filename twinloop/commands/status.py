"""``twinloop status``: what the running loop knows, from its control socket."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("status", help="show the running loop's state (last reading, IOB, last command, ...)")
    from twinloop.runtime.control_socket import add_client_arguments
    add_client_arguments(p)
    p.set_defaults(handler=run)


def _fmt(st: dict) -> str:
    lines = []
    r = st.get("last_reading")
    lines.append("last reading:   " + (f"{r['glucose_mg_dl']} mg/dL, {r['age_min']:.1f} min ago" if r else "none"))
    iob = st.get("iob_u")
    lines.append("insulin on board: " + (f"{iob:.2f} U" if iob is not None else "unknown"))
    c = st.get("last_command")
    if c:
        cmd = c.get("command") or {}
        what = ", ".join(f"{k}={v}" for k, v in cmd.items() if k != "type")
        lines.append(f"last command:   {cmd.get('type', '?')} {what} ({c['command_id']}) -> {c['status']}")
    else:
        lines.append("last command:   none")
    if st.get("uncertain_deliveries"):
        lines.append(f"UNCERTAIN deliveries (no insulin until reconciled): {', '.join(st['uncertain_deliveries'])}")
    tir = st.get("tir_24h")
    lines.append("time in range 24 h: " + (f"{100 * tir:.1f}% of {st.get('readings_24h')} readings" if tir is not None
                                          else "no readings"))
    lat = st.get("latency")
    if lat:
        lines.append(f"decision latency: last {lat['last_ms']:.1f} ms, p50 {lat['p50_ms']:.1f} ms, "
                     f"p99 {lat['p99_ms']:.1f} ms over {lat['cycles']} cycles")
    stages = st.get("last_cycle_stages_ms")
    if stages:
        lines.append("last cycle stages (ms): " + ", ".join(
            f"{k} {v:.1f}" for k, v in stages.items() if isinstance(v, (int, float)) and k != "t_min"))
    lines.append(f"automatic dosing: {'on' if st.get('automatic_dosing') else 'REFUSED (operator action needed)'}"
                 f", journal {'ok' if st.get('journal_ok') else 'FAILING'}"
                 f", pump {'reachable' if st.get('pump_reachable') else 'NOT reachable'}"
                 f", controller {st.get('controller')}")
    devices = st.get("devices") or {}
    if devices:
        lines.append("devices: " + ", ".join(f"{k} {v}" for k, v in sorted(devices.items())))
    alarms = st.get("alarms") or []
    lines.append(f"alarms: {len(alarms)}" + "".join(f"\n  t={a['t_min']:.1f} [{a['source']}] {a['message']}"
                                                     for a in alarms))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from twinloop.runtime.control_socket import call
    code, reply = call(args, {"op": "status"})
    if code == 0 and reply and not args.json:
        print(_fmt(reply["status"]))
    return code
