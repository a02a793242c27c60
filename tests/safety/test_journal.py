"""The journal: WAL + synchronous FULL, hash chain, one-byte corruption anywhere detected on open, refusal until an
operator acknowledges, restore of insulin-on-board inputs, uncertain deliveries and states."""

from __future__ import annotations

import random
from pathlib import Path
import shutil
import sqlite3

import pytest

from safety.commands import DeliveryKind, DeliveryRecord, DeliveryStatus, Resume, TempBasal
from safety.errors import JournalCorruptError
from safety.journal import Journal
from safety.serialization import to_jsonable
from safety.supervisor import SupervisorState, supervise

from safety_testkit import NOW, context, proposal, settings


def fill(path, n=60):
    j = Journal.open(path)
    for i in range(n):
        j.append("reading", NOW + i, {"t_min": NOW + i, "glucose_mg_dl": 100.0 + i, "note": "x" * (i % 7)})
    return j


def test_wal_and_full_synchronous(tmp_path):
    j = fill(tmp_path / "j.db", 3)
    p = j.pragmas
    assert p["journal_mode"] == "wal" and p["synchronous"] == 2 and p["wal_autocheckpoint"] == 0
    j.close()
    j = Journal.open(tmp_path / "j.db")
    assert j.pragmas["journal_mode"] == "wal" and j.pragmas["synchronous"] == 2
    j.close()


def test_append_returns_seq_and_events_filter(tmp_path):
    j = Journal.open(tmp_path / "j.db")
    assert [j.append("reading", 1.0, {"a": 1}), j.append("alarm", 2.0, {"b": 2}), j.append("reading", 3.0, {})] \
        == [1, 2, 3]
    assert [e.seq for e in j.events(kinds=["reading"])] == [1, 3]
    assert [e.seq for e in j.events(since_seq=1)] == [2, 3]
    assert next(j.events(kinds={"alarm"})).payload == {"b": 2}
    assert j.verify().ok and j.verify().n_events == 3
    with pytest.raises(ValueError):
        j.append("", 1.0, {})
    j.close()


def _tamper(path, sql, args=()):
    conn = sqlite3.connect(str(path))
    conn.execute(sql, args)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("sql,args,bad_seq", [
    ("UPDATE events SET payload = ? WHERE seq = 17", ('{"glucose_mg_dl":55.0}',), 17),
    ("UPDATE events SET t_min = t_min + 1 WHERE seq = 5", (), 5),
    ("UPDATE events SET kind = 'alarm' WHERE seq = 30", (), 30),
    ("DELETE FROM events WHERE seq = 12", (), 12),
])
def test_tampered_event_is_named(tmp_path, sql, args, bad_seq):
    path = tmp_path / "j.db"
    fill(path).close()
    _tamper(path, sql, args)
    j = Journal.open(path)
    assert j.refuse_automatic_dosing
    assert j.corruption.first_bad_seq == bad_seq
    assert f"seq={bad_seq}" in str(j.corruption)
    with pytest.raises(JournalCorruptError):
        j.restore()
    j.close()


def test_truncated_tail_is_detected(tmp_path):
    path = tmp_path / "j.db"
    fill(path).close()
    _tamper(path, "DELETE FROM events WHERE seq > 50")
    j = Journal.open(path)
    assert j.refuse_automatic_dosing
    j.close()


