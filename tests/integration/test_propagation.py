"""Mount propagation, the thing container users trip over most: a FUSE
mount made in a child mount namespace reaches the parent only when the
folder is shared and the child keeps it shared (Docker's
bind-propagation=rshared, k8s Bidirectional); from a slave namespace (a
plain bind, HostToContainer) it stays inside, where nsenter and
/proc/PID/root still reach it; and a slave namespace started before the
mount sees the parent's mount (a consumer container).

All of it runs inside one private namespace with its own shared tmpfs,
so nothing reaches the test's own namespace; the processes are ended
at the end, and the mounts with them."""

import shutil

import pytest

from mfs import MiB, config
from nsutil import end_procs, run_private, sanitizer_env, sanitizer_reports

SCRIPT = r'''
D=$1; BIN=$2; CFG=$3
mkdir -p "$D/shared"
mount -t tmpfs tmpfs "$D/shared"
mount --make-shared "$D/shared"
mkdir "$D/shared/m1" "$D/shared/m2"
mkfifo "$D/fifo"
# A consumer started before any mount, as a slave of this namespace.
unshare -m --propagation slave cat "$D/fifo" &
CONSUMER=$!
while [ "$(readlink /proc/$CONSUMER/ns/mnt)" = "$(readlink /proc/self/ns/mnt)" ]; do sleep 0.01; done
# Shared: mounted in a child namespace that keeps the propagation.
unshare -m --propagation unchanged "$BIN" mount --cache-dir "$D/c1" "$CFG" "$D/shared/m1"
echo "shared-in-parent=$(findmnt -n -o FSTYPE "$D/shared/m1")"
echo "consumer-sees=$(nsenter -t $CONSUMER -m findmnt -n -o FSTYPE "$D/shared/m1")"
# Slave: mounted in a namespace that only receives.
unshare -m --propagation slave "$BIN" mount --cache-dir "$D/c2" "$CFG" "$D/shared/m2"
echo "slave-in-parent=$(findmnt -n -o FSTYPE "$D/shared/m2" || echo none)"
P2=$(for p in /proc/[0-9]*; do
	tr '\0' ' ' < $p/cmdline 2>/dev/null | grep -q -- "--cache-dir $D/c2 " && echo ${p#/proc/}
done | head -n1)
echo "slave-inside=$(nsenter -t $P2 -m findmnt -n -o FSTYPE "$D/shared/m2")"
echo "via-proc-root=$(sha256sum < /proc/$P2/root$D/shared/m2/VAE/a.bin | cut -d' ' -f1)"
echo "parent-reads=$(sha256sum < "$D/shared/m1/VAE/a.bin" | cut -d' ' -f1)"
nsenter -t $P2 -m umount "$D/shared/m2"
umount "$D/shared/m1"
echo done > "$D/fifo"
wait $CONSUMER
'''


@pytest.fixture
def tools():
    for tool in ("unshare", "nsenter", "findmnt", "mkfifo"):
        if not shutil.which(tool):
            pytest.fail("%s not found: tools/deps.sh installs util-linux" % tool)


def test_shared_reaches_the_parent_slave_does_not(tools, modelfs_bin, hub, tmp_path):
    _, sha = hub.add_file("a.bin", MiB)
    cfg = tmp_path / "c.toml"
    cfg.write_text(config({"vae": {"a": '"%s"' % hub.url("a.bin")}}))
    try:
        r = run_private(SCRIPT, [tmp_path, modelfs_bin, cfg], timeout=90,
                        env=sanitizer_env(tmp_path))
    finally:
        left = end_procs(str(tmp_path / "c1")) + end_procs(str(tmp_path / "c2")) + \
            end_procs(str(tmp_path / "fifo"), grace=0)
    assert r.returncode == 0, r.stdout + r.stderr
    out = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert out["shared-in-parent"] == "fuse.modelfs"
    assert out["consumer-sees"] == "fuse.modelfs"
    assert out["slave-in-parent"] == "none"
    assert out["slave-inside"] == "fuse.modelfs"
    assert out["via-proc-root"] == sha
    assert out["parent-reads"] == sha
    assert not left, "left running: %s" % left
    assert not sanitizer_reports(tmp_path)
