"""The command line: clear errors for bad input, check, secrets."""

import json
import os
import re
import subprocess
import time

from conftest import fusermount_unmount, is_mounted
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
    r = run([modelfs_bin, "statsu"])
    assert r.returncode == 2 and r.stderr == ("modelfs: unknown command 'statsu' (did you mean "
                                              "\"status\"?); modelfs --help lists them\n")
    assert run([modelfs_bin, "tier", "--help"]).returncode == 0
    # Each command's --help is its own part of the usage, and the common options.
    r = run([modelfs_bin, "lock", "--help"])
    assert r.returncode == 0 and "  modelfs lock --check CONFIG" in r.stdout, r.stdout
    assert "serve" not in r.stdout and "--cache-dir DIR" in r.stdout and "exit codes" in r.stdout
    assert run([modelfs_bin, "mount"]).returncode == 2
    r = run([modelfs_bin, "check", tmp_path / "nonexistent.toml"])
    assert r.returncode == 2 and "nonexistent.toml" in r.stderr
    assert run([modelfs_bin, "--version"]).stdout.startswith("modelfs ")
    assert "mount" in run([modelfs_bin, "--help"]).stdout


def test_a_cache_dir_inside_the_mountpoint_is_refused_before_anything_is_made(modelfs_bin,
                                                                              tmp_path):
    """The cache would otherwise be created inside, then show up as local
    files at the next mount."""
    cfg = write(tmp_path, '[models.vae]\n"a" = "http://127.0.0.1:9/a.bin"\n')
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for cache in (mnt / "c", mnt / "deeper" / "c", mnt):
        r = run([modelfs_bin, "mount", "--cache-dir", cache, cfg, mnt])
        assert r.returncode == 2, r.stderr
        assert "is inside the mountpoint" in r.stderr, r.stderr
        assert list(mnt.iterdir()) == []
    assert not os.path.ismount(mnt)


def test_check_takes_model_links_as_mount_does(hub, modelfs_bin):
    hub.add_file("chk.safetensors", MiB, kind="safetensors")
    r = run([modelfs_bin, "check", "--model", hub.url("chk.safetensors"), "--category", "vae"])
    assert r.returncode == 0, r.stderr
    assert "VAE/chk.safetensors" in r.stdout, r.stdout
    r = run([modelfs_bin, "check", "--model", hub.url("gone.safetensors")])
    assert r.returncode == 1 and "gone.safetensors" in r.stdout + r.stderr, (r.stdout, r.stderr)
    r = run([modelfs_bin, "check", "--model", hub.url("chk.safetensors"), "extra.toml"])
    assert r.returncode == 2


def test_seed_config_parses_and_checks_offline(modelfs_bin, tmp_path):
    cfg = write(tmp_path, seed("https://example.com/vae.safetensors", "0" * 64))
    r = run([modelfs_bin, "check", "--offline", cfg], env={**os.environ, "S3_TOKEN": "tok-123456"})
    assert r.returncode == 0, r.stderr
    for path in ("Stable-diffusion/sd_xl_base_1.0.safetensors", "Lora/detail.safetensors",
                 "VAE/vae.safetensors"):
        assert path in r.stdout
    assert "tok-123456" not in r.stdout + r.stderr


