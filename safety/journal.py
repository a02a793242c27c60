"""The journal: an append-only, hash-chained event log in SQLite that loses nothing and detects damage.

Storage: SQLite in WAL mode with ``synchronous=FULL`` (an event is durable when :meth:`Journal.append` returns its
sequence number) and automatic checkpoints disabled, so the main database file changes only in
:meth:`Journal.checkpoint` (also run by :meth:`Journal.close`, and every ``checkpoint_every`` appends).

Integrity, four layers, all checked by :meth:`Journal.open` and :meth:`Journal.verify`:

1. *Hash chain*: ``hash_n = sha256(prev_hash, seq, kind, t_min, payload)``; the genesis ``prev_hash`` derives from a
   random chain id stored in the file. Any change to an event, a removed or reordered event breaks the chain at the
   first bad event (:class:`JournalCorruptError.first_bad_seq`).
2. ``PRAGMA integrity_check`` (b-tree and page structure).
3. *Seal*: after each checkpoint the whole main file's SHA-256, size, last seq and last hash are written to
   ``<path>.seal`` (atomically, after first marking the seal "unsealed" so a crash mid-checkpoint is recognised).
   Since nothing else writes the main file, a one-byte change anywhere in it - including free pages and unused
   space the first two layers cannot see - is detected on open. Events appended after the last checkpoint live in
   the WAL and are covered by the chain (and SQLite's WAL frame checksums).

A journal that fails verification is *not* opened silently: :attr:`Journal.refuse_automatic_dosing` is True and
:attr:`Journal.corruption` says what failed; new events are still recorded, in a separate chained journal
``<path>.pending``; :meth:`Journal.acknowledge_corruption` (an operator's decision) archives the damaged files to
``<path>.corrupt-N/``, starts a new chain whose first event (``journal_reset``) records the operator and the
report, and carries the pending events over. Nothing is dropped.

Event kinds used by :meth:`Journal.restore` (payloads use :mod:`safety.serialization`):

==================  ==========================================================================================
kind                payload
==================  ==========================================================================================
reading             a ``reading``
meal                a ``meal``
decision            ``{"snapshot": snapshot, "proposal": proposal, "controller_state": {...}}``
verdict             ``Verdict.to_dict()`` (holds ``state``, the supervisor state after the decision)
command_sent        ``{"command": approved_command, "delivery": delivery (COMMANDED)}``; journal it *before*
                    transmitting, so every command that may have reached the pump is known after a crash
ack                 ``{"delivery": delivery (CONFIRMED or FAILED)}`` from the pump's answer
delivery            ``{"delivery": delivery}`` reconciled from the pump's history (any status)
controller_state    ``{"state": {...}}``
alarm               ``{"reason": ..., "message": ..., "severity": ...}``
settings_change     ``{"settings": settings}``
journal_reset       written by :meth:`Journal.acknowledge_corruption`
==================  ==========================================================================================

Any other non-empty kind is stored and chained but ignored by :meth:`Journal.restore`. One process writes a journal.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import sqlite3
import struct
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from safety.commands import ApprovedCommand, DeliveryRecord, DeliveryStatus
from safety.errors import JournalCorruptError, JournalError
from safety.serialization import from_jsonable, to_jsonable

__all__ = ["Journal", "JournalCorruptError", "Event", "ChainReport", "RestoredState", "canonical_json"]

_FORMAT = "twinloop-journal-v1"
_RESTORE_WINDOW_MIN = 1440.0


def _canon(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    if isinstance(x, Mapping):
        return {str(k): _canon(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_canon(v) for v in x]
    return x


def canonical_json(payload: Any) -> str:
    """The exact text stored and hashed for a payload (sorted keys, no spaces, non-finite floats as strings)."""
    return json.dumps(_canon(payload), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _event_hash(prev_hash: str, seq: int, kind: str, t_min: float, payload_text: str) -> str:
    h = hashlib.sha256()
    h.update(f"{prev_hash}\n{seq}\n{kind}\n{float(t_min)!r}\n".encode())
    h.update(payload_text.encode())
    return h.hexdigest()


def _file_sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, sort_keys=True))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _wal_problem(wal: Path) -> str | None:
    """Check every complete frame of a SQLite WAL file: header checksum, salts and the cumulative frame checksum.

    SQLite silently ignores a damaged frame *and every frame after it*, so without this check a one-byte error in
    the WAL would lose the events committed since the last checkpoint without any trace. A WAL written by this
    journal is truncated at each checkpoint, so every complete frame must belong to the current generation. An
    incomplete last frame (a crash while writing it) is not an error.
    """
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) < 32:
        return None
    magic, version, page_size, _, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:32])
    if len(data) < 32 + 24 + 512:
        return None  # not even the smallest frame: a crash while the WAL was being started
    if magic not in (0x377F0682, 0x377F0683):
        return "WAL header damaged (magic)"
    order = ">" if magic & 1 else "<"

    def checksum(buf: bytes, s0: int, s1: int) -> tuple[int, int]:
        words = struct.unpack(f"{order}{len(buf) // 4}I", buf)
        for i in range(0, len(words), 2):
            s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
            s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
        return s0, s1

    s0, s1 = checksum(data[:24], 0, 0)
    if (s0, s1) != (c1, c2) or version != 3007000 or page_size < 512 or page_size & (page_size - 1):
        return "WAL header damaged (checksum, version or page size)"
    frame = 24 + page_size
    for i, off in enumerate(range(32, len(data) - frame + 1, frame)):
        _, _, f_salt1, f_salt2, f_c1, f_c2 = struct.unpack(">6I", data[off:off + 24])
        if (f_salt1, f_salt2) != (salt1, salt2):
            return f"WAL frame {i} damaged (salt mismatch)"
        s0, s1 = checksum(data[off:off + 8], s0, s1)
        s0, s1 = checksum(data[off + 24:off + frame], s0, s1)
        if (s0, s1) != (f_c1, f_c2):
            return f"WAL frame {i} damaged (checksum mismatch)"
    return None


@dataclass(frozen=True, slots=True)
class Event:
    """One journal event."""

    seq: int
    kind: str
    t_min: float
    payload: dict[str, Any]
    hash: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Result of a verification. ``ok`` False means ``reason`` (and ``first_bad_seq`` when attributable)."""

    ok: bool
    n_events: int
    last_seq: int
    last_hash: str
    first_bad_seq: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class RestoredState:
    """What a restarting runtime needs from the journal.

    Attributes:
        deliveries: one record per command (latest status; terminal statuses win) plus the pump's own records, from
            the last 24 h of the journal; a command journaled as sent but never acknowledged is UNCERTAIN.
        uncertain_deliveries: the UNCERTAIN ones (the supervisor refuses new insulin until they are reconciled).
        controller_state: the last controller state (from ``decision`` or ``controller_state`` events), or None.
        supervisor_state: the last supervisor state (``SupervisorState``), counter advanced past every command id
            seen, or None.
        alarms: alarm payloads of the last 24 h, oldest first.
        settings: the last settings (``settings_change``), or None.
        last_seq, last_t_min: the journal's head.
    """

    deliveries: tuple[DeliveryRecord, ...]
    uncertain_deliveries: tuple[DeliveryRecord, ...]
    controller_state: dict[str, Any] | None
    supervisor_state: Any
    alarms: tuple[dict[str, Any], ...]
    settings: Any = None
    last_seq: int = 0
    last_t_min: float | None = None


