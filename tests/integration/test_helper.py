"""mount(8) and /etc/fstab, through the installed mount helpers.

Each test runs in a private mount namespace (unshare -m) where a copy of
/usr/sbin (the folder /sbin points to, where mount(8) looks for helpers)
holding mount.fuse.modelfs and mount.modelfs, links to the modelfs under
test, is bound over the real one, and a test fstab over /etc/fstab. The
mounts live in that namespace only and end with its processes."""

import os
import shlex
import shutil

import pytest

from mfs import MiB, config
from nsutil import end_procs, run_private, sanitizer_env, sanitizer_reports


@pytest.fixture
def ns(modelfs_bin, hub, tmp_path):
    """A folder with: sbin/ (the helper links among links to /usr/sbin's
    files), fstab, c.toml (one good, one failing entry), and the env."""
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) not found")
    sbin, orig = tmp_path / "sbin", tmp_path / "orig"
    sbin.mkdir()
    orig.mkdir()
    # Links into the real folder, which PRELUDE binds at orig/ first: a
    # link to /usr/sbin/X would point at itself once sbin/ is bound there.
    for name in os.listdir("/usr/sbin"):
        os.symlink(orig / name, sbin / name)
    for name in ("mount.fuse.modelfs", "mount.modelfs"):
        if (sbin / name).is_symlink():
            (sbin / name).unlink()
        os.symlink(modelfs_bin, sbin / name)
    _, sha = hub.add_file("good.bin", MiB)
    cfg = tmp_path / "c.toml"
    cfg.write_text(config({"vae": {"good": '"%s"' % hub.url("good.bin")}}))
    bad = tmp_path / "partial.toml"
    bad.write_text(config({"vae": {"good": '"%s"' % hub.url("good.bin"),
                                   "gone": '"%s"' % hub.url("gone.bin")}}))
    env = sanitizer_env(tmp_path, {"PATH": os.environ["PATH"]})    # mount(8) sets no HOME
    yield {"dir": tmp_path, "sbin": sbin, "cfg": cfg, "bad": bad, "env": env, "sha": sha}
    left = end_procs("modelfs:%s" % tmp_path)    # a daemon's source argument
    assert not left, "processes still running after the namespace ended: %s" % left
    reports = sanitizer_reports(tmp_path)
    assert not reports, "sanitizer report:\n" + "\n".join(reports)


PRELUDE = ('mount --bind /usr/sbin "$1/orig"; mount --bind "$1/sbin" /usr/sbin; '
           'mount --bind "$1/fstab" /etc/fstab; shift\n')


def in_ns(ns, script, *args, fstab=""):
    (ns["dir"] / "fstab").write_text(fstab)
    return run_private(PRELUDE + script, [ns["dir"], *args], env=ns["env"])


def q(p):
    return shlex.quote(str(p))


def test_mount_t_fuse_modelfs_is_live_on_return(ns, hub):
    d = ns["dir"]
    mnt = d / "models"
    r = in_ns(ns, '''
mount -t fuse.modelfs "modelfs:$1" "$2" -o "cache_dir=$3,allow_other,_netdev,nofail,noauto,x-systemd.automount,uid=1000,log_file=$4"
echo "rc=$?"
findmnt -n -o FSTYPE,SOURCE,OPTIONS "$2"
stat -c "%u %a" "$2/VAE/good.bin"
sha256sum < "$2/VAE/good.bin"
umount "$2"
''', ns["cfg"], mnt, d / "cache", d / "log")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "rc=0"
    fstype, source, opts = lines[1].split()
    assert (fstype, source) == ("fuse.modelfs", "modelfs:%s" % ns["cfg"])
    assert "allow_other" in opts.split(",")
    assert lines[2] == "1000 444"
    assert lines[3].split()[0] == ns["sha"]


def test_the_fstab_line_mounts_and_mount_t_modelfs_works_too(ns, hub):
    d = ns["dir"]
    fstab = ("modelfs:%s %s fuse.modelfs cache_dir=%s,allow_other,_netdev,nofail 0 0\n"
             "modelfs:%s %s modelfs cache_dir=%s,noauto,nofail,users 0 0\n"
             % (ns["cfg"], d / "a", d / "ca", ns["cfg"], d / "b", d / "cb"))
    r = in_ns(ns, '''
mkdir -p "$1/a" "$1/b"
mount "$1/a"; echo "a=$?"
mount "$1/b"; echo "b=$?"
findmnt -n -o TARGET,FSTYPE -t fuse.modelfs | grep -F "$1/" | sort   # others' mounts too
cat "$1/a/VAE/good.bin" | sha256sum
cat "$1/b/VAE/good.bin" | sha256sum
umount "$1/a" "$1/b"
''', d, fstab=fstab)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["a=0", "b=0"], r.stderr
    assert lines[2].split() == [str(d / "a"), "fuse.modelfs"]
    assert lines[3].split() == [str(d / "b"), "fuse.modelfs"]
    assert lines[4].split()[0] == lines[5].split()[0] == ns["sha"]


def test_failed_entries_exit_0_with_the_warning(ns, hub):
    d = ns["dir"]
    r = in_ns(ns, '''
mount -t fuse.modelfs "modelfs:$1" "$2" -o "cache_dir=$3,nofail" 2>"$4"; echo "rc=$?"
test -f "$2/VAE/good.bin" && echo live
umount "$2"
''', ns["bad"], d / "m", d / "c", d / "err")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["rc=0", "live"]
    err = (d / "err").read_text()
    assert "1 of 2 entries failed" in err and "vae/gone" in err


def test_unknown_options_and_relative_sources_are_refused(ns):
    d = ns["dir"]
    r = in_ns(ns, '''
mkdir -p "$2"
set +e
mount -t fuse.modelfs "modelfs:$1" "$2" -o "cache_dir=$3,colour=blue"; echo "rc=$?"
mount -t fuse.modelfs modelfs:c.toml "$2"; echo "rc=$?"
findmnt -n "$2" || echo "not mounted"
''', ns["cfg"], d / "m", d / "c")
    assert r.stdout.split() == ["rc=1", "rc=1", "not", "mounted"], (r.stdout, r.stderr)
    assert '"colour=blue"' in r.stderr
    assert "absolute path" in r.stderr


def test_mount_fuse3_runs_modelfs_with_its_appended_options(ns, hub, modelfs_bin):
    """mount.fuse3 (no mount.fuse.modelfs) runs `modelfs SRC MNT -o OPTS,dev,suid`
    through sh with PATH; here PATH leads to the modelfs under test."""
    d = ns["dir"]
    bindir = d / "bin"
    bindir.mkdir()
    os.symlink(modelfs_bin, bindir / "modelfs")
    r = in_ns(ns, '''
PATH="$4:$PATH" mount.fuse3 "modelfs:$1" "$2" -t fuse.modelfs -o "cache_dir=$3,_netdev"
echo "rc=$?"
findmnt -n -o FSTYPE,SOURCE "$2"
sha256sum < "$2/VAE/good.bin"
umount "$2"
''', ns["cfg"], d / "m", d / "c", bindir)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "rc=0"
    assert lines[1].split() == ["fuse.modelfs", "modelfs:%s" % ns["cfg"]]
    assert lines[2].split()[0] == ns["sha"]