def test_seed_config_mounts_every_source_byte_exact(hub, mount, modelfs_bin, tmp_path):
    """The provisioning seed's examples as written, with the endpoints
    pointed at the fakes: huggingface (a file and a repo folder), civitai,
    a bare URL, and a Drive link with headers and ${ENV} auth."""
    import svc_civitai
    hub.control("POST", "hf/repos", {
        "stabilityai/stable-diffusion-xl-base-1.0": {"commits": [{
            "sd_xl_base_1.0.safetensors": {"kind": "safetensors", "size": 3 * MiB + 17,
                                           "seed": 21}}]},
        "black-forest-labs/FLUX.1-schnell": {"commits": [{
            "model_index.json": {"text": '{"_class_name": "FluxPipeline"}\n'},
            "transformer/config.json": {"text": '{"_class_name": "Flux"}\n'},
            "transformer/model.safetensors": {"kind": "safetensors", "size": 2 * MiB + 3,
                                              "seed": 22},
            "vae/model.safetensors": {"kind": "raw", "size": 4096, "seed": 23}}]}},
        server="hf")
    lora, lora_sha = hub.add_file("civitai/detail.bin", MiB + 7, seed=24)
    svc_civitai.save_fixtures(hub.root, {"users": {}, "models": [
        {"id": 58390, "name": "Detail Tweaker", "type": "LORA", "versions": [
            {"id": 62833, "name": "v1", "publishedAt": "2024-01-01T00:00:00.000Z",
             "files": [{"id": 5001, "name": "add_detail.safetensors", "type": "Model",
                        "primary": True, "blob": "civitai/detail.bin",
                        "metadata": {"format": "SafeTensor", "size": "pruned", "fp": "fp16"}}]}]}]})
    vae, _ = hub.add_file("vae.safetensors", 2 * MiB, kind="safetensors")
    drive, drive_sha = hub.add_file("gdrive/ID/drive.safetensors", MiB + 1, seed=25)
    text = seed(hub.url("vae.safetensors"), drive_sha)
    text = text.replace("connections = 16",
                        'connections = 16\nhf_endpoint = "%s"\ncivitai_endpoint = "%s"\n'
                        'gdrive_endpoint = "%s"' % (hub.base("hf"), hub.base("civitai"),
                                                    hub.base("gdrive")))
    env = {"S3_TOKEN": "s3-secret-value-42"}
    m = mount(text, env=env)
    repos = hub.control("GET", "hf/repos", server="hf")
    sdxl = repos["stabilityai/stable-diffusion-xl-base-1.0"]["commits"][0]["files"]
    flux = repos["black-forest-labs/FLUX.1-schnell"]["commits"][0]["files"]
    from pathlib import Path
    assert (m.path / "Stable-diffusion" / "sd_xl_base_1.0.safetensors").read_bytes() == \
        Path(sdxl["sd_xl_base_1.0.safetensors"]["blob"]).read_bytes()
    folder = m.path / "Stable-diffusion" / "flux-schnell"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == \
        ["model_index.json", "transformer/config.json", "transformer/model.safetensors"]
    assert (folder / "transformer" / "model.safetensors").read_bytes() == \
        Path(flux["transformer/model.safetensors"]["blob"]).read_bytes()
    assert (m.path / "Lora" / "detail.safetensors").read_bytes() == lora.read_bytes()
    assert (m.path / "VAE" / "vae.safetensors").read_bytes() == vae.read_bytes()
    assert (m.path / "VAE" / "drive.safetensors").read_bytes() == drive.read_bytes()
    assert "s3-secret-value-42" not in m.log()
    r = run([modelfs_bin, "check", m.config_path], env={**os.environ, **env})
    assert r.returncode == 0, r.stdout + r.stderr
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
    assert re.search(r"using the copy fetched at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n",
                     r.stderr), r.stderr
    assert "cfg-secret-7788" not in r.stderr
    assert "VAE/pv.bin" in r.stdout
    # No copy for another URL while its server is down: exit 1 (try again
    # later); one the server does not have: exit 2 (the URL is wrong).
    r = run([modelfs_bin, "check", "--cache-dir", cache, hub.url("provision/other.toml")])
    assert r.returncode == 1 and "cannot fetch the config" in r.stderr
    hub.clear_faults()
    r = run([modelfs_bin, "check", "--cache-dir", cache, hub.url("provision/other.toml")])
    assert r.returncode == 2 and "cannot fetch the config" in r.stderr, r.stderr


def test_provision_url_with_a_folder_mounts_there(hub, modelfs_bin, tmp_path):
    """With $PROVISION_URL set, `modelfs mount FOLDER` is the mountpoint:
    a folder is never a config."""
    hub.add_file("pu.bin", 1000)
    hub.add_file("provision/pu.toml", data=config({"vae": {"p": '"%s"' % hub.url("pu.bin")}})
                 .encode())
    mnt = tmp_path / "models"
    mnt.mkdir()
    err = tmp_path / "stderr"
    with open(err, "w") as e:       # the daemon keeps its copy: no pipe to wait on
        r = subprocess.run([modelfs_bin, "mount", "--cache-dir", tmp_path / "cache", mnt],
                           env={**os.environ, "PROVISION_URL": hub.url("provision/pu.toml")},
                           stdout=subprocess.DEVNULL, stderr=e, timeout=60)
    try:
        assert r.returncode == 0, err.read_text()
        assert is_mounted(mnt)
        assert (mnt / "VAE" / "pu.bin").read_bytes() == (hub.root / "pu.bin").read_bytes()
    finally:
        fusermount_unmount(mnt)


