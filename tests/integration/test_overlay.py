"""Local files beside remote ones (DESIGN.md §6): what was in the
mountpoint stays visible and writable, new files land on the real disk,
remote entries stay read-only, and a local file under a remote name wins."""

import errno
import json
import os
import stat
import subprocess
import time

import pytest

from mfs import MiB, config

SIDECARS = ("m.png", "m.preview.png", "m.json", "m.txt", "m.civitai.info",
            "m.metadata.json", "m.yaml")


def one_vae(hub, name="r.bin", size=4096, settings=""):
    hub.add_file(name, size)
    return config({"vae": {"r": '"%s"' % hub.url(name)}}, settings=settings)


def status(modelfs_bin, m, *args):
    r = subprocess.run([str(modelfs_bin), "status", "--cache-dir", str(m.cache_dir), *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def os_error(op):
    with pytest.raises(OSError) as e:
        op()
    return e.value.errno


def test_files_in_the_mountpoint_stay_visible_writable_and_survive_a_remount(hub, mount,
                                                                           tmp_path):
    mnt = tmp_path / "models"
    (mnt / "VAE").mkdir(parents=True)
    (mnt / "VAE" / "old.png").write_bytes(b"png")
    (mnt / "notes.txt").write_text("mine")
    (mnt / "outputs" / "a").mkdir(parents=True)
    cfg = one_vae(hub)
    m = mount(cfg, mountpoint=mnt)
    assert {"notes.txt", "outputs", "VAE", "Lora"} <= set(os.listdir(m.path))
    assert sorted(os.listdir(m.path / "VAE")) == ["old.png", "r.bin"]
    assert (m.path / "notes.txt").read_text() == "mine"
    with open(m.path / "notes.txt", "a") as f:
        f.write(" and more")
    assert (m.path / "notes.txt").read_text() == "mine and more"
    # Sidecars beside a remote model, in a folder that is only remote so far.
    for name in SIDECARS:
        (m.path / "Lora" / name).write_text(name)
    (m.path / "VAE" / "r.preview.png").write_bytes(b"x" * 3000)
    (m.path / "outputs" / "b").mkdir()
    (m.path / "outputs" / "b" / "img.webp").write_bytes(b"w")
    os.rename(m.path / "VAE" / "old.png", m.path / "VAE" / "older.png")
    os.rename(m.path / "outputs" / "a", m.path / "outputs" / "c")
    (m.path / "Lora" / "m.txt").unlink()
    (m.path / "outputs" / "c").rmdir()
    assert sorted(os.listdir(m.path / "Lora")) == sorted(set(SIDECARS) - {"m.txt"})
    assert sorted(os.listdir(m.path / "VAE")) == ["older.png", "r.bin", "r.preview.png"]
    assert (m.path / "VAE" / "r.bin").read_bytes() == (hub.root / "r.bin").read_bytes()
    st = os.stat(m.path / "Lora" / "m.json")
    assert stat.S_ISREG(st.st_mode) and st.st_size == len("m.json")
    m.unmount()
    # On the real disk, under the mountpoint itself.
    assert (mnt / "VAE" / "older.png").read_bytes() == b"png"
    assert (mnt / "Lora" / "m.yaml").read_text() == "m.yaml"
    assert not (mnt / "VAE" / "r.bin").exists()       # remote bytes never land there
    m2 = mount(cfg, mountpoint=mnt, cache_dir=m.cache_dir)
    assert sorted(os.listdir(m2.path / "outputs")) == ["b"]
    assert (m2.path / "outputs" / "b" / "img.webp").read_bytes() == b"w"
    assert (m2.path / "VAE" / "r.preview.png").read_bytes() == b"x" * 3000
    assert sorted(os.listdir(m2.path / "VAE")) == ["older.png", "r.bin", "r.preview.png"]


def test_remote_entries_refuse_changes_with_erofs_and_a_log_line(hub, mount):
    m = mount(one_vae(hub))
    f = m.path / "VAE" / "r.bin"
    (m.path / "VAE" / "mine.txt").write_text("x")
    for op in (lambda: open(f, "r+b"), lambda: open(f, "wb"), lambda: open(f, "ab"),
               lambda: os.truncate(f, 0), lambda: f.unlink(),
               lambda: f.rename(m.path / "VAE" / "x.bin"),
               lambda: os.rename(m.path / "VAE" / "mine.txt", f),
               lambda: os.chmod(f, 0o644), lambda: os.utime(f, (1, 1)),
               lambda: os.setxattr(f, "user.x", b"1"),
               lambda: (m.path / "VAE").rmdir(), lambda: (m.path / "VAE").rename(m.path / "V")):
        assert os_error(op) == errno.EROFS, op
    assert f.read_bytes() == (hub.root / "r.bin").read_bytes()
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o444
    log = m.log()
    assert "event=read_only path=VAE/r.bin" in log
    # once per file and minute, not once per refusal
    assert log.count("event=read_only path=VAE/r.bin ") == 1
    assert 'event=read_only path=VAE/r.bin op="open for writing" errno=EROFS' in log
    assert 'event=read_only path=VAE op="rmdir"' in log


def test_a_new_local_name_that_a_remote_entry_has_is_eexist(hub, mount):
    m = mount(one_vae(hub))
    f = m.path / "VAE" / "r.bin"
    assert os_error(lambda: os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY)) == errno.EEXIST
    assert os_error(lambda: os.mkdir(f)) == errno.EEXIST
    assert os_error(lambda: os.mkdir(m.path / "VAE")) == errno.EEXIST
    assert os_error(lambda: os.symlink("/etc/hostname", f)) == errno.EEXIST
    assert f.read_bytes() == (hub.root / "r.bin").read_bytes()


def test_a_local_file_under_a_remote_name_wins_and_status_says_shadowed(hub, mount, tmp_path,
                                                                        modelfs_bin):
    mnt = tmp_path / "models"
    (mnt / "VAE").mkdir(parents=True)
    (mnt / "VAE" / "r.bin").write_bytes(b"my own bytes")
    m = mount(one_vae(hub), mountpoint=mnt)
    f = m.path / "VAE" / "r.bin"
    assert f.read_bytes() == b"my own bytes"
    assert os.stat(f).st_size == len(b"my own bytes")
    with open(f, "ab") as out:                          # the user's file: writable
        out.write(b"!")
    assert f.read_bytes() == b"my own bytes!"
    assert os.listdir(m.path / "VAE") == ["r.bin"]
    text = status(modelfs_bin, m)
    row = [line for line in text.splitlines() if "VAE/r.bin" in line]
    assert row and "shadowed" in row[0], text
    files = json.loads(status(modelfs_bin, m, "--json"))["files"]
    assert [x["shadowed"] for x in files if x["path"] == "VAE/r.bin"] == [True]
    warn = [line for line in m.log().splitlines() if "event=shadowed" in line]
    assert len(warn) == 1 and "path=VAE/r.bin" in warn[0] and "entry=vae/r" in warn[0]
    assert "local=%s/VAE/r.bin" % m.path in warn[0]
    # Moving the local file away (it is the user's) brings the entry back.
    f.rename(m.path / "VAE" / "mine.bin")
    assert sorted(os.listdir(m.path / "VAE")) == ["mine.bin", "r.bin"]
    assert f.read_bytes() == (hub.root / "r.bin").read_bytes()
    assert os_error(lambda: f.unlink()) == errno.EROFS
    assert os_error(lambda: os.rename(m.path / "VAE" / "mine.bin", f)) == errno.EROFS
    (m.path / "VAE" / "mine.bin").unlink()
    assert os.listdir(m.path / "VAE") == ["r.bin"]


def test_a_local_file_where_the_mount_has_a_folder_is_hidden_with_a_warning(hub, mount,
                                                                          tmp_path):
    """The folder holds the entries, so it is shown; the user's file of
    that name is kept on disk and named in a warning, not dropped silently."""
    mnt = tmp_path / "models"
    mnt.mkdir()
    (mnt / "VAE").write_bytes(b"not a folder")
    m = mount(one_vae(hub), mountpoint=mnt)
    assert (m.path / "VAE").is_dir() and os.listdir(m.path / "VAE") == ["r.bin"]
    warn = [line for line in m.log().splitlines() if "event=hidden" in line]
    assert len(warn) == 1 and "path=VAE" in warn[0] and "local=%s/VAE" % m.path in warn[0], warn
    m.unmount()
    assert (mnt / "VAE").read_bytes() == b"not a folder"


def test_files_are_owned_by_the_writer_not_the_daemon(hub, mount, tmp_path):
    mnt = tmp_path / "models"
    (mnt / "shared").mkdir(parents=True)
    os.chown(mnt / "shared", 1000, 1000)
    # pytest's temp dirs are 0700: let the other user walk down to the mount.
    for d in [mnt] + list(mnt.parents)[:-2]:
        os.chmod(d, os.stat(d).st_mode | 0o711)
    m = mount(one_vae(hub), mountpoint=mnt, extra_args=["-o", "uid=1000,gid=1000"])
    script = ("set -e; echo hi > VAE/r.preview.png; mkdir -p out/x; echo o > out/x/f.txt; "
              "echo s > shared/s.txt; ln -s r.bin VAE/link")
    r = subprocess.run(["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
                        "sh", "-c", script], cwd=m.path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for rel in ("VAE/r.preview.png", "out", "out/x", "out/x/f.txt", "shared/s.txt"):
        st = os.lstat(m.path / rel)
        assert (st.st_uid, st.st_gid) == (1000, 1000), rel
    assert os.lstat(m.path / "VAE" / "link").st_uid == 1000
    assert os.readlink(m.path / "VAE" / "link") == "r.bin"
    # Someone else may not write into the writer's folder.
    r = subprocess.run(["setpriv", "--reuid=1001", "--regid=1001", "--clear-groups",
                        "sh", "-c", "echo no > shared/no.txt"], cwd=m.path,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    m.unmount()
    assert os.stat(mnt / "VAE" / "r.preview.png").st_uid == 1000
    assert os.stat(mnt / "VAE").st_uid == 1000       # made for it, owned like the mount


@pytest.fixture
def small_tmpfs(tmp_path):
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("cannot mount a tmpfs (needed to test a full disk): " + r.stderr)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)])