class _Live:
    """The open state of a journal that must be sealed even when the journal is dropped without :meth:`close`.

    SQLite checkpoints the WAL into the main file when the last connection closes, including when an unclosed
    connection is garbage-collected or finalized at interpreter exit (an uncaught exception, say). Without a new
    seal that would look like corruption on the next open. The journal's finalizer holds this object (never the
    journal itself) and does what :meth:`Journal.close` does. Only SIGKILL or power loss skip it, and those skip
    SQLite's close-time checkpoint as well.
    """

    __slots__ = ("conn", "last_seq", "last_hash", "path", "seal_path")

    def __init__(self, path: Path, seal_path: Path) -> None:
        self.conn: sqlite3.Connection | None = None
        self.last_seq = 0
        self.last_hash = ""
        self.path, self.seal_path = path, seal_path


def _seal_file(path: Path, seal_path: Path, last_seq: int, last_hash: str) -> None:
    digest, size = _file_sha256(path)
    _write_atomic(seal_path, {"state": "sealed", "format": _FORMAT, "sha256": digest, "size": size,
                              "last_seq": last_seq, "last_hash": last_hash})


def _close_dropped(live: _Live, read_only: bool) -> None:
    """Finalizer of a journal that was not closed: checkpoint, close and seal, as :meth:`Journal.close` does."""
    conn, live.conn = live.conn, None
    if conn is None:
        return
    try:
        if not read_only:
            _write_atomic(live.seal_path, {"state": "unsealed", "format": _FORMAT})
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        if not read_only:
            _seal_file(live.path, live.seal_path, live.last_seq, live.last_hash)
    except (sqlite3.Error, OSError):
        pass  # left unsealed: the next open verifies the chain and re-seals, or reports what it finds


