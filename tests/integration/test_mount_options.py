"""The -o options of `modelfs mount` (the parser the mount helpers share):
owner, group and umask as stat shows them and as the kernel enforces them,
fstab-only options ignored, the layout switched, unknown options refused,
fsname/subtype for findmnt, allow_other for users without
user_allow_other, and `modelfs unmount`."""

import json
import os
import stat
import subprocess

from mfs import MiB, config, run


def one_vae(hub, name="v.bin"):
    hub.add_file(name, MiB)
    return config({"vae": {"x": '"%s"' % hub.url(name)}})


def test_uid_gid_umask_show_in_stat_and_decide_who_reads(hub, mount):
    m = mount(one_vae(hub), extra_args=[       # -o given twice joins, as mount(8) does
        "-o", "uid=1234,gid=5678,umask=027,allow_other,_netdev,nofail,noauto,users",
        "-o", "defaults,rw,x-systemd.automount,comment=x,layout=comfyui"])
    f = m.path / "vae" / "v.bin"                 # comfyui's folder, not forge's VAE/
    st, dst = os.stat(f), os.stat(f.parent)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert stat.S_IMODE(st.st_mode) == 0o440
    # Folders are the owner's to add local files to (test_overlay.py).
    assert stat.S_IMODE(dst.st_mode) == 0o750 and dst.st_uid == 1234
    assert stat.S_IMODE(os.stat(m.path).st_mode) == 0o750
    # default_permissions: the kernel checks these; the group may read,
    # others may not even look in the folder. (Started in it: the temp
    # dir above is root's alone.)
    as_group = subprocess.run(["setpriv", "--reuid=4321", "--regid=5678", "--clear-groups",
                               "cat", "v.bin"], cwd=f.parent, capture_output=True)
    assert as_group.returncode == 0, as_group.stderr
    assert as_group.stdout == (hub.root / "v.bin").read_bytes()
    as_other = run(["setpriv", "--reuid=4321", "--regid=4321", "--clear-groups",
                    "cat", "v.bin"], cwd=f.parent)
    assert as_other.returncode != 0 and "Permission denied" in as_other.stderr


def test_findmnt_finds_the_mount_by_type_and_config(hub, mount):
    m = mount(one_vae(hub))
    r = run(["findmnt", "-J", "-t", "fuse.modelfs", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS"])
    assert r.returncode == 0, r.stderr
    rows = {fs["target"]: fs for fs in json.loads(r.stdout)["filesystems"]}
    assert str(m.path) in rows
    assert rows[str(m.path)]["source"] == "modelfs:%s" % m.config_path
    # rw: local files beside the remote ones may change (test_overlay.py)
    assert rows[str(m.path)]["options"].startswith("rw,")


def test_defaults_are_the_mounting_user_and_world_readable(hub, mount):
    m = mount(one_vae(hub))
    st = os.stat(m.path / "VAE" / "v.bin")
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert stat.S_IMODE(st.st_mode) == 0o444


def test_unknown_and_reserved_options_are_refused_by_name(modelfs_bin, hub, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(one_vae(hub))
    mnt = tmp_path / "mnt"
    for opts, named in (("allow_other,nonempty", '"nonempty"'), ("fsname=x", "findmnt"),
                        ("umask=9", "umask=9"), ("uid=no-such-user-x", "no-such-user-x"),
                        ("layout=a1111", "layout=a1111")):
        r = run([modelfs_bin, "mount", "--cache-dir", tmp_path / "cache", "-o", opts, cfg, mnt],
                timeout=30)
        assert r.returncode == 2, (opts, r.stderr)
        assert named in r.stderr and "-o" in r.stderr, (opts, r.stderr)
        assert not os.path.ismount(mnt)


def test_allow_other_without_user_allow_other_names_fuse_conf(modelfs_bin, hub, tmp_path):
    """A user other than root asking for allow_other, with an /etc/fuse.conf
    (bound over the real one in a private mount namespace) that lacks
    user_allow_other."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(one_vae(hub))
    conf = tmp_path / "fuse.conf"
    conf.write_text("#user_allow_other\n")
    for p in (tmp_path, cfg, conf):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    script = ('mount --bind "$1" /etc/fuse.conf && exec setpriv --reuid=65534 --regid=65534 '
              '--clear-groups env HOME=/nonexistent "$2" mount -o allow_other '
              '--cache-dir "$3" "$4" "$5"')
    r = run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", conf,
             modelfs_bin, tmp_path / "cache", cfg, tmp_path / "mnt"], timeout=30)
    assert r.returncode == 2, r.stderr
    assert "/etc/fuse.conf" in r.stderr and "user_allow_other" in r.stderr


def test_unmount_stops_the_daemon_and_touches_only_modelfs_mounts(modelfs_bin, hub, mount):
    m = mount(one_vae(hub))
    pid = m.pid
    assert pid and os.getxattr(m.path, "user.modelfs.pid").decode() == str(pid)
    r = run([modelfs_bin, "unmount", m.path], timeout=20)
    assert r.returncode == 0, r.stderr
    assert not m.is_mounted()
    assert not os.path.exists("/proc/%d" % pid) or \
        open("/proc/%d/stat" % pid).read().split(")")[1].split()[0] == "Z"
    r = run([modelfs_bin, "unmount", "/proc"])
    assert r.returncode == 1 and "not a modelfs one" in r.stderr
    r = run([modelfs_bin, "unmount", m.path])
    assert r.returncode == 1 and "not mounted" in r.stderr


def test_lazy_unmount_detaches_a_busy_mount(modelfs_bin, hub, mount):
    m = mount(one_vae(hub))
    busy = subprocess.Popen(["sleep", "30"], cwd=m.path / "VAE")
    try:
        r = run([modelfs_bin, "unmount", m.path])
        assert r.returncode == 1 and "--lazy" in r.stderr
        assert m.is_mounted()
        r = run([modelfs_bin, "unmount", "--lazy", m.path])
        assert r.returncode == 0, r.stderr
        assert not m.is_mounted()
    finally:
        busy.kill()
        busy.wait()
