"""Category names: each layout takes either webui's folder names, and a
typo of one is refused rather than becoming a folder no webui reads."""

import json
import os
import re

from mfs import MiB, bytes_fetched, config, run, stable, url_entry


def test_either_webuis_names_land_in_the_chosen_layout(hub, mount):
    files = {name: hub.add_file(name, MiB + i)[0]
             for i, name in enumerate(["l.bin", "u.bin", "d.bin", "t.bin", "ip.bin"])}

    def entry(name):
        return {"x": '"%s"' % hub.url(name)}

    # ComfyUI's names in the forge layout, and an unknown category.
    m = mount(config({"loras": entry("l.bin"), "upscale_models": entry("u.bin"),
                      "diffusion_models": entry("d.bin"), "text_encoders": entry("t.bin"),
                      "ipadapter": entry("ip.bin")}))
    want = {"Lora/l.bin": "l.bin", "ESRGAN/u.bin": "u.bin", "Stable-diffusion/d.bin": "d.bin",
            "text_encoder/t.bin": "t.bin", "ipadapter/ip.bin": "ip.bin"}
    for path, name in want.items():
        assert (m.path / path).read_bytes() == files[name].read_bytes(), path
    for folder in ("loras", "upscale_models", "diffusion_models", "text_encoders"):
        assert not (m.path / folder).exists()
    m.unmount()

    # Forge's names in the comfyui layout, over the same cache.
    m = mount(config({"Lora": entry("l.bin"), "ESRGAN": entry("u.bin"),
                      "Stable-diffusion": entry("d.bin"), "text_encoder": entry("t.bin")},
                     layout="comfyui"), cache_dir=m.cache_dir)
    for path in ("loras/l.bin", "upscale_models/u.bin", "checkpoints/d.bin",
                 "text_encoders/t.bin"):
        assert (m.path / path).is_file(), path
    assert (m.path / "loras" / "l.bin").read_bytes() == files["l.bin"].read_bytes()
    assert not (m.path / "Lora").exists()


def test_a_category_typo_is_refused_at_its_line(hub, mount, modelfs_bin):
    text = config({"vae": {"v": '"%s"' % hub.url("v.bin")},
                   "chekpoints": {"c": '"%s"' % hub.url("c.bin")}})
    m = mount(text, expect_fail=True)
    assert m.returncode == 2
    # [modelfs], block_size, settings, [models.vae], v, [models.chekpoints]: line 6.
    assert re.search(r"%s:6:\d+: unknown category models\.chekpoints \(did you mean "
                     r"\"checkpoints\"\?\).*add to \[layout\]: chekpoints = \"chekpoints\""
                     % re.escape(str(m.config_path)), m.stderr), m.stderr
    r = run([modelfs_bin, "check", "--offline", m.config_path])
    assert r.returncode == 2 and "did you mean \"checkpoints\"" in r.stderr
    # Named in [layout], the same category is meant, and mounts.
    hub.add_file("c.bin", MiB)
    m = mount('[layout]\nchekpoints = "chekpoints"\n[models.chekpoints]\nc = "%s"\n'
              % hub.url("c.bin"))
    assert (m.path / "chekpoints" / "c.bin").stat().st_size == MiB


def test_one_mount_shows_both_webuis_layouts_over_one_cache(hub, mount, modelfs_bin, tmp_path):
    """layout = ["forge", "comfyui"]: a subtree per layout, the same files in
    each (read once: the second view's read fetches nothing), and `webui`
    points each webui at its own subtree."""
    files = {n: hub.add_file(n, 2 * MiB + i, seed=i + 1) for i, n in
             enumerate(["ck.bin", "lo.bin"])}
    text = config({"checkpoints": {"ck": '"%s"' % hub.url("ck.bin")},
                   "lora": {"lo": url_entry(hub.url("lo.bin"), sha256=files["lo.bin"][1])}},
                  settings='layout = ["forge", "comfyui"]')
    m = mount(text)
    assert sorted(os.listdir(m.path)) == ["comfyui", "forge"]
    forge, comfy = m.path / "forge", m.path / "comfyui"
    assert (forge / "Stable-diffusion" / "ck.bin").read_bytes() == \
        files["ck.bin"][0].read_bytes()
    # The hub logs a request when it ends, a moment after the reader had
    # its bytes: counted once quiet.
    fetched = stable(lambda: bytes_fetched(hub, "ck.bin"), quiet=0.5)
    assert (comfy / "checkpoints" / "ck.bin").read_bytes() == files["ck.bin"][0].read_bytes()
    assert bytes_fetched(hub, "ck.bin") == fetched          # one cache file, two names
    assert (comfy / "loras" / "lo.bin").stat().st_size == 2 * MiB + 1
    assert os.stat(forge / "Lora" / "lo.bin").st_ino != os.stat(comfy / "loras" / "lo.bin").st_ino
    assert os.path.isdir(comfy / "vae") and os.path.isdir(forge / "VAE")
    # status names each file once, by its first layout's path.
    st = json.loads(run([modelfs_bin, "status", "--json", "--cache-dir", m.cache_dir]).stdout)
    assert sorted(f["path"] for f in st["files"]) == ["forge/Lora/lo.bin",
                                                      "forge/Stable-diffusion/ck.bin"]
    # Each webui to its own subtree.
    r = run([modelfs_bin, "webui", "comfyui", "--config", m.config_path, "--base", m.path])
    assert r.returncode == 0 and "base_path: '%s/comfyui'" % m.path in r.stdout, r.stdout
    assert "    loras: 'loras'" in r.stdout and "    checkpoints: 'checkpoints'" in r.stdout
    r = run([modelfs_bin, "webui", "forge", "--config", m.config_path, "--base", m.path])
    assert r.returncode == 0 and "--lora-dir %s/forge/Lora" % m.path in r.stdout, r.stdout
    # A view named twice, or alone, is refused with the fix.
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('["forge", "comfyui"]', '["forge", "forge"]'))
    r = run([modelfs_bin, "check", "--offline", bad])
    assert r.returncode == 2 and "names forge twice" in r.stderr, r.stderr
    bad.write_text(text.replace('["forge", "comfyui"]', '["forge"]'))
    r = run([modelfs_bin, "check", "--offline", bad])
    assert r.returncode == 2 and 'for one, write layout = "forge"' in r.stderr, r.stderr
