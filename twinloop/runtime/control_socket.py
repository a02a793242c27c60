"""The local control socket: ``status``, ``meal N`` and ``bolus U`` from the command line to the running service.

A Unix stream socket (mode 0660, optionally chgrp'ed to the service group, so only the service's user and group can
connect). One JSON object per line each way::

    -> {"op": "status"}                    <- {"ok": true, "status": {...}}
    -> {"op": "meal", "carbs_g": 45}       <- {"ok": true, "meal": {...}, "verdict": {...}}
    -> {"op": "bolus", "bolus_u": 2.0}     <- {"ok": true, "verdict": {...}, "deliveries": [...]}
    bad input                              <- {"ok": false, "error": "..."}

Every meal and bolus request becomes a cycle of the loop, so it passes the supervisor like any other command.
"""

from __future__ import annotations

import asyncio
import grp
import json
import logging
import math
import os
import socket
from pathlib import Path
from typing import Any

from twinloop.runtime.kernel import to_jsonable

log = logging.getLogger("twinloop.control")

MAX_REQUEST_BYTES = 4096
MAX_CARBS_G = 250.0


class RequestError(ValueError):
    """A bad request (named field, value)."""


def _positive(req: dict, key: str, upper: float) -> float:
    value = req.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"{key} must be a number, got {value!r}")
    if not 0 < value <= upper:
        raise RequestError(f"{key} must be in (0, {upper}], got {value!r}")
    return float(value)


def _cycle_reply(result: Any) -> dict:
    verdict = result.verdict
    return {
        "ok": result.error is None,
        "error": result.error,
        "verdict": None if verdict is None else {
            "commands": to_jsonable(verdict.commands), "interventions": list(verdict.interventions),
            "alarms": list(verdict.alarms), "fallback": verdict.fallback},
        "deliveries": to_jsonable(result.deliveries),
    }


async def handle_request(runtime: Any, req: Any) -> dict:
    """Answer one decoded request."""
    if not isinstance(req, dict):
        raise RequestError("request must be a JSON object")
    op = req.get("op")
    if op == "status":
        return {"ok": True, "status": runtime.status()}
    if op == "meal":
        carbs = _positive(req, "carbs_g", MAX_CARBS_G)
        result = await runtime.request_meal(carbs)
        reply = _cycle_reply(result)
        reply["meal"] = {"carbs_g": carbs, "t_min": result.now_min}
        return reply
    if op == "bolus":
        # above max_bolus the supervisor caps it and says so; absurd numbers are refused here
        bolus = _positive(req, "bolus_u", 10 * float(runtime.settings.max_bolus_u))
        return _cycle_reply(await runtime.request_bolus(bolus))
    raise RequestError(f"unknown op {op!r} (status, meal, bolus)")


class ControlServer:
    """Serves the control socket for a :class:`twinloop.runtime.loop.Runtime`."""

    def __init__(self, runtime: Any, path: str | Path, mode: int = 0o660, group: str | None = None) -> None:
        self.runtime = runtime
        self.path = Path(path)
        self.mode = mode
        self.group = group
        self._server: asyncio.AbstractServer | None = None
        self.requests = 0

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        old = os.umask(0o777 & ~self.mode)  # the socket is never reachable with wider permissions
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, self.mode)
        if self.group:
            try:
                os.chown(self.path, -1, grp.getgrnam(self.group).gr_gid)
            except (KeyError, PermissionError) as exc:
                log.warning("control socket: cannot give group %r access: %s", self.group, exc)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), 30.0)
                except (asyncio.TimeoutError, ValueError, ConnectionError):
                    break
                if not line:
                    break
                self.requests += 1
                if len(line) > MAX_REQUEST_BYTES:
                    reply: dict = {"ok": False, "error": "request too long"}
                else:
                    try:
                        reply = await handle_request(self.runtime, json.loads(line))
                    except (RequestError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                        reply = {"ok": False, "error": str(exc)}
                    except Exception as exc:  # never take the service down
                        log.exception("control request failed")
                        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write(json.dumps(reply, default=str).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()


def request(path: str | Path, payload: dict, timeout_s: float = 10.0) -> dict:
    """Client side (blocking): send one request, return the decoded reply. Raises OSError when unreachable."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(json.dumps(payload).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    if not buf:
        raise ConnectionError(f"no reply from {path}")
    return json.loads(buf)


DEFAULT_SOCKET = "/run/twinloop/control.sock"


def add_client_arguments(parser: Any) -> None:
    """``--config`` / ``--socket`` / ``--json`` for the status, meal and bolus commands."""
    parser.add_argument("--config", help="board configuration (its [control] socket is used)")
    parser.add_argument("--socket", help=f"control socket path (default: from --config, else {DEFAULT_SOCKET})")
    parser.add_argument("--json", action="store_true", help="print the raw JSON reply")


def socket_path(args: Any) -> str:
    if getattr(args, "socket", None):
        return args.socket
    if getattr(args, "config", None):
        from twinloop.runtime.config import load
        return load(args.config).control.socket
    return DEFAULT_SOCKET


def call(args: Any, payload: dict) -> tuple[int, dict | None]:
    """Send one request for a CLI command; print errors; return (exit status, reply)."""
    import sys
    from twinloop.runtime.config import ConfigError
    try:
        path = socket_path(args)
    except ConfigError as exc:
        print(f"twinloop: {exc}", file=sys.stderr)
        return 2, None
    try:
        reply = request(path, payload)
    except PermissionError:
        print(f"twinloop: permission denied on {path} (run as the service user or a member of its group)",
              file=sys.stderr)
        return 1, None
    except (OSError, ValueError) as exc:
        print(f"twinloop: cannot reach the runtime at {path}: {exc} (is `twinloop run` / the service running?)",
              file=sys.stderr)
        return 1, None
    if getattr(args, "json", False):
        print(json.dumps(reply, indent=2, default=str))
    if not reply.get("ok"):
        if not getattr(args, "json", False):
            print(f"twinloop: refused: {reply.get('error')}", file=sys.stderr)
        return 1 if reply.get("verdict") else 2, reply
    return 0, reply


def describe_verdict(reply: dict) -> str:
    """One human line per approved command, intervention and alarm."""
    lines = []
    verdict = reply.get("verdict") or {}
    deliveries = {d.get("command_id"): d for d in reply.get("deliveries") or [] if isinstance(d, dict)}
    for cmd in verdict.get("commands") or []:
        c = cmd.get("command", {}) if isinstance(cmd, dict) else {}
        d = deliveries.get(cmd.get("command_id")) if isinstance(cmd, dict) else None
        what = ", ".join(f"{k}={v}" for k, v in c.items() if k != "type")
        lines.append(f"approved {c.get('type', '?')} {what} -> {d.get('status') if d else 'not sent'}")
    if not verdict.get("commands"):
        lines.append("no command approved")
    for i in verdict.get("interventions") or []:
        lines.append(f"supervisor: {i}")
    for a in verdict.get("alarms") or []:
        lines.append(f"ALARM: {a}")
    if verdict.get("fallback"):
        lines.append(f"fallback: {verdict['fallback']}")
    return "\n".join(lines)