def test_mount_exit_code_says_whether_every_entry_resolved(hub, mount, modelfs_bin):
    """`mount` exits 0 only when every entry resolved, a stored resolution
    included (an offline remount); 3 when the mount is live but some entries
    failed, with a summary naming each one, where it is written and what to
    do. `check` stays the dry run: exit 1, nothing mounted."""
    ok, _ = hub.add_file("ok.bin", MiB)
    later, _ = hub.add_file("later.bin", MiB + 5)
    good = config({"vae": {"ok": '"%s"' % hub.url("ok.bin"),
                           "later": '"%s"' % hub.url("later.bin")}})
    m = mount(good)
    assert m.returncode == 0 and "failed" not in m.stderr
    m.unmount()
    # The origin gone, the stored resolutions count: still exit 0.
    hub.faults(path="*.bin", down=True)
    m = mount(good, cache_dir=m.cache_dir)
    assert m.returncode == 0, m.stderr
    assert "resolve_offline" in m.log() and "failed" not in m.stderr
    assert (m.path / "VAE" / "later.bin").stat().st_size == MiB + 5
    m.unmount()
    hub.clear_faults()

    hub.faults(path="missing.bin", fail=[404] * 100)
    text = config({"vae": {"ok": '"%s"' % hub.url("ok.bin"),
                           "gone": '"%s"' % hub.url("missing.bin")}})
    m = mount(text, expect_partial=True, allowed_errors=[r"missing\.bin"])
    assert m.returncode == 3 and m.is_mounted()
    assert (m.path / "VAE" / "ok.bin").read_bytes() == ok.read_bytes()
    cfg = re.escape(str(m.config_path))
    assert re.search(r"^modelfs: mounted %s, but 1 of 2 entries failed:$" % re.escape(str(m.path)),
                     m.stderr, re.M), m.stderr
    # config(): [modelfs], block_size, settings, [models.vae], ok, gone: line 6.
    assert re.search(r"^  vae/gone \(%s:6\): VAE/missing\.bin: not found at the origin "
                     r"\(HTTP 404\): check the url$" % cfg, m.stderr, re.M), m.stderr
    assert "vae/ok" not in m.stderr
    assert "modelfs check %s" % m.config_path in m.stderr
    assert "fusermount3 -u %s" % m.path in m.stderr
    assert "event=mount_partial" in m.log() and "failed=1 entries=2" in m.log()
    r = run([modelfs_bin, "check", m.config_path])
    assert r.returncode == 1 and re.search(r"VAE/missing\.bin.*error", r.stdout), r.stdout


def test_a_background_mount_logs_to_the_cache_dir(hub, modelfs_bin, tmp_path):
    """No --log-file: the daemon's lines go to CACHE_DIR/modelfs.log (a
    container has no syslog); --log-format json makes them JSON objects."""
    src, _ = hub.add_file("l.bin", MiB)
    cfg = write(tmp_path, config({"vae": {"l": '"%s"' % hub.url("l.bin")}}))
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    mnt.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELFS_", "HF_"))}
    r = subprocess.run([str(modelfs_bin), "mount", "--cache-dir", str(cache), "--log-format",
                        "json", str(cfg), str(mnt)], capture_output=True, text=True,
                       timeout=60, env=env, stdin=subprocess.DEVNULL)
    try:
        assert r.returncode == 0, r.stderr
        assert (mnt / "VAE" / "l.bin").read_bytes() == src.read_bytes()
    finally:
        fusermount_unmount(mnt)
    deadline = time.monotonic() + 10
    log = cache / "modelfs.log"
    while "unmounting" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "no unmount line in %s" % log
        time.sleep(0.05)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(e.get("event") == "mounted" and e.get("level") == "info" for e in events), events
    assert not is_mounted(mnt)