class Journal:
    """Append-only hash-chained journal (see the module docstring). Use :meth:`open` or ``Journal(path)``."""

    # The connection and the chain head live in a _Live shared with the finalizer (see _Live).
    _conn = property(lambda self: self._live.conn, lambda self, v: setattr(self._live, "conn", v))
    _last_seq = property(lambda self: self._live.last_seq, lambda self, v: setattr(self._live, "last_seq", v))
    _last_hash = property(lambda self: self._live.last_hash, lambda self, v: setattr(self._live, "last_hash", v))

    def __init__(self, path: str | os.PathLike[str], *, checkpoint_every: int = 500, read_only: bool = False,
                 _pending_allowed: bool = True):
        """Open (creating if absent, unless ``read_only``) and verify the journal at ``path``.

        ``read_only`` (for reports and status tools next to a running writer): never creates, appends or
        checkpoints; a corrupted journal is reported the same way.
        """
        self.path = Path(path)
        self.read_only = bool(read_only)
        self.seal_path = self.path.with_name(self.path.name + ".seal")
        self.pending_path = self.path.with_name(self.path.name + ".pending")
        self.checkpoint_every = int(checkpoint_every)
        self.corruption: JournalCorruptError | None = None
        self._live = _Live(self.path, self.seal_path)
        weakref.finalize(self, _close_dropped, self._live, self.read_only)
        self._pending: Journal | None = None
        self._last_seq = 0
        self._last_hash = ""
        self._genesis = ""
        self._since_checkpoint = 0
        self._closed = False
        try:
            self._open()
        except JournalCorruptError as exc:
            self.corruption = exc
            self._close_conn()
            if not _pending_allowed:
                raise
            if self.pending_path.exists():  # events recorded after an earlier detection
                self._pending_journal()

    def _pending_journal(self) -> "Journal":
        """The journal that records events while this one is refused (created on first use)."""
        if self._pending is None:
            self._pending = Journal(self.pending_path, checkpoint_every=self.checkpoint_every,
                                    _pending_allowed=False)
        return self._pending

    @classmethod
    def open(cls, path: str | os.PathLike[str], **kwargs: Any) -> "Journal":
        """Open (creating if absent) and verify a journal."""
        return cls(path, **kwargs)

    # ------------------------------------------------------------------ opening and verification
    def _connect(self) -> sqlite3.Connection:
        if self.read_only:  # a read-only connection never checkpoints (so never changes the sealed file)
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise JournalError(f"could not put {self.path} in WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def _open(self) -> None:
        exists = self.path.exists()
        seal = self._read_seal()
        if not exists and self.read_only:
            raise JournalError(f"no journal at {self.path}")
        if not exists:
            if seal is not None and seal.get("last_seq", 0) > 0:
                raise JournalCorruptError(f"journal file {self.path} is missing but its seal records "
                                          f"{seal.get('last_seq')} events")
            _write_atomic(self.seal_path, {"state": "unsealed", "format": _FORMAT})
            self._create()
            return
        if seal is None:
            raise JournalCorruptError(f"seal file {self.seal_path} is missing or unreadable")
        seal_problem = None
        if seal.get("state") == "sealed":
            digest, size = _file_sha256(self.path)
            if digest != seal.get("sha256") or size != seal.get("size"):
                seal_problem = (f"file checksum mismatch: {self.path} ({size} bytes) differs from its seal "
                                f"({seal.get('size')} bytes) written at the last checkpoint")
        wal_problem = _wal_problem(self.path.with_name(self.path.name + "-wal"))
        if wal_problem:
            raise JournalCorruptError(wal_problem + "; events committed after the last checkpoint would be lost")
        if seal.get("state") == "unsealed" and "last_seq" not in seal and not self.read_only and self._empty_file():
            self._create()  # a crash while the journal was being created: nothing was ever recorded
            return
        try:
            self._conn = self._connect()
            report = self._verify_db(seal)
        except (sqlite3.Error, JournalError) as exc:
            raise JournalCorruptError(seal_problem or f"SQLite cannot open the file: {exc}") from exc
        if not report.ok:  # name the first bad event when the chain can tell
            raise JournalCorruptError(report.reason + (f"; {seal_problem}" if seal_problem else ""),
                                      report.first_bad_seq)
        if seal_problem:
            raise JournalCorruptError(seal_problem)
        self._last_seq, self._last_hash = report.last_seq, report.last_hash
        if seal.get("state") != "sealed" and not self.read_only:
            self.checkpoint()  # crashed mid-checkpoint last time: restore the whole-file protection

    @property
    def pragmas(self) -> dict[str, Any]:
        """The connection's journal_mode, synchronous (2 = FULL) and wal_autocheckpoint, for inspection."""
        self._require_open()
        assert self._conn is not None
        return {name: self._conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "wal_autocheckpoint")}

    def _create(self) -> None:
        try:
            self._conn = self._connect()
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, t_min REAL NOT "
                               "NULL, payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)")
            self._conn.execute("INSERT INTO meta VALUES ('format', ?), ('chain_id', ?)",
                               (_FORMAT, os.urandom(16).hex()))
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise JournalError(f"cannot create journal {self.path}: {exc}") from exc
        self._load_head()
        self.checkpoint()

    def _empty_file(self) -> bool:
        """True when the database holds no table at all (created, then a crash before the schema committed)."""
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None)
            try:
                return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
            finally:
                conn.close()
        except sqlite3.Error:
            return False

    def _read_seal(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.seal_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _load_head(self) -> None:
        assert self._conn is not None
        row = self._conn.execute("SELECT value FROM meta WHERE key='chain_id'").fetchone()
        self._genesis = hashlib.sha256(f"{_FORMAT}:{row[0]}".encode()).hexdigest()
        last = self._conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        self._last_seq, self._last_hash = (int(last[0]), str(last[1])) if last else (0, self._genesis)

    def _verify_db(self, seal: Mapping[str, Any] | None) -> ChainReport:
        conn = self._conn
        assert conn is not None
        try:
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            if problems != ["ok"]:
                return ChainReport(False, 0, 0, "", None, "integrity_check: " + "; ".join(map(str, problems[:3])))
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("format") != _FORMAT or "chain_id" not in meta:
                return ChainReport(False, 0, 0, "", None, f"meta table damaged: {meta!r}")
            self._genesis = hashlib.sha256(f"{_FORMAT}:{meta['chain_id']}".encode()).hexdigest()
            prev, expected, n = self._genesis, 1, 0
            hashes: dict[int, str] = {}
            for seq, kind, t_min, payload, prev_hash, digest in conn.execute(
                    "SELECT seq, kind, t_min, payload, prev_hash, hash FROM events ORDER BY seq"):
                if seq != expected:
                    return ChainReport(False, n, expected - 1, prev, expected, f"event seq {expected} missing "
                                       f"(next present is {seq})")
                if prev_hash != prev or _event_hash(prev, seq, kind, t_min, payload) != digest:
                    return ChainReport(False, n, seq - 1, prev, seq, f"hash chain broken at event {seq} ({kind})")
                try:
                    json.loads(payload)
                except ValueError:
                    return ChainReport(False, n, seq - 1, prev, seq, f"event {seq} payload is not JSON")
                prev, expected, n = digest, expected + 1, n + 1
                if seal and seq == seal.get("last_seq"):
                    hashes[seq] = digest
        except sqlite3.Error as exc:
            return ChainReport(False, 0, 0, "", None, f"SQLite error while reading: {exc}")
        if seal and seal.get("state") == "sealed" and int(seal.get("last_seq", 0)) > 0:
            sealed_seq = int(seal["last_seq"])
            if hashes.get(sealed_seq) != seal.get("last_hash"):
                return ChainReport(False, n, expected - 1, prev, sealed_seq if sealed_seq < expected else None,
                                   f"sealed event {sealed_seq} is missing or differs from the seal")
        return ChainReport(True, n, expected - 1, prev)

    def verify(self) -> ChainReport:
        """Re-verify seal, page structure and hash chain now."""
        if self.corruption is not None:
            e = self.corruption
            return ChainReport(False, 0, 0, "", e.first_bad_seq, e.reason)
        self._require_open()
        seal = self._read_seal()
        if seal is None:
            return ChainReport(False, 0, 0, "", None, "seal missing")
        if seal.get("state") == "sealed":
            digest, size = _file_sha256(self.path)
            if digest != seal.get("sha256") or size != seal.get("size"):
                return ChainReport(False, 0, 0, "", None, "file checksum mismatch against the seal")
        wal_problem = _wal_problem(self.path.with_name(self.path.name + "-wal"))
        if wal_problem:
            return ChainReport(False, 0, 0, "", None, wal_problem)
        return self._verify_db(seal)

    # ------------------------------------------------------------------ writing
    @property
    def refuse_automatic_dosing(self) -> bool:
        """True while a detected corruption has not been acknowledged by an operator."""
        return self.corruption is not None

    @property
    def last_seq(self) -> int:
        """Sequence number of the last event (of the pending journal while refused)."""
        if self.corruption is not None:
            return self._pending.last_seq if self._pending is not None else 0
        return self._last_seq

    def _require_open(self) -> None:
        if self._closed or self._conn is None:
            raise JournalError(f"journal {self.path} is closed")

    def append(self, kind: str, t_min: float, payload: Mapping[str, Any]) -> int:
        """Append one event; returns its sequence number once it is durable. While the journal is refused
        (corrupt, not yet acknowledged) events go to the pending journal and its sequence number is returned."""
        if self.read_only:
            raise JournalError(f"journal {self.path} was opened read-only")
        if self.corruption is not None:
            if self._closed:
                raise JournalError(f"journal {self.path} is closed")
            return self._pending_journal().append(kind, t_min, payload)
        self._require_open()
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"event kind must be a non-empty string, got {kind!r}")
        t = float(t_min)
        if not math.isfinite(t):
            raise ValueError(f"event time must be finite, got {t_min!r}")
        text = canonical_json(payload)
        seq = self._last_seq + 1
        digest = _event_hash(self._last_hash, seq, kind, t, text)
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", (seq, kind, t, text, self._last_hash, digest))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._last_seq, self._last_hash = seq, digest
        self._since_checkpoint += 1
        if self.checkpoint_every > 0 and self._since_checkpoint >= self.checkpoint_every:
            self.checkpoint()
        return seq

    def checkpoint(self) -> None:
        """Move the WAL into the main file and re-seal it (whole-file SHA-256)."""
        if self.read_only:
            return
        if self.corruption is not None:
            if self._pending is not None:
                self._pending.checkpoint()
            return
        self._require_open()
        assert self._conn is not None
        _write_atomic(self.seal_path, {"state": "unsealed", "format": _FORMAT})
        busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            raise JournalError("checkpoint blocked by another connection")
        self._seal()
        self._since_checkpoint = 0

    def _seal(self) -> None:
        _seal_file(self.path, self.seal_path, self._last_seq, self._last_hash)

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def close(self) -> None:
        """Checkpoint, seal and close (idempotent)."""
        if self._closed:
            return
        if self._pending is not None:
            self._pending.close()
        if self.read_only:
            self._close_conn()
        elif self.corruption is None and self._conn is not None:
            self.checkpoint()
            _write_atomic(self.seal_path, {"state": "unsealed", "format": _FORMAT})
            self._close_conn()
            self._seal()
        self._closed = True

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def events(self, kinds: Iterable[str] | None = None, since_seq: int = 0) -> Iterator[Event]:
        """Events with ``seq > since_seq`` (optionally only of ``kinds``), in order."""
        if self.corruption is not None:
            raise self.corruption
        self._require_open()
        assert self._conn is not None
        wanted = None if kinds is None else set(kinds)
        rows = self._conn.execute("SELECT seq, kind, t_min, payload, hash FROM events WHERE seq > ? ORDER BY seq",
                                  (int(since_seq),)).fetchall()
        for seq, kind, t_min, payload, digest in rows:
            if wanted is None or kind in wanted:
                yield Event(int(seq), kind, float(t_min), json.loads(payload), digest)

    # convenience writers --------------------------------------------------------------------------
    def record_command_sent(self, approved: ApprovedCommand, delivery: DeliveryRecord) -> int:
        """Journal a command *before* transmitting it (with its COMMANDED delivery record)."""
        return self.append("command_sent", approved.issued_at_min,
                           {"command": to_jsonable(approved), "delivery": to_jsonable(delivery)})

    def record_ack(self, delivery: DeliveryRecord, t_min: float) -> int:
        """Journal the pump's answer (a CONFIRMED or FAILED delivery record)."""
        return self.append("ack", t_min, {"delivery": to_jsonable(delivery)})

    def record_delivery(self, delivery: DeliveryRecord, t_min: float) -> int:
        """Journal a delivery reconciled from the pump's history."""
        return self.append("delivery", t_min, {"delivery": to_jsonable(delivery)})

    def record_verdict(self, verdict: Any, t_min: float) -> int:
        return self.append("verdict", t_min, verdict.to_dict())

    # ------------------------------------------------------------------ restore
    def restore(self) -> RestoredState:
        """Fold the journal into what a restarting runtime needs (see :class:`RestoredState`)."""
        if self.corruption is not None:
            raise self.corruption
        from safety.deliveries import effective_deliveries

        records: list[DeliveryRecord] = []
        command_ids: list[str] = []
        controller_state = None
        sup_state = None
        settings = None
        alarms: list[tuple[float, dict[str, Any]]] = []
        last_t = None
        for ev in self.events():
            last_t = ev.t_min if last_t is None else max(last_t, ev.t_min)
            p = ev.payload
            if ev.kind in ("command_sent", "ack", "delivery") and isinstance(p.get("delivery"), dict):
                records.append(from_jsonable("delivery", p["delivery"]))
                if ev.kind == "command_sent" and isinstance(p.get("command"), dict):
                    command_ids.append(str(p["command"].get("command_id", "")))
            elif ev.kind == "decision" and p.get("controller_state") is not None:
                controller_state = p["controller_state"]
            elif ev.kind == "controller_state":
                controller_state = p.get("state")
            elif ev.kind == "verdict" and isinstance(p.get("state"), dict):
                from safety.supervisor import SupervisorState
                sup_state = SupervisorState.from_dict(p["state"])
            elif ev.kind == "settings_change" and isinstance(p.get("settings"), dict):
                settings = from_jsonable("settings", p["settings"])
            elif ev.kind == "alarm":
                alarms.append((ev.t_min, dict(p)))
        horizon = -math.inf if last_t is None else last_t - _RESTORE_WINDOW_MIN
        restored: list[DeliveryRecord] = []
        for r in effective_deliveries(records):
            if r.status is DeliveryStatus.COMMANDED:
                r = DeliveryRecord(r.command_id, r.kind, r.start_min, r.end_min, r.amount_u,
                                   DeliveryStatus.UNCERTAIN, r.rate_u_per_h)
            if r.end_min >= horizon or r.status is DeliveryStatus.UNCERTAIN:
                restored.append(r)
        counters = [int(m.group(1)) for cid in command_ids if (m := re.fullmatch(r"sv:[^:]*:(\d+)", cid))]
        if counters:
            from safety.supervisor import SupervisorState
            base = sup_state if sup_state is not None else SupervisorState()
            if base.counter <= max(counters):
                sup_state = SupervisorState(base.lgs_active, base.last_valid_reading_min, base.last_auto_bolus_min,
                                            max(counters) + 1, base.last_decision_min)
        return RestoredState(
            deliveries=tuple(restored),
            uncertain_deliveries=tuple(r for r in restored if r.status is DeliveryStatus.UNCERTAIN),
            controller_state=controller_state, supervisor_state=sup_state,
            alarms=tuple(a for t, a in alarms if t >= horizon), settings=settings,
            last_seq=self._last_seq, last_t_min=last_t)

    # ------------------------------------------------------------------ corruption handling
    def acknowledge_corruption(self, operator: str) -> Path:
        """An operator accepts a corrupted journal: archive the damaged files, start a new chain whose first event
        records the acknowledgement, carry over the events recorded meanwhile; automatic dosing may resume.
        Returns the archive directory."""
        if self.corruption is None:
            raise JournalError("the journal is not corrupted: nothing to acknowledge")
        if self.read_only:
            raise JournalError(f"journal {self.path} was opened read-only")
        if not operator or not str(operator).strip():
            raise ValueError("operator must be named")
        report = self.corruption
        pending_events: list[Event] = []
        if self._pending is not None:
            pending_events = list(self._pending.events())
            self._pending.close()
            self._pending = None
        n = 1
        while self.path.with_name(f"{self.path.name}.corrupt-{n}").exists():
            n += 1
        archive = self.path.with_name(f"{self.path.name}.corrupt-{n}")
        archive.mkdir()
        for suffix in ("", "-wal", "-shm", ".seal"):
            src = self.path.with_name(self.path.name + suffix)
            if src.exists():
                shutil.move(str(src), str(archive / src.name))
        _fsync_dir(self.path.parent)
        self.corruption = None
        self._open()
        t0 = pending_events[0].t_min if pending_events else 0.0
        self.append("journal_reset", t0, {"operator": str(operator), "archived_to": str(archive),
                                          "reason": report.reason, "first_bad_seq": report.first_bad_seq,
                                          "pending_events": len(pending_events)})
        for ev in pending_events:
            self.append(ev.kind, ev.t_min, ev.payload)
        self.checkpoint()
        for suffix in ("", "-wal", "-shm", ".seal"):
            p = self.pending_path.with_name(self.pending_path.name + suffix)
            if p.exists():
                p.unlink()
        return archive
