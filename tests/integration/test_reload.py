"""`modelfs reload` and SIGHUP: a live mount re-reads its config. Added
entries appear, removed ones leave the listings while an open fd reads on,
unchanged ones keep their inode and cache, and a config that does not load
changes nothing."""

import os
import signal
import subprocess

from conftest import fusermount_unmount
from mfs import config, file_slice, url_entry, wait_for

SETTINGS = "header_prefetch = false"


def reload(modelfs_bin, m, *args):
    return subprocess.run([str(modelfs_bin), "reload", *args, str(m.path)],
                          capture_output=True, text=True, timeout=60)


def entries(hub, names):
    return {"loras": {n: url_entry(hub.url(n + ".safetensors")) for n in names}}


def rewrite(m, text):
    # Written aside and renamed in, as an editor does.
    tmp = m.config_path.with_name(".config.toml.tmp")
    tmp.write_text(text)
    os.replace(tmp, m.config_path)


def test_a_lora_added_appears_while_a_reader_holds_another_file(hub, mount, modelfs_bin):
    srcs = {n: hub.add_file(n + ".safetensors", 3 << 20, seed=i)[0]
            for i, n in enumerate(("a", "b"))}
    m = mount(config(entries(hub, ["a"]), settings=SETTINGS))
    lora = m.path / "Lora"
    assert sorted(os.listdir(lora)) == ["a.safetensors"]
    ino_a = os.stat(lora / "a.safetensors").st_ino
    with open(lora / "a.safetensors", "rb", buffering=0) as f:
        first = f.read(1 << 20)
        rewrite(m, config(entries(hub, ["a", "b"]), settings=SETTINGS))
        r = reload(modelfs_bin, m)
        assert r.returncode == 0, r.stderr
        assert "1 added (loras/b)" in r.stdout and "1 unchanged" in r.stdout, r.stdout
        # At once, though the kernel may keep a listing and a miss for a day.
        assert sorted(os.listdir(lora)) == ["a.safetensors", "b.safetensors"]
        assert (lora / "b.safetensors").read_bytes() == srcs["b"].read_bytes()
        # The reader is unaffected: same inode, the rest of its bytes.
        rest = f.read()
    assert first + rest == srcs["a"].read_bytes()
    assert os.stat(lora / "a.safetensors").st_ino == ino_a


def test_a_removed_entry_leaves_the_listing_and_an_open_fd_reads_on(hub, mount, modelfs_bin):
    srcs = {n: hub.add_file(n + ".safetensors", 2 << 20, seed=i)[0]
            for i, n in enumerate(("a", "b"))}
    m = mount(config(entries(hub, ["a", "b"]), settings=SETTINGS))
    lora = m.path / "Lora"
    fd = os.open(lora / "b.safetensors", os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 0) == file_slice(srcs["b"], 0, 4096)
        rewrite(m, config(entries(hub, ["a"]), settings=SETTINGS))
        r = reload(modelfs_bin, m)
        assert r.returncode == 0, r.stderr
        assert "1 removed (loras/b)" in r.stdout, r.stdout
        assert sorted(os.listdir(lora)) == ["a.safetensors"]
        assert not (lora / "b.safetensors").exists()
        st = subprocess.run([str(modelfs_bin), "status", "--json", str(m.path)],
                            capture_output=True, text=True, timeout=30)
        assert "b.safetensors" not in st.stdout
        # The open fd reads every byte, exactly, until it is closed.
        assert os.fstat(fd).st_size == 2 << 20
        got = b"".join(os.pread(fd, 1 << 20, off) for off in range(0, 2 << 20, 1 << 20))
        assert got == srcs["b"].read_bytes()
    finally:
        os.close(fd)
    assert (lora / "a.safetensors").read_bytes() == srcs["a"].read_bytes()


