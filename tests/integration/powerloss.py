"""A power loss, modelled from the journal of tests/shim/powerloss.c: every
change to the cache's files that no fsync/fdatasync made durable is, per a
seeded generator, kept, dropped (its old bytes and size back) or garbled
(4 KiB pages of it new, old or random), each on its own. Then what the
index vouches for is compared with the origin's bytes."""

import os
import shutil
import sqlite3
import struct
from pathlib import Path

# struct rec in powerloss.c: kind, pad[3], path_len, off, len, old_size,
# old_len, new_len.
REC = struct.Struct("=c3xIQQQQQ")
PAGE = 4096
KEEP, DROP, GARBLE = "kept", "dropped", "garbled"


class Record:
    __slots__ = ("seq", "kind", "path", "off", "len", "old_size", "old", "new")


def read_journal(path):
    """The journal's records, oldest first."""
    data = Path(path).read_bytes() if Path(path).exists() else b""
    out, at = [], 0
    while at < len(data):
        kind, plen, off, ln, old_size, old_len, new_len = REC.unpack_from(data, at)
        at += REC.size
        r = Record()
        r.seq, r.kind, r.off, r.len, r.old_size = len(out), kind.decode(), off, ln, old_size
        r.path = data[at:at + plen].decode()
        at += plen
        r.old = data[at:at + old_len]
        at += old_len
        r.new = data[at:at + new_len]
        at += new_len
        out.append(r)
    return out


def not_durable(records):
    """The changes no later sync covers (and whose file was not unlinked
    since), oldest first."""
    synced, gone = {}, {}
    for r in records:
        if r.kind == "S":
            synced[r.path] = max(synced.get(r.path, 0), r.off)
        elif r.kind == "U":
            gone[r.path] = r.seq
    return [r for r in records if r.kind in "WPT"
            and r.seq >= synced.get(r.path, 0) and r.seq > gone.get(r.path, -1)]


def _undo(f, r):
    if r.kind == "T":
        f.truncate(r.old_size)
        f.seek(r.off)
        f.write(r.old)
    else:
        f.seek(r.off)
        f.write(r.old)
        f.truncate(r.old_size)


def _garbled(r, rng):
    """What a torn change leaves: per page of its range the new bytes, the
    old ones or noise."""
    new = r.new if r.kind == "W" else bytes(r.len)
    out = bytearray(new)
    first = r.off - r.off % PAGE
    for page in range(first, r.off + len(new), PAGE):
        lo, hi = max(page, r.off) - r.off, min(page + PAGE, r.off + len(new)) - r.off
        pick = rng.random()
        if pick < 0.35:
            old = r.old[lo:hi]
            out[lo:hi] = old + bytes(hi - lo - len(old))
        elif pick < 0.6:
            out[lo:hi] = rng.randbytes(hi - lo)
    return bytes(out)


def _redo(f, r, data):
    if r.kind == "T":
        f.truncate(r.off)
        return
    f.seek(0, os.SEEK_END)
    size = f.tell()
    if r.kind == "P":
        data = data[:max(0, min(r.len, size - r.off))]    # a punch keeps the size
    f.seek(r.off)
    f.write(data)


def power_loss(journal, rng, p_keep=0.45, p_garble=0.15, fate_of=None):
    """Apply a seeded power loss to the files the journal names; returns
    {KEEP: n, DROP: n, GARBLE: n} over the changes that were not durable.
    fate_of(record), when given, decides instead of the generator. The
    journal is then renamed JOURNAL.done (the last one stays, to look at
    when a seed fails)."""
    pending = not_durable(read_journal(journal))
    fates = {KEEP: 0, DROP: 0, GARBLE: 0}
    files = {}

    def handle(path):
        if path not in files:
            files[path] = open(path, "r+b") if os.path.exists(path) else None
        return files[path]

    try:
        for r in reversed(pending):
            f = handle(r.path)
            if f:
                _undo(f, r)
        for r in pending:
            pick = rng.random()
            fate = KEEP if pick < p_keep else GARBLE if pick < p_keep + p_garble else DROP
            if fate_of:
                fate = fate_of(r)
            if fate == GARBLE and r.kind == "T":
                fate = KEEP
            fates[fate] += 1
            f = handle(r.path)
            if f and fate == KEEP:
                _redo(f, r, r.new if r.kind == "W" else bytes(r.len))
            elif f and fate == GARBLE:
                _redo(f, r, _garbled(r, rng))
    finally:
        for f in files.values():
            if f:
                f.close()
    os.rename(journal, str(journal) + ".done")
    return fates


def index_rows(cache, scratch):
    """[(file id, file size, block size, idx, len, file state)] for every block row of
    the index at cache, read from a copy (SQLite's recovery must not touch
    the cache); [] when the loss took the schema itself (a cache created
    since the last checkpoint), None when SQLite cannot read the index
    (modelfs then starts afresh)."""
    scratch = Path(scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for part in ("", "-wal"):
        src = Path(cache) / ("index.sqlite" + part)
        if src.exists():
            shutil.copyfile(src, scratch / src.name)
    try:
        db = sqlite3.connect(scratch / "index.sqlite")
        try:
            return db.execute("SELECT f.id, f.size, f.block_size, b.idx, b.len, f.state "
                              "FROM blocks b JOIN files f ON f.id = b.file_id").fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError as e:
        return [] if "no such table" in str(e) else None
    except sqlite3.DatabaseError:
        return None


COMPLETE, VERIFIED = 2, 3     # store.h enum store_file_state


def inexact_rows(cache, scratch, origin):
    """{file size: rows whose bytes are not the origin's} and how many of
    those belong to a file the index calls complete or verified, or
    (None, 0) when the index cannot be read."""
    rows = index_rows(cache, scratch)
    if rows is None:
        return None, 0
    bad, in_whole = {}, 0
    for file_id, size, block_size, idx, ln, state in rows:
        want = origin.get(size)
        if want is None:
            continue
        off = idx * block_size
        try:
            with open(Path(cache) / "data" / str(file_id), "rb") as f:
                f.seek(off)
                got = f.read(ln)
        except FileNotFoundError:
            got = b""
        if got != want[off:off + ln]:
            bad[size] = bad.get(size, 0) + 1
            in_whole += state in (COMPLETE, VERIFIED)
    return bad, in_whole