def test_statfs_is_the_local_filesystem_and_a_full_disk_is_enospc(hub, mount, small_tmpfs):
    (small_tmpfs / "keep.txt").write_text("keep")
    m = mount(one_vae(hub, size=3 * MiB), mountpoint=small_tmpfs)
    try:
        sv = os.statvfs(m.path)
        assert sv.f_blocks * sv.f_frsize == MiB
        assert not sv.f_flag & os.ST_RDONLY
        with pytest.raises(OSError) as e:
            with open(m.path / "big.bin", "wb") as f:
                for _ in range(4):
                    f.write(b"z" * (512 * 1024))
                    f.flush()
                os.fsync(f.fileno())
        assert e.value.errno == errno.ENOSPC
        os.unlink(m.path / "big.bin")
        assert (m.path / "keep.txt").read_text() == "keep"
        assert (m.path / "VAE" / "r.bin").read_bytes() == (hub.root / "r.bin").read_bytes()
        (m.path / "after.txt").write_text("room again")
    finally:
        m.unmount()
    # Reading a remote file made nothing locally; the writer's own file is its to remove.
    assert sorted(os.listdir(small_tmpfs)) == ["after.txt", "keep.txt"]


def test_local_files_never_count_in_the_cache(hub, mount, modelfs_bin):
    m = mount(one_vae(hub))
    (m.path / "VAE" / "r.bin").read_bytes()
    before = json.loads(status(modelfs_bin, m, "--json"))["cache"]["used"]
    (m.path / "VAE" / "big.safetensors").write_bytes(b"b" * (2 * MiB))
    (m.path / "VAE" / "big.safetensors").read_bytes()
    st = json.loads(status(modelfs_bin, m, "--json"))
    assert st["cache"]["used"] == before
    assert [f["path"] for f in st["files"]] == ["VAE/r.bin"]