def test_a_changed_entry_is_a_new_file_and_unchanged_ones_are_not_fetched_again(
        hub, mount, modelfs_bin):
    a, _ = hub.add_file("a.safetensors", 1 << 20, seed=1)
    b, _ = hub.add_file("b.safetensors", 1 << 20, seed=2)
    c, _ = hub.add_file("c.safetensors", 1 << 20, seed=3)
    m = mount(config(entries(hub, ["a", "b"]), settings=SETTINGS))
    lora = m.path / "Lora"
    assert (lora / "a.safetensors").read_bytes() == a.read_bytes()
    old_b = os.stat(lora / "b.safetensors").st_ino
    ino_a = os.stat(lora / "a.safetensors").st_ino
    hub.reset()
    # b now points at c's bytes, under its own name.
    cfg = entries(hub, ["a"])
    cfg["loras"]["b"] = url_entry(hub.url("c.safetensors"), filename="b.safetensors")
    rewrite(m, config(cfg, settings=SETTINGS))
    r = reload(modelfs_bin, m, "--json")
    assert r.returncode == 0, r.stderr
    assert '"changed": ["loras/b"]' in r.stdout.replace("\n", "").replace("  ", ""), r.stdout
    assert (lora / "b.safetensors").read_bytes() == c.read_bytes()
    assert os.stat(lora / "b.safetensors").st_ino != old_b
    assert os.stat(lora / "a.safetensors").st_ino == ino_a
    assert (lora / "a.safetensors").read_bytes() == a.read_bytes()
    # Nothing of the unchanged entry was asked for again, not even its size.
    assert hub.requests(path="a.safetensors") == []


def test_a_config_that_does_not_load_changes_nothing(hub, mount, modelfs_bin):
    src, _ = hub.add_file("a.safetensors", 1 << 20)
    m = mount(config(entries(hub, ["a"]), settings=SETTINGS),
              allowed_errors=[r"event=reload_failed"])
    text = config(entries(hub, ["a"]), settings=SETTINGS)
    rewrite(m, text + "[models.vae]\nbroken = { url = \n")
    bad_line = len(text.splitlines()) + 2
    r = reload(modelfs_bin, m)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "config.toml:%d" % bad_line in r.stderr, r.stderr
    assert "event=reload_failed" in m.log()
    assert sorted(os.listdir(m.path / "Lora")) == ["a.safetensors"]
    assert (m.path / "Lora" / "a.safetensors").read_bytes() == src.read_bytes()


def test_sighup_reloads_as_the_command_does(hub, mount):
    b, _ = hub.add_file("b.safetensors", 1 << 20, seed=2)
    hub.add_file("a.safetensors", 1 << 20, seed=1)
    m = mount(config(entries(hub, ["a"]), settings=SETTINGS))
    lora = m.path / "Lora"
    assert sorted(os.listdir(lora)) == ["a.safetensors"]
    rewrite(m, config(entries(hub, ["b"]), settings=SETTINGS))
    os.kill(m.pid, signal.SIGHUP)
    wait_for(lambda: "event=reloaded" in m.log(), what="the reload after SIGHUP")
    assert sorted(os.listdir(lora)) == ["b.safetensors"]
    assert (lora / "b.safetensors").read_bytes() == b.read_bytes()
    assert m.is_mounted()


def test_layouts_and_local_files_survive_a_reload(hub, mount, modelfs_bin, tmp_path):
    hub.add_file("a.safetensors", 1 << 20, seed=1)
    b, _ = hub.add_file("b.safetensors", 1 << 20, seed=2)
    mnt = tmp_path / "models"
    (mnt / "forge" / "Lora").mkdir(parents=True)
    (mnt / "forge" / "Lora" / "mine.png").write_bytes(b"png")
    views = 'layout = ["forge", "comfyui"]\n' + SETTINGS
    m = mount(config(entries(hub, ["a"]), settings=views), mountpoint=mnt)
    rewrite(m, config(entries(hub, ["a", "b"]), settings=views))
    r = reload(modelfs_bin, m)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(m.path / "forge" / "Lora")) == ["a.safetensors", "b.safetensors",
                                                             "mine.png"]
    assert sorted(os.listdir(m.path / "comfyui" / "loras")) == ["a.safetensors",
                                                                 "b.safetensors"]
    assert (m.path / "comfyui" / "loras" / "b.safetensors").read_bytes() == b.read_bytes()
    assert (m.path / "forge" / "Lora" / "mine.png").read_bytes() == b"png"


