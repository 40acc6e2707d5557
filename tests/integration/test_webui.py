"""modelfs webui comfyui|forge: the webuis pointed at the mount in one
command, checked against the mount itself."""

import os
import shlex

import yaml

from mfs import MiB, config
from test_ops import cli


def mounted(hub, mount, tmp_path, layout):
    for name in ("ckpt.safetensors", "lora.safetensors", "vae.safetensors"):
        hub.add_file(name, MiB)
    text = config({"checkpoints": {"c": '"%s"' % hub.url("ckpt.safetensors")},
                   "loras": {"l": '"%s"' % hub.url("lora.safetensors")},
                   "vae": {"v": '"%s"' % hub.url("vae.safetensors")}}, layout=layout)
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
