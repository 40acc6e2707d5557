"""Names servers choose (Content-Disposition, an API's file name) are made
safe before they become names in the mount, two entries never share a path
unseen, and the `status` table never sends a control byte to a terminal.
The names come from the fake Drive (a Drive link names no file; plain URLs
share its Content-Disposition code), hostile ones from the `disposition`
fault."""

import json
import os
import re
import sqlite3
import subprocess

from mfs import MiB, config, pread, url_entry

CONTROL_BYTES = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


def drive_entry(hub, file_id, name, seed=0):
    """A Drive file (its own Content-Disposition names it `name`) and the
    entry for it."""
    hub.add_file("gdrive/%s/%s" % (file_id, name), MiB, seed=seed)
    return '"https://drive.google.com/file/d/%s/view"' % file_id


def drive_config(hub, entries):
    return config(entries, settings='gdrive_endpoint = "%s"' % hub.base("gdrive"))


def cli(modelfs_bin, *args, expect=0):
    r = subprocess.run([str(modelfs_bin), *map(str, args)], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == expect, (args, r.returncode, r.stdout, r.stderr)
    return r


def status_json(modelfs_bin, cache):
    return json.loads(cli(modelfs_bin, "status", "--json", "--cache-dir", cache).stdout)


def test_hostile_content_disposition_names_are_made_safe(hub, mount, modelfs_bin):
    hostile = {   # file at the origin -> (Content-Disposition, name in the mount)
        "nl.bin": ("attachment; filename*=UTF-8''evil%0Aname%09x%1B%5B31m.safetensors",
                   "evil_name_x_[31m.safetensors"),
        "raw.bin": ('attachment; filename="tab\there\x1b]0;title\x07.bin"',
                    "tab_here_]0;title_.bin"),
        "c1.bin": ("attachment; filename*=UTF-8''a%C2%9Bb%E2%80%AEc.ckpt", "a__b___c.ckpt"),
        "long.bin": ("attachment; filename*=UTF-8''" + "a%C3%A9" * 130 + ".safetensors",
                     "a\u00e9" * 81 + ".safetensors"),   # 402 bytes cut to 255,
                                                          # between characters
        "slash.bin": ("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", ".._.._etc_passwd"),
        "pct.bin": ("attachment; filename*=UTF-8''cut%4", "cut%4"),   # a "%" at the very end
    }
    entries, ids = {}, {}
    for i, (name, (disposition, _)) in enumerate(sorted(hostile.items())):
        ids[name] = "1hostile_%d-id" % i
        entries["e%d" % i] = drive_entry(hub, ids[name], name, seed=i)
        hub.faults(path=ids[name], disposition=disposition)
    m = mount(drive_config(hub, {"vae": entries}))
    want = sorted(safe for _, safe in hostile.values())
    assert sorted(os.listdir(m.path / "VAE")) == want
    assert all(len(n.encode()) <= 255 for n in want)
    for name, (_, safe) in hostile.items():
        src = hub.root / "gdrive" / ids[name] / name
        assert pread(m.path / "VAE" / safe, 1000, 16) == src.read_bytes()[1000:1016]
    st = status_json(modelfs_bin, m.cache_dir)
    assert sorted(f["path"] for f in st["files"]) == ["VAE/" + n for n in want]
    out = cli(modelfs_bin, "status", "--cache-dir", m.cache_dir).stdout
    assert not CONTROL_BYTES.search(out), out
    for safe in want:
        assert ("VAE/" + safe).encode() in out


def test_status_table_escapes_control_bytes_whatever_their_origin(hub, mount, modelfs_bin):
    # An index written by an older modelfs may hold a raw name: the table
    # shows its bytes escaped, --json as JSON escapes.
    hub.add_file("ok.bin", MiB)
    m = mount(config({"vae": {"a": url_entry(hub.url("ok.bin"))}}))
    m.unmount()
    db = sqlite3.connect(m.cache_dir / "index.sqlite")
    db.execute("UPDATE resolutions SET path=?", ("VAE/\x1b[2J\x1b]0;x\x07\u009b31m\tz\n.bin",))
    db.commit()
    db.close()
    out = cli(modelfs_bin, "status", "--cache-dir", m.cache_dir).stdout
    assert not CONTROL_BYTES.search(out), out
    assert b"VAE/\\x1b[2J\\x1b]0;x\\x07\\xc2\\x9b31m\\x09z\\x0a.bin" in out, out
    [f] = status_json(modelfs_bin, m.cache_dir)["files"]
    assert f["path"] == "VAE/\x1b[2J\x1b]0;x\x07\u009b31m\tz\n.bin"


def test_a_server_name_that_clashes_is_an_error_naming_both_entries(hub, mount, modelfs_bin,
                                                                     tmp_path):
    # Entry b's server (Drive) calls its file x.bin, which entry a shows:
    # a keeps the name; b is listed with an error naming a (never dropped
    # unseen), the log's error line names both, and check fails on it.
    hub.add_file("x.bin", MiB, seed=1)
    text = drive_config(hub, {"vae": {"a": url_entry(hub.url("x.bin")),
                                      "b": drive_entry(hub, "1other_file-id", "x.bin", seed=2)}})
    m = mount(text, expect_partial=True, allowed_errors=[r"entry=vae/b path=VAE/x\.bin"])
    assert "1 of 2 entries failed" in m.stderr and "  vae/b (" in m.stderr
    assert os.listdir(m.path / "VAE") == ["x.bin"]
    assert pread(m.path / "VAE" / "x.bin", 0, 64) == (hub.root / "x.bin").read_bytes()[:64]
    st = status_json(modelfs_bin, m.cache_dir)
    a, b = sorted(st["files"], key=lambda f: f["entry"])
    assert (a["entry"], a["path"], a["error"]) == ("vae/a", "VAE/x.bin", None)
    assert (b["entry"], b["path"], b["state"]) == ("vae/b", "VAE/x.bin", "error")
    assert "already entry vae/a's" in b["error"] and "filename" in b["error"]
    [line] = [ln for ln in m.log().splitlines() if " error " in ln]
    assert "entry=vae/b" in line and "vae/a" in line and "path=VAE/x.bin" in line
    cfg = tmp_path / "clash.toml"
    cfg.write_text(text)
    r = cli(modelfs_bin, "check", cfg, expect=1)
    assert re.search(rb"VAE/x\.bin\s+url\s+1\.00 MiB\s+ok", r.stdout), r.stdout
    assert re.search(rb"VAE/x\.bin\s+url\s+1\.00 MiB\s+error\s+the path VAE/x\.bin is already "
                     rb"entry vae/a's", r.stdout), r.stdout


def test_an_entry_that_failed_gives_its_path_to_one_that_can_be_read(hub, mount, modelfs_bin):
    # Drive has no file 1gone-id, so entry x.bin keeps its own name; b is
    # named x.bin by its URL: b is served there, and the Drive entry keeps
    # its own error (not a clash), in status too.
    hub.add_file("x.bin", MiB, seed=3)
    m = mount(drive_config(hub, {"vae": {
        "x.bin": '"https://drive.google.com/file/d/1gone-id/view"',
        "b": url_entry(hub.url("x.bin"))}}), expect_partial=True,
        allowed_errors=[r"entry=vae/x\.bin path=VAE/x\.bin"])
    assert pread(m.path / "VAE" / "x.bin", 0, 64) == (hub.root / "x.bin").read_bytes()[:64]
    files = {f["entry"]: f for f in status_json(modelfs_bin, m.cache_dir)["files"]}
    gone, ok = files["vae/x.bin"], files["vae/b"]
    assert gone["state"] == "error" and "1gone-id" in gone["error"]
    assert ok["state"] != "error" and ok["error"] is None
