"""Category names: each layout takes either webui's folder names, and a
typo of one is refused rather than becoming a folder no webui reads."""

import re

from mfs import MiB, config, run


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