def test_one_byte_corruption_anywhere_in_the_file_is_detected_on_open(tmp_path):
    src = tmp_path / "src.db"
    fill(src).close()
    data = src.read_bytes()
    seal = (tmp_path / "src.db.seal").read_bytes()
    rng = random.Random(7)
    size = len(data)
    page = 4096
    offsets = set(range(0, 100, 7)) | {size - 1}
    for p in range(0, size, page):  # every page: its header, its middle (often unused space), its end
        offsets |= {p, p + 1, p + 7, p + page // 2, p + page - 1}
        offsets |= {rng.randrange(p, min(p + page, size)) for _ in range(3)}
    offsets = sorted(o for o in offsets if o < size)
    assert len(offsets) > 30
    for off in offsets:
        d = tmp_path / f"c{off}"
        d.mkdir()
        corrupted = bytearray(data)
        corrupted[off] ^= 1 << rng.randrange(8)
        (d / "j.db").write_bytes(bytes(corrupted))
        (d / "j.db.seal").write_bytes(seal)
        j = Journal.open(d / "j.db")
        assert j.refuse_automatic_dosing, f"flip at offset {off} not detected"
        assert not j.verify().ok
        j.close()
        shutil.rmtree(d)


def test_corrupted_journal_keeps_recording_and_operator_acknowledges(tmp_path):
    path = tmp_path / "j.db"
    fill(path, 10).close()
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    j = Journal.open(path)
    assert j.refuse_automatic_dosing
    assert j.append("reading", NOW + 100, {"g": 1}) == 1  # recorded in the pending chain, nothing dropped
    assert j.append("alarm", NOW + 101, {"reason": "x"}) == 2
    archive = j.acknowledge_corruption("dr. operator")
    assert not j.refuse_automatic_dosing and (archive / "j.db").exists()
    events = list(j.events())
    assert events[0].kind == "journal_reset" and events[0].payload["operator"] == "dr. operator"
    assert events[0].payload["pending_events"] == 2
    assert [e.kind for e in events[1:]] == ["reading", "alarm"]
    j.close()
    j = Journal.open(path)
    assert not j.refuse_automatic_dosing and j.verify().ok and j.last_seq == 3
    assert not (tmp_path / "j.db.pending").exists()
    j.close()


def test_acknowledge_requires_corruption_and_operator(tmp_path):
    j = fill(tmp_path / "j.db", 2)
    with pytest.raises(Exception):
        j.acknowledge_corruption("someone")
    j.close()


def test_missing_seal_or_file_is_corruption(tmp_path):
    path = tmp_path / "j.db"
    fill(path, 3).close()
    (tmp_path / "j.db.seal").unlink()
    j = Journal.open(path)
    assert j.refuse_automatic_dosing
    j.close()
    path2 = tmp_path / "k.db"
    fill(path2, 3).close()
    path2.unlink()
    j = Journal.open(path2)
    assert j.refuse_automatic_dosing
    j.close()


def test_restore_deliveries_uncertain_states_and_settings(tmp_path):
    s = settings()
    j = Journal.open(tmp_path / "j.db")
    v = supervise(proposal(rate=2.0, bolus=1.0), context(s=s))
    j.record_verdict(v, NOW)
    j.append("decision", NOW, {"controller_state": {"x": 1.5}})
    j.append("settings_change", NOW, {"settings": to_jsonable(s)})
    temp, bolus = v.commands
    assert isinstance(temp.command, TempBasal)
    d_temp = DeliveryRecord(temp.command_id, DeliveryKind.BASAL, NOW, NOW + 30, 1.0, DeliveryStatus.COMMANDED, 2.0)
    d_bolus = DeliveryRecord(bolus.command_id, DeliveryKind.BOLUS, NOW, NOW, bolus.command.bolus_u,
                             DeliveryStatus.COMMANDED)
    j.record_command_sent(temp, d_temp)
    j.record_ack(DeliveryRecord(temp.command_id, DeliveryKind.BASAL, NOW, NOW + 30, 1.0, DeliveryStatus.CONFIRMED,
                                2.0), NOW)
    j.record_command_sent(bolus, d_bolus)  # crash: never acknowledged
    j.append("alarm", NOW, {"reason": "CGM_STALE"})
    j.close()
    j = Journal.open(tmp_path / "j.db")
    r = j.restore()
    assert [d.status for d in r.deliveries] == [DeliveryStatus.CONFIRMED, DeliveryStatus.UNCERTAIN]
    assert [d.command_id for d in r.uncertain_deliveries] == [bolus.command_id]
    assert r.controller_state == {"x": 1.5} and r.settings == s
    assert isinstance(r.supervisor_state, SupervisorState) and r.supervisor_state.counter == v.state.counter
    assert r.alarms == ({"reason": "CGM_STALE"},) and r.last_seq == 7
    # the restarted supervisor refuses new insulin while the bolus outcome is uncertain
    again = supervise(proposal(rate=2.0, bolus=1.0, now=NOW + 5),
                      context(deliveries=r.deliveries, now=NOW + 5, state=r.supervisor_state, s=s))
    assert all(isinstance(c.command, Resume) for c in again.commands)
    assert {c.command_id for c in again.commands}.isdisjoint({temp.command_id, bolus.command_id})
    j.close()


def test_one_byte_corruption_in_the_wal_is_detected_on_open(tmp_path):
    """Events appended since the last checkpoint live in the WAL; SQLite would silently drop a damaged frame and
    everything after it. The journal checks the frames itself."""
    src = tmp_path / "src.db"
    j = fill(src, 5)
    j.checkpoint()
    for i in range(12):
        j.append("reading", NOW + 100 + i, {"i": i})
    # simulate a crash: copy the files while the journal is open (WAL not yet checkpointed)
    db, wal, seal = src.read_bytes(), (tmp_path / "src.db-wal").read_bytes(), (tmp_path / "src.db.seal").read_bytes()
    j.close()
    assert len(wal) > 32 + 4096
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "j.db").write_bytes(db)
    (clean / "j.db-wal").write_bytes(wal)
    (clean / "j.db.seal").write_bytes(seal)
    ok = Journal.open(clean / "j.db")
    assert not ok.refuse_automatic_dosing and ok.last_seq == 17
    ok.close()
    rng = random.Random(3)
    frame = 24 + 4096
    offsets = set(range(0, 32)) | {rng.randrange(32, len(wal)) for _ in range(25)}
    for k in range((len(wal) - 32) // frame):
        base = 32 + k * frame
        offsets |= {base, base + 5, base + 9, base + 13, base + 17, base + 22, base + 24, base + frame - 1}
    for off in sorted(offsets):
        d = tmp_path / f"w{off}"
        d.mkdir()
        bad = bytearray(wal)
        bad[off] ^= 1 << rng.randrange(8)
        (d / "j.db").write_bytes(db)
        (d / "j.db-wal").write_bytes(bytes(bad))
        (d / "j.db.seal").write_bytes(seal)
        jj = Journal.open(d / "j.db")
        assert jj.refuse_automatic_dosing, f"WAL flip at offset {off} not detected"
        jj.close()
        shutil.rmtree(d)


def test_read_only_view_next_to_a_writer_changes_nothing(tmp_path):
    path = tmp_path / "j.db"
    writer = fill(path, 5)
    writer.checkpoint()
    writer.append("reading", NOW + 50, {"late": True})  # only in the WAL
    seal = (tmp_path / "j.db.seal").read_text()
    main = path.read_bytes()
    reader = Journal.open(path, read_only=True)
    assert not reader.refuse_automatic_dosing and reader.verify().ok
    assert [e.seq for e in reader.events(since_seq=5)] == [6]
    with pytest.raises(Exception):
        reader.append("reading", NOW, {})
    reader.close()
    assert path.read_bytes() == main and (tmp_path / "j.db.seal").read_text() == seal
    assert writer.append("reading", NOW + 51, {}) == 7
    writer.close()
    again = Journal.open(path)
    assert again.verify().ok and again.last_seq == 7
    again.close()
    with pytest.raises(Exception):
        Journal.open(tmp_path / "absent.db", read_only=True)


def test_read_only_view_after_a_crash_leaves_the_files_for_recovery(tmp_path):
    src = tmp_path / "src.db"
    w = fill(src, 4)
    w.append("reading", NOW + 9, {"in_wal": 1})
    d = tmp_path / "crashed"
    d.mkdir()
    for suffix in ("", "-wal", ".seal"):
        shutil.copy2(tmp_path / f"src.db{suffix}", d / f"j.db{suffix}")
    w.close()
    main = (d / "j.db").read_bytes()
    r = Journal.open(d / "j.db", read_only=True)
    assert r.verify().ok and r.restore().last_seq == 5
    r.close()
    assert (d / "j.db").read_bytes() == main  # the last connection closing did not checkpoint
    j = Journal.open(d / "j.db")
    assert not j.refuse_automatic_dosing and j.last_seq == 5
    j.close()


def test_crash_while_creating_the_journal_is_not_corruption(tmp_path):
    path = tmp_path / "j.db"
    (tmp_path / "j.db.seal").write_text('{"state": "unsealed", "format": "twinloop-journal-v1"}')
    path.write_bytes(b"")  # created, schema never committed
    j = Journal.open(path)
    assert not j.refuse_automatic_dosing and j.append("reading", 1.0, {}) == 1
    j.close()


def test_journal_dropped_without_close_is_sealed_not_reported_corrupt(tmp_path):
    """SQLite checkpoints when an unclosed connection is finalized; the journal must re-seal, not cry corruption."""
    import gc
    import subprocess
    import sys

    from safety.journal import Journal

    j = Journal.open(tmp_path / "a.db")
    j.append("reading", 1.0, {"glucose_mg_dl": 120.0})
    del j
    gc.collect()
    again = Journal.open(tmp_path / "a.db")
    assert again.corruption is None and again.last_seq == 1 and again.verify().ok
    again.close()
    # a process that ends by an uncaught exception, without closing its journal
    code = ("import sys; sys.path.insert(0, %r)\nfrom safety.journal import Journal\n"
            "j = Journal.open(%r)\nj.append('reading', 1.0, {'v': 1})\nraise SystemExit('crash')\n"
            % (str(Path(__file__).resolve().parents[2]), str(tmp_path / "b.db")))
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 1
    after = Journal.open(tmp_path / "b.db")
    assert after.corruption is None and [e.kind for e in after.events()] == ["reading"]
    after.close()