def test_local_dir_is_an_overlay_of_the_users_choosing(hub, mount, tmp_path):
    overlay = tmp_path / "overlay"
    (overlay / "VAE").mkdir(parents=True)
    (overlay / "VAE" / "there.txt").write_text("t")
    m = mount(one_vae(hub, settings='local_dir = "%s"' % overlay))
    assert sorted(os.listdir(m.path / "VAE")) == ["r.bin", "there.txt"]
    (m.path / "VAE" / "new.json").write_text("{}")
    assert (overlay / "VAE" / "new.json").read_text() == "{}"
    # Dropped in from outside: seen at once (short timeouts on local names).
    assert not (m.path / "VAE" / "dropped.png").exists()
    (overlay / "VAE" / "dropped.png").write_bytes(b"d")
    time.sleep(1.2)
    assert (m.path / "VAE" / "dropped.png").read_bytes() == b"d"
    assert "dropped.png" in os.listdir(m.path / "VAE")


def test_local_dir_mount_option_and_a_missing_one_is_refused_by_name(hub, mount, tmp_path):
    overlay = tmp_path / "ov"
    overlay.mkdir()
    m = mount(one_vae(hub), extra_args=["-o", "local_dir=%s" % overlay])
    (m.path / "x.txt").write_text("x")
    assert (overlay / "x.txt").read_text() == "x"
    bad = mount(one_vae(hub), extra_args=["-o", "local_dir=%s" % (tmp_path / "nope")],
                expect_fail=True)
    assert "nope" in bad.stderr and "local_dir" in bad.stderr


