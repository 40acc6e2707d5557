"""The command line: clear errors for bad input, check, secrets."""

import os
import re

from mfs import MiB, config, run, url_entry

SEED = '''
[modelfs]                       # all optional
cache_max_size = "200G"         # also "80%" of the cache filesystem
cache_min_free = "5%"
block_size = "8M"
layout = "forge"                # forge | comfyui | flat, or a [layout] table category -> folder
verify = "lazy"                 # lazy | strict
connections = 16

[models.checkpoints]
"sdxl-base" = { source = "huggingface", repo = "stabilityai/stable-diffusion-xl-base-1.0",
                file = "sd_xl_base_1.0.safetensors", revision = "main" }
"flux-schnell" = { source = "huggingface", repo = "black-forest-labs/FLUX.1-schnell",
                   include = ["*.json", "transformer/*"] }    # no file → the repo as a folder
[models.lora]
"detail" = { source = "civitai", model_id = "58390", filename = "detail.safetensors" }
[models.vae]
"vae" = "@URL@"                # a bare string is a URL
"drive" = { source = "url", url = "https://drive.google.com/file/d/ID/view",
            headers = { "User-Agent" = "x" }, auth_header = "Bearer ${S3_TOKEN}",
            sha256 = "@SHA@" }
'''


def seed(url, sha):
    return SEED.replace("@URL@", url).replace("@SHA@", sha)


def write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bad_configs_exit_2_naming_the_place(modelfs_bin, tmp_path):
    cases = [
        ('[models.vae]\n"a" = { url = "http://x/a.bin", sha265 = "00" }\n',
         r'c\.toml:2:\d+: .*unknown key "sha265".*sha256'),
        ('[models.vae]\n"a" = { url = "http://x/a.bin", auth_header = "Bearer ${NOPE_TOKEN}" }\n',
         r"c\.toml:2:\d+: .*NOPE_TOKEN is not set"),
        ('[models.vae]\n"a" = "http://x/a.bin"\n"b" = "http://y/a.bin"\n',
         r"c\.toml:3:\d+: .*(models\.)?vae\.a.*"),
        ('[modelfs]\nblock_size = "7M"\n', r"c\.toml:2:\d+: .*block_size"),
        ('[models.vae\n', r"c\.toml:1:\d+: "),
    ]
    for text, pattern in cases:
        cfg = write(tmp_path, text)
        for args in (["check", "--offline", cfg], ["mount", cfg, tmp_path / "mnt"]):
            r = run([modelfs_bin, *args])
            assert r.returncode == 2, (text, r.stderr)
            assert re.search(pattern, r.stderr), (pattern, r.stderr)
    assert not os.path.ismount(tmp_path / "mnt")


def test_usage_errors(modelfs_bin, tmp_path):
    assert run([modelfs_bin]).returncode == 2
    assert run([modelfs_bin, "frobnicate"]).returncode == 2
    assert run([modelfs_bin, "mount"]).returncode == 2
    r = run([modelfs_bin, "check", tmp_path / "nonexistent.toml"])
    assert r.returncode == 2 and "nonexistent.toml" in r.stderr
    assert run([modelfs_bin, "--version"]).stdout.startswith("modelfs ")
    assert "mount" in run([modelfs_bin, "--help"]).stdout


def test_seed_config_parses_and_checks_offline(modelfs_bin, tmp_path):
    cfg = write(tmp_path, seed("https://example.com/vae.safetensors", "0" * 64))
    r = run([modelfs_bin, "check", "--offline", cfg], env={**os.environ, "S3_TOKEN": "tok-123456"})
    assert r.returncode == 0, r.stderr
    for path in ("Stable-diffusion/sd_xl_base_1.0.safetensors", "Lora/detail.safetensors",
                 "VAE/vae.safetensors"):
        assert path in r.stdout
    assert "tok-123456" not in r.stdout + r.stderr


def test_seed_config_mounts_url_entries_and_reports_the_rest(hub, mount, modelfs_bin, tmp_path):
    src, sha = hub.add_file("vae.safetensors", 2 * MiB, kind="safetensors")
    text = seed(hub.url("vae.safetensors"), "0" * 64)
    text = text.replace("https://drive.google.com/file/d/ID/view", hub.url("vae.safetensors"))
    text = text.replace('sha256 = "%s"' % ("0" * 64), 'sha256 = "%s", filename = "drive.bin"' % sha)
    env = {"S3_TOKEN": "s3-secret-value-42"}
    m = mount(text, env=env)
    assert (m.path / "VAE" / "vae.safetensors").read_bytes() == src.read_bytes()
    assert (m.path / "VAE" / "drive.bin").read_bytes() == src.read_bytes()
    sent = [r["headers"].get("authorization") for r in hub.requests(path="vae.safetensors")]
    assert "Bearer s3-secret-value-42" in sent
    assert "s3-secret-value-42" not in m.log()
    # Sources this build cannot read yet are left out, with a warning.
    assert os.listdir(m.path / "Lora") == []
    assert "entry_skipped entry=lora/detail" in m.log()
    r = run([modelfs_bin, "check", m.config_path], env={**os.environ, **env})
    assert r.returncode == 1
    assert "not supported yet" in r.stdout and "VAE/drive.bin" in r.stdout
    assert "s3-secret-value-42" not in r.stdout + r.stderr


def test_check_reports_a_missing_file(hub, modelfs_bin, tmp_path):
    hub.add_file("here.bin", 1000)
    cfg = write(tmp_path, config({"vae": {"a": '"%s"' % hub.url("here.bin"),
                                          "b": '"%s"' % hub.url("gone.bin")}}))
    r = run([modelfs_bin, "check", cfg])
    assert r.returncode == 1
    assert re.search(r"VAE/here\.bin\s+url\s+1000 B\s+ok", r.stdout), r.stdout
    assert re.search(r"VAE/gone\.bin.*error.*not found", r.stdout), r.stdout


def test_config_from_a_url_and_provision_url_with_offline_copy(hub, mount, modelfs_bin, tmp_path):
    src, _ = hub.add_file("pv.bin", 3 * MiB)
    cfg_text = config({"vae": {"p": '"%s"' % hub.url("pv.bin")}})
    hub.add_file("provision/models.toml", data=cfg_text.encode())
    url = hub.url("provision/models.toml") + "?token=cfg-secret-7788"
    cache = tmp_path / "cache"
    # By URL on the command line.
    r = run([modelfs_bin, "check", "--cache-dir", cache, url])
    assert r.returncode == 0, r.stderr
    assert "VAE/pv.bin" in r.stdout and "cfg-secret-7788" not in r.stdout + r.stderr
    # By $PROVISION_URL, with the origin gone: the kept copy is used.
    hub.faults(path="provision/*", down=True)
    r = run([modelfs_bin, "check", "--offline", "--cache-dir", cache],
            env={**os.environ, "PROVISION_URL": url})
    assert r.returncode == 0, r.stderr
    assert "using the copy" in r.stderr and "cfg-secret-7788" not in r.stderr
    assert "VAE/pv.bin" in r.stdout
    # No copy for another URL: a clear failure, exit 1.
    r = run([modelfs_bin, "check", "--cache-dir", cache, hub.url("provision/other.toml")])
    assert r.returncode == 1 and "cannot fetch the config" in r.stderr
