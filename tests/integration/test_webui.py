"""modelfs webui comfyui|forge: the webuis pointed at the mount in one
command, checked against the mount itself."""

import json
import os
import shlex

import diskcache
import yaml

from mfs import MiB, config, url_entry
from test_ops import cli


def mounted(hub, mount, tmp_path, layout):
    for name in ("ckpt.safetensors", "lora.safetensors", "vae.safetensors", "pipe.bin"):
        hub.add_file(name, MiB)
    text = config({"checkpoints": {"c": '"%s"' % hub.url("ckpt.safetensors")},
                   "loras": {"l": '"%s"' % hub.url("lora.safetensors")},
                   "vae": {"v": '"%s"' % hub.url("vae.safetensors")},
                   "diffusers": {"d": '"%s"' % hub.url("pipe.bin")}}, layout=layout)
    m = mount(text)
    return m, m.config_path


def comfyui_folders(doc):
    """What ComfyUI's utils/extra_config.py makes of the yaml: category ->
    folders (base_path joined, a '|' or newline list split)."""
    out = {}
    for section in doc.values():
        base = os.path.expandvars(section.get("base_path", ""))
        for key, value in section.items():
            if key in ("base_path", "is_default"):
                continue
            for p in str(value).replace("|", "\n").split("\n"):
                if p.strip():
                    out.setdefault(key, []).append(os.path.join(base, p.strip()))
    return out


def test_comfyui_yaml_names_the_mounts_folders(hub, mount, modelfs_bin, tmp_path):
    for layout, want in (("forge", {"checkpoints": "Stable-diffusion", "loras": "Lora",
                                    "vae": "VAE"}),
                         ("comfyui", {"checkpoints": "checkpoints", "loras": "loras",
                                      "vae": "vae"})):
        m, cfg = mounted(hub, mount, tmp_path, layout)
        r = cli(modelfs_bin, tmp_path, "webui", "comfyui", "--config", cfg, "--base", m.path,
                expect=0)
        folders = comfyui_folders(yaml.safe_load(r.stdout))
        for category, folder in want.items():
            assert folders[category] == [str(m.path / folder)], (layout, folders)
        # Every folder it names is there, and the models are where ComfyUI looks.
        assert all(os.path.isdir(p) for ps in folders.values() for p in ps), folders
        assert "ckpt.safetensors" in os.listdir(folders["checkpoints"][0])
        assert "lora.safetensors" in os.listdir(folders["loras"][0])
        # Diffusers folders are ComfyUI's too; a Forge-only folder is not.
        assert folders["diffusers"] == [str(m.path / "diffusers")], folders
        assert "ControlNetPreprocessor" not in folders
        m.unmount()


def test_forge_flags_name_the_mounts_folders(hub, mount, modelfs_bin, tmp_path):
    m, cfg = mounted(hub, mount, tmp_path, "comfyui")
    r = cli(modelfs_bin, tmp_path, "webui", "forge", "--config", cfg, "--base", m.path, expect=0)
    words = shlex.split(r.stdout)
    flags = dict(zip(words[::2], words[1::2]))
    assert flags["--ckpt-dir"] == str(m.path / "checkpoints")
    assert flags["--lora-dir"] == str(m.path / "loras")
    assert flags["--vae-dir"] == str(m.path / "vae")
    assert all(os.path.isdir(p) for p in flags.values()), flags
    assert "lora.safetensors" in os.listdir(flags["--lora-dir"])
    r = cli(modelfs_bin, tmp_path, "webui", "a1111", "--config", cfg, expect=2)
    assert "comfyui|forge" in r.stderr


def webui_sha256_from_cache(data_dir, filename, title, use_addnet_hash=False):
    """What Forge/A1111's modules/cache.py and hashes.py do: import
    cache.json into diskcache (their cache/ folder is absent on first
    start), then answer a file's hash only while its mtime is not newer
    than the cached one."""
    caches = {}
    with open(os.path.join(data_dir, "cache.json"), encoding="utf8") as f:
        for subsection, keyvalues in json.load(f).items():
            c = caches.setdefault(subsection, diskcache.Cache(
                os.path.join(data_dir, "cache", subsection)))
            for key, value in keyvalues.items():
                c[key] = value
    hashes = caches["hashes-addnet" if use_addnet_hash else "hashes"]
    entry = hashes.get(title)
    for c in caches.values():
        c.close()
    if entry is None or os.path.getmtime(filename) > entry["mtime"]:
        return None
    return entry["sha256"]


def test_forge_hashes_fill_the_webuis_hash_cache(hub, mount, modelfs_bin, tmp_path):
    shas = {}
    for name in ("ckpt.safetensors", "lora.safetensors"):
        _, shas[name] = hub.add_file(name, MiB, seed=len(name))
    text = config({"checkpoints": {"c": url_entry(hub.url("ckpt.safetensors"),
                                                  sha256=shas["ckpt.safetensors"])},
                   "lora": {"l": url_entry(hub.url("lora.safetensors"),
                                           sha256=shas["lora.safetensors"])}},
                  layout="forge", settings="header_prefetch = false")   # counts what it reads
    m = mount(text)
    data = tmp_path / "forge-data"
    data.mkdir()
    (data / "cache.json").write_text('{"hashes": {"checkpoint/mine.ckpt": '
                                     '{"mtime": 1.0, "sha256": "ab"}}}')
    r = cli(modelfs_bin, tmp_path, "webui", "forge-hashes", data, "--config", m.config_path,
            "--base", m.path, expect=0)
    assert "2 hashes written" in r.stdout
    ckpt = m.path / "Stable-diffusion" / "ckpt.safetensors"
    lora = m.path / "Lora" / "lora.safetensors"
    assert webui_sha256_from_cache(str(data), ckpt, "checkpoint/ckpt.safetensors") == \
        shas["ckpt.safetensors"]
    assert webui_sha256_from_cache(str(data), lora, "lora/lora", use_addnet_hash=True) == \
        shas["lora.safetensors"]
    # What was there stays; nothing of the models was read to hash them.
    assert "checkpoint/mine.ckpt" in (data / "cache.json").read_text()
    # A1111 keeps another hash for a LoRA (of its tensor data): left to it.
    a1111 = tmp_path / "a1111-data"
    a1111.mkdir()
    r = cli(modelfs_bin, tmp_path, "webui", "a1111-hashes", a1111, "--config", m.config_path,
            "--base", m.path, expect=0)
    assert "1 hash written" in r.stdout, r.stdout
    assert webui_sha256_from_cache(str(a1111), ckpt, "checkpoint/ckpt.safetensors") == \
        shas["ckpt.safetensors"]
    assert webui_sha256_from_cache(str(a1111), lora, "lora/lora", use_addnet_hash=True) is None
    assert os.getxattr(ckpt, "user.modelfs.cached") == b"0"