def test_a_model_link_mount_has_nothing_to_reload(hub, modelfs_bin, tmp_path):
    hub.add_file("a.bin", 1 << 20)
    mnt, cache, log = tmp_path / "mnt", tmp_path / "cache", tmp_path / "m.log"
    mnt.mkdir()
    r = subprocess.run([str(modelfs_bin), "mount", "--cache-dir", str(cache), "--log-file",
                        str(log), "--model", hub.url("a.bin"), str(mnt)],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    try:
        r = subprocess.run([str(modelfs_bin), "reload", str(mnt)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert "--model" in r.stderr and "no config" in r.stderr, r.stderr
        assert os.listdir(mnt / "Stable-diffusion") == ["a.bin"]
    finally:
        fusermount_unmount(mnt)


def test_a_mount_that_serves_serves_what_a_reload_added(hub, mount, modelfs_bin):
    """[modelfs] serve on the mount's daemon: a Hugging Face entry added by
    a reload is served, one removed is not."""
    from hubclient import fetch
    from mfs import hf
    from test_serve import fixture, free_port
    port = free_port()
    tiny, _ = fixture(hub, "org/tiny", "config.json")
    settings = 'hf_endpoint = "%s"\nserve = "127.0.0.1:%d"\n%s' % (hub.base("hf"), port,
                                                                   SETTINGS)
    first = {"checkpoints": {"r": hf("org/tiny", file="README.md")}}
    m = mount(config(first, settings=settings))
    base = "http://127.0.0.1:%d" % port
    assert fetch(base + "/org/tiny/resolve/main/config.json").status == 404
    rewrite(m, config({"checkpoints": {"c": hf("org/tiny", file="config.json")}},
                      settings=settings))
    r = reload(modelfs_bin, m)
    assert r.returncode == 0, r.stderr
    got = fetch(base + "/org/tiny/resolve/main/config.json")
    assert got.status == 200 and got.body == tiny
    assert fetch(base + "/org/tiny/resolve/main/README.md").status == 404
    assert (m.path / "Stable-diffusion" / "config.json").read_bytes() == tiny


def test_reads_and_listings_go_on_through_many_reloads(hub, mount, modelfs_bin):
    """Readers list, stat and read while the config flips ten times between
    two sets: an entry in both is always there with its bytes; the others
    come and go, never half there (TSan runs this too)."""
    import threading
    srcs = {n: hub.add_file(n + ".safetensors", 512 << 10, seed=i)[0].read_bytes()
            for i, n in enumerate(("a", "b", "c"))}
    sets = [config(entries(hub, ["a", "b"]), settings=SETTINGS),
            config(entries(hub, ["a", "c"]), settings=SETTINGS)]
    m = mount(sets[0])
    lora = m.path / "Lora"
    stop = threading.Event()
    problems = []

    def reader():
        while not stop.is_set():
            try:
                names = os.listdir(lora)
                if "a.safetensors" not in names:
                    problems.append("a missing from %s" % names)
                if (lora / "a.safetensors").read_bytes() != srcs["a"]:
                    problems.append("a read wrong")
                for n in ("b", "c"):
                    try:
                        data = (lora / (n + ".safetensors")).read_bytes()
                    except FileNotFoundError:
                        continue
                    if data != srcs[n]:
                        problems.append("%s read wrong" % n)
            except OSError as e:
                problems.append(repr(e))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 11):
            rewrite(m, sets[i % 2])
            r = reload(modelfs_bin, m)
            assert r.returncode == 0, r.stderr
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert problems == []
    assert sorted(os.listdir(lora)) == ["a.safetensors", "b.safetensors"]


def test_a_failed_entry_is_retried_and_a_new_one_that_fails_is_named(hub, mount, modelfs_bin):
    """An entry that failed at mount is resolved again by a reload (the
    config unchanged); a new entry that fails is listed, named on stderr,
    and the reload exits 3 as a mount does."""
    hub.add_file("a.safetensors", 1 << 20, seed=1)
    m = mount(config(entries(hub, ["a", "late"]), settings=SETTINGS), expect_partial=True,
              allowed_errors=[r"event=entry_failed"])
    late, _ = hub.add_file("late.safetensors", 1 << 20, seed=2)
    r = reload(modelfs_bin, m, "--json")
    assert r.returncode == 0, r.stderr
    assert '"retried": ["loras/late"]' in r.stdout.replace("\n", "").replace("  ", ""), r.stdout
    assert (m.path / "Lora" / "late.safetensors").read_bytes() == late.read_bytes()
    rewrite(m, config(entries(hub, ["a", "late", "never"]), settings=SETTINGS))
    r = reload(modelfs_bin, m)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "1 added (loras/never)" in r.stdout and "loras/never:" in r.stderr, r


def test_a_mount_with_a_lock_reads_the_lock_again(hub, mount, modelfs_bin, tmp_path):
    """Mounted with --lock, a reload reads the lock too: an entry added to
    the config but not to the lock is listed with that error (exit 3); once
    `modelfs lock --update` pins it, a reload makes it readable, while the
    locked entry that did not change asks the origin nothing."""
    a, _ = hub.add_file("a.safetensors", 1 << 20, seed=1)
    b, _ = hub.add_file("b.safetensors", 1 << 20, seed=2)
    lockfile = tmp_path / "models.lock"

    def lock(cfg_path, *args):
        r = subprocess.run([str(modelfs_bin), "lock", "--cache-dir", str(tmp_path / "lc"),
                            str(cfg_path), *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr

    text = config(entries(hub, ["a"]), settings=SETTINGS)
    first = tmp_path / "first.toml"
    first.write_text(text)
    lock(first, "--output", str(lockfile))
    m = mount(text, extra_args=["--lock", lockfile],
              allowed_errors=[r"event=entry_failed entry=loras/b"])
    assert (m.path / "Lora" / "a.safetensors").read_bytes() == a.read_bytes()
    rewrite(m, config(entries(hub, ["a", "b"]), settings=SETTINGS))
    r = reload(modelfs_bin, m)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "loras/b" in r.stderr and "not in the lock" in r.stderr, r.stderr
    lock(m.config_path, "--update", "loras/b", "--lock", str(lockfile))
    hub.reset()
    r = reload(modelfs_bin, m)
    assert r.returncode == 0, r.stderr
    assert (m.path / "Lora" / "b.safetensors").read_bytes() == b.read_bytes()
    assert hub.requests(path="a.safetensors") == []


def test_a_changed_entry_stays_readable_while_its_new_source_resolves(hub, mount,
                                                                       modelfs_bin):
    """The old file of a changed entry is dropped only once the new one is
    resolved: a reader opening it all along never finds it missing."""
    import threading
    a, _ = hub.add_file("b.safetensors", 256 << 10, seed=1)
    c, _ = hub.add_file("c.safetensors", 256 << 10, seed=2)
    m = mount(config(entries(hub, ["b"]), settings=SETTINGS))
    path = m.path / "Lora" / "b.safetensors"
    assert path.read_bytes() == a.read_bytes()
    hub.faults(path="c.safetensors", header_delay_ms=1500)
    cfg = {"loras": {"b": url_entry(hub.url("c.safetensors"), filename="b.safetensors")}}
    rewrite(m, config(cfg, settings=SETTINGS))
    stop, seen = threading.Event(), []

    def reader():
        while not stop.is_set():
            try:
                seen.append(path.read_bytes())
            except OSError as e:
                seen.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        r = reload(modelfs_bin, m)
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stderr
    assert all(x in (a.read_bytes(), c.read_bytes()) for x in seen), \
        [x for x in seen if isinstance(x, Exception)][:3]
    assert path.read_bytes() == c.read_bytes()
