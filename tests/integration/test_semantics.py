"""What programs that read the mount see: modes, layouts, times, EROFS."""

import errno
import os
import stat
import subprocess

import pytest

from mfs import MiB, config, url_entry

FORGE_DIRS = {"Stable-diffusion", "Lora", "VAE", "ControlNet", "ESRGAN", "embeddings",
              "hypernetworks"}
COMFY_DIRS = {"checkpoints", "loras", "vae", "controlnet", "upscale_models", "embeddings",
              "hypernetworks", "text_encoders", "diffusion_models", "clip_vision"}


def test_forge_layout_modes_and_standard_folders(hub, mount):
    hub.add_file("m.safetensors", MiB)
    m = mount(config({"checkpoints": {"m": '"%s"' % hub.url("m.safetensors")},
                      "custom_things": {"c": url_entry(hub.url("m.safetensors"),
                                                       filename="c.bin")}}))
    top = set(os.listdir(m.path))
    assert FORGE_DIRS <= top and "custom_things" in top
    assert os.listdir(m.path / "Lora") == []           # standard folders exist, empty
    st = os.stat(m.path / "Stable-diffusion" / "m.safetensors")
    assert stat.S_IMODE(st.st_mode) == 0o444 and stat.S_ISREG(st.st_mode)
    # writable folders: local files may be added beside the models
    assert stat.S_IMODE(os.stat(m.path / "Lora").st_mode) == 0o755
    assert st.st_size == MiB
    assert "allow_other" in open("/proc/self/mountinfo").read().split(str(m.path))[1].split("\n")[0]


def test_comfyui_and_flat_layouts(hub, mount):
    hub.add_file("x.safetensors", 4096)
    entries = {"checkpoints": {"x": '"%s"' % hub.url("x.safetensors")},
               "lora": {"y": url_entry(hub.url("x.safetensors"), filename="y.safetensors")}}
    m = mount(config(entries, layout="comfyui"))
    assert COMFY_DIRS <= set(os.listdir(m.path))
    assert os.listdir(m.path / "loras") == ["y.safetensors"]
    m2 = mount(config(entries, layout="flat"))
    assert sorted(os.listdir(m2.path)) == ["x.safetensors", "y.safetensors"]


def test_times_and_inodes_are_stable(hub, mount, tmp_path):
    src, _ = hub.add_file("t.bin", 4096)
    os.utime(src, (1600000000, 1600000000))
    cfg = config({"vae": {"t": '"%s"' % hub.url("t.bin")}})
    cache = tmp_path / "c"
    m = mount(cfg, cache_dir=cache)
    st = os.stat(m.path / "VAE" / "t.bin")
    assert st.st_mtime == 1600000000                   # the origin's Last-Modified
    assert os.stat(m.path / "VAE").st_mtime == 1600000000
    ino = st.st_ino
    m.unmount()
    m2 = mount(cfg, cache_dir=cache)
    assert os.stat(m2.path / "VAE" / "t.bin").st_ino == ino


def test_writes_renames_deletes_fail_with_erofs(hub, mount):
    hub.add_file("ro.bin", 4096)
    m = mount(config({"vae": {"r": '"%s"' % hub.url("ro.bin")}}))
    f = m.path / "VAE" / "ro.bin"
    # (New local files beside it are fine: test_overlay.py.)
    for op in (lambda: open(f, "r+b"), lambda: open(f, "wb"), lambda: f.unlink(),
               lambda: f.rename(m.path / "VAE" / "x.bin"),
               lambda: os.truncate(f, 0), lambda: os.setxattr(f, "user.x", b"1")):
        with pytest.raises(OSError) as e:
            op()
        assert e.value.errno in (errno.EROFS, errno.EACCES), op
    assert f.read_bytes() == (hub.root / "ro.bin").read_bytes()


def test_other_users_can_read_when_mounted_by_root(hub, mount):
    src, _ = hub.add_file("u.bin", 8192)
    m = mount(config({"vae": {"u": '"%s"' % hub.url("u.bin")}}))
    # pytest's temp dirs are 0700: let the other user walk down to the mount.
    for d in list(m.path.parents)[:-2]:
        os.chmod(d, os.stat(d).st_mode | 0o711)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "cat", str(m.path / "VAE" / "u.bin")], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == src.read_bytes()


def test_missing_names_and_statfs(hub, mount):
    hub.add_file("s.bin", 3 * MiB)
    m = mount(config({"vae": {"s": '"%s"' % hub.url("s.bin")}}))
    assert not (m.path / "VAE" / "s.yaml").exists()
    # the filesystem local files go to (the mountpoint's): room for sidecars
    sv, under = os.statvfs(m.path), os.statvfs(m.path.parent)
    assert sv.f_blocks * sv.f_frsize == under.f_blocks * under.f_frsize
    assert not sv.f_flag & os.ST_RDONLY


def test_kernel_readahead_is_raised_for_the_mount(hub, mount):
    # As root, the mount's bdi reads ahead 1 MiB (128 KiB by default), so
    # sequential reads and mmap faults reach the daemon as 1 MiB requests.
    src, _ = hub.add_file("ra.bin", 8 * MiB)
    m = mount(config({"vae": {"r": '"%s"' % hub.url("ra.bin")}}))
    dev = os.stat(m.path).st_dev
    bdi = "/sys/class/bdi/%d:%d/read_ahead_kb" % (os.major(dev), os.minor(dev))
    with open(bdi) as f:
        assert int(f.read()) == 1024
    assert (m.path / "VAE" / "ra.bin").read_bytes() == src.read_bytes()


def test_max_read_mount_option_is_honoured(hub, mount):
    # libfuse makes INIT repeat a max_read mount option; a mount that
    # did not would come up, then die at INIT.
    src, _ = hub.add_file("mr.bin", 3 * MiB)
    m = mount(config({"vae": {"r": '"%s"' % hub.url("mr.bin")}}),
              extra_args=["-o", "max_read=65536"])
    assert (m.path / "VAE" / "mr.bin").read_bytes() == src.read_bytes()
    assert m.is_mounted()
