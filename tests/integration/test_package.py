"""The Debian package: tools/deb.sh builds it from this tree with
dpkg-buildpackage and lintian finds no error; it holds the program, the
mount helpers, the man pages, the systemd unit and the example config,
depends on fuse3 and the libraries modelfs links; the program it
installs runs, and installed with dpkg in a Debian container it mounts."""

import shutil
import subprocess

import pytest

from conftest import REPO
from test_container import make_work, mount_in_box_and_read, rootfs  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def deb():
    r = subprocess.run(["bash", str(REPO / "tools" / "deb.sh")], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


def test_the_package_holds_what_a_user_needs(deb):
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                             check=True).stdout
    for path in ("./usr/bin/modelfs", "./sbin/mount.fuse.modelfs -> /usr/bin/modelfs",
                 "./sbin/mount.modelfs -> /usr/bin/modelfs",
                 "./usr/lib/systemd/system/modelfs@.service",
                 "./usr/share/man/man1/modelfs.1.gz", "./usr/share/man/man5/modelfs.toml.5.gz",
                 "./usr/share/doc/modelfs/examples/demo.toml",
                 "./usr/share/doc/modelfs/copyright"):
        assert path in listing, path
    depends = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True,
                             text=True, check=True).stdout
    for lib in ("fuse3", "libfuse3-3", "libcurl4", "libsqlite3-0", "libmicrohttpd12"):
        assert lib in depends, depends


def test_the_installed_program_runs(deb, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
    r = subprocess.run([str(root / "usr/bin/modelfs"), "--version"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and "0.1.0" in r.stdout + r.stderr, (r.stdout, r.stderr)
    unit = (root / "usr/lib/systemd/system/modelfs@.service").read_text()
    assert "ExecStart=/usr/bin/modelfs mount" in unit


def test_the_package_installs_and_mounts_in_a_container(deb, rootfs, hub, tmp_path):
    """The .deb installed with dpkg in the Debian root (an overlay over the
    cached one, thrown away after), then mounted in there; the host reads
    the file through /proc/PID/root."""
    work, cfg, sha = make_work(hub, tmp_path)
    shutil.copy(deb, work / "modelfs.deb")
    script = ("dpkg -i /work/modelfs.deb >/work/dpkg.log 2>&1 && exec /usr/bin/modelfs mount -f "
              "--cache-dir /work/cache /work/%s /work/mnt" % cfg)
    argv = ["systemd-nspawn", "-q", "-D", rootfs, "--register=no", "--keep-unit",
            "--volatile=overlay", "--as-pid2", "--console=pipe", "--bind=%s:/work" % work,
            "--bind=/dev/fuse", "sh", "-c", script]
    mount_in_box_and_read(argv, "/usr/bin/modelfs", work, cfg, sha, tmp_path, timeout=120)