def test_ro_keeps_local_files_read_only(hub, mount, tmp_path):
    mnt = tmp_path / "models"
    mnt.mkdir()
    (mnt / "notes.txt").write_text("mine")
    m = mount(one_vae(hub), mountpoint=mnt, extra_args=["-o", "ro"])
    assert (m.path / "notes.txt").read_text() == "mine"
    assert os_error(lambda: open(m.path / "notes.txt", "a")) == errno.EROFS
    assert os_error(lambda: (m.path / "new.txt").write_text("x")) == errno.EROFS
    assert os.statvfs(m.path).f_flag & os.ST_RDONLY


def test_a_local_symlink_never_leads_the_daemon_outside(hub, mount, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("root's")
    os.utime(outside, (1000000000, 1000000000))
    m = mount(one_vae(hub))
    link = m.path / "VAE" / "l"
    os.symlink(str(outside), link)
    os.utime(link, (5, 5), follow_symlinks=False)      # the link's own times, or EPERM
    assert os.stat(outside).st_mtime == 1000000000
    assert os.readlink(link) == str(outside)
    os.unlink(link)
    assert outside.read_text() == "root's"


def test_source_local_entries_appear_in_the_layout_and_pass_reads_through(hub, mount, tmp_path,
                                                                          modelfs_bin):
    data = tmp_path / "data"
    data.mkdir()
    mine = data / "mine.safetensors"
    mine.write_bytes(os.urandom(300 * 1024))
    os.chmod(mine, 0o640)
    hub.add_file("r.bin", 4096)
    cfg = config({"vae": {"r": '"%s"' % hub.url("r.bin")},
                  "lora": {"mine": '{ source = "local", path = "%s" }' % mine,
                           "named": '{ path = "%s", filename = "other.bin" }' % mine}})
    m = mount(cfg)
    lora = m.path / "Lora"
    assert sorted(os.listdir(lora)) == ["mine.safetensors", "other.bin"]
    assert (lora / "mine.safetensors").read_bytes() == mine.read_bytes()
    st = os.stat(lora / "other.bin")
    assert st.st_size == 300 * 1024 and stat.S_IMODE(st.st_mode) == 0o440
    for op in (lambda: open(lora / "other.bin", "ab"), lambda: (lora / "other.bin").unlink(),
               lambda: os.truncate(lora / "other.bin", 0)):
        assert os_error(op) == errno.EROFS, op
    with open(mine, "ab") as f:                        # read as it is now
        f.write(b"tail")
    time.sleep(1.2)
    assert (lora / "mine.safetensors").read_bytes()[-4:] == b"tail"
    st = json.loads(status(modelfs_bin, m, "--json"))
    assert [f["path"] for f in st["files"]] == ["VAE/r.bin"]   # nothing of it is cached
    r = subprocess.run([str(modelfs_bin), "check", str(m.config_path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    row = [line for line in r.stdout.splitlines() if line.startswith("Lora/mine.safetensors")]
    assert row and " local " in row[0] and " ok " in row[0], r.stdout


def test_source_local_bad_paths_are_named_with_the_fix(hub, mount, tmp_path):
    hub.add_file("r.bin", 4096)
    remote = '"%s"' % hub.url("r.bin")
    bad = mount(config({"vae": {"r": remote, "l": '{ source = "local", path = "rel/x.bin" }'}}),
                expect_fail=True)
    assert "path" in bad.stderr and "absolute" in bad.stderr
    missing = tmp_path / "nowhere.bin"
    m = mount(config({"vae": {"r": remote, "l": '{ source = "local", path = "%s" }' % missing}}),
              expect_partial=True)
    assert "vae/l" in m.stderr and str(missing) in m.stderr and "fix path" in m.stderr
    assert os_error(lambda: open(m.path / "VAE" / "nowhere.bin", "rb")) == errno.ENOENT
    mnt = tmp_path / "models"
    mnt.mkdir()
    (mnt / "x.bin").write_bytes(b"x")
    inside = mount(config({"vae": {"r": remote,
                                   "l": '{ source = "local", path = "%s" }' % (mnt / "x.bin")}}),
                   mountpoint=mnt, expect_fail=True)
    assert "inside the mountpoint" in inside.stderr and "vae/l" in inside.stderr


def test_hard_links_between_local_files_and_never_to_remote_ones(hub, mount):
    m = mount(one_vae(hub))
    a = m.path / "VAE" / "a.txt"
    a.write_text("same")
    os.link(a, m.path / "b.txt")
    assert (m.path / "b.txt").read_text() == "same" and os.stat(a).st_nlink == 2
    assert os_error(lambda: os.link(m.path / "VAE" / "r.bin", m.path / "c.bin")) == errno.EROFS
    assert os_error(lambda: os.link(a, m.path / "VAE" / "r.bin")) == errno.EEXIST


def test_many_writers_and_listers_at_once(hub, mount):
    """The FUSE loop is multi-threaded: local nodes are made, renamed and
    forgotten from many threads while others list (ASan checks the rest)."""
    import threading
    m = mount(one_vae(hub))
    errors = []

    def writer(k):
        try:
            d = m.path / ("w%d" % k)
            d.mkdir()
            for i in range(60):
                f = d / ("f%d.txt" % i)
                f.write_text("%d-%d" % (k, i))
                f.rename(d / ("g%d.txt" % i))
                assert (d / ("g%d.txt" % i)).read_text() == "%d-%d" % (k, i)
                if i % 2:
                    (d / ("g%d.txt" % i)).unlink()
        except Exception as e:                      # reported below
            errors.append(e)

    def lister():
        try:
            for _ in range(100):
                for entry in os.scandir(m.path):
                    entry.stat(follow_symlinks=False)
                os.listdir(m.path / "VAE")
        except FileNotFoundError:
            pass
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    threads += [threading.Thread(target=lister) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in range(6):
        assert len(os.listdir(m.path / ("w%d" % k))) == 30
