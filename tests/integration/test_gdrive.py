"""Google Drive links: the file id from every link form, uc -> usercontent
redirects with cookies kept for the request, the virus-scan confirmation
form, the quota and sharing refusals, and no HTML page ever taken for the
model.  Against the fake Drive of tests/fakehub/svc_gdrive.py ("gdrive" for
drive.google.com, "gdrive_uc" for drive.usercontent.google.com); links keep
their public form, only gdrive_endpoint points at the fake."""

import errno
import hashlib
import os
import random
import re
import time

import pytest

from mfs import MiB, config, pread, run, stable, wait_for, xattr
from hubclient import fetch

SMALL = "1smallFILE_id-0123456789"
BIG = "1BigFile_id-abcdefghijkl"
PRIVATE = "1private_ID-zzzzzzzzzzz"
QUOTA = "1quota_ID-qqqqqqqqqqqqqq"
BIG_NAME = "big model é.safetensors"     # filename*=UTF-8''big%20model%20%C3%A9...


def add(hub, file_id, name, size, kind="raw", seed=0):
    return hub.add_file("gdrive/%s/%s" % (file_id, name), size, kind=kind, seed=seed)


def link(file_id, form="/file/d/{id}/view?usp=sharing"):
    return "https://drive.google.com" + form.format(id=file_id)


def drive_config(hub, entries, settings="", **kw):
    return config(entries, settings='gdrive_endpoint = "%s"\n%s' % (hub.base("gdrive"), settings),
                  **kw)


def read_error(path):
    with pytest.raises(OSError) as e:
        with open(path, "rb") as f:
            f.read(1)
    return e.value.errno


def check(modelfs_bin, cfg_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "HF_", "CIVITAI")) and not k.lower().endswith("_proxy")}
    env["HOME"] = str(cfg_path.parent)
    return run([modelfs_bin, "check", cfg_path], env=env)


def assert_no_leaks(hub):
    for r in hub.requests():
        assert not r["leak"], r
        assert not r["authorization"], r


def drive_requests(hub, file_id, server="gdrive_uc"):
    return [r for r in hub.requests(server=server) if r["file"] == file_id]


# ---------------------------------------------------------------------------
# the two ways to the bytes

def test_small_file_is_byte_exact_and_named_by_content_disposition(hub, mount):
    src, _ = add(hub, SMALL, "small-model.safetensors", 2 * MiB + 123, kind="safetensors")
    m = mount(drive_config(hub, {"vae": {"d": '"%s"' % link(SMALL)}}))
    assert os.listdir(m.path / "VAE") == ["small-model.safetensors"]
    path = m.path / "VAE" / "small-model.safetensors"
    assert path.stat().st_size == 2 * MiB + 123
    want = src.read_bytes()
    rng = random.Random(1)
    for off, n in [(0, 1), (len(want) - 1, 1), (MiB - 5, 10)] + [
            (rng.randrange(len(want)), 4096) for _ in range(20)]:
        assert pread(path, off, n) == want[off:off + n], (off, n)
    assert path.read_bytes() == want
    # Resolution: /uc on drive.google.com, 303 to usercontent, a 206 probe.
    uc = drive_requests(hub, SMALL, "gdrive")
    assert uc and uc[0]["path"] == "/uc" and uc[0]["status"] == 303
    assert "id=%s" % SMALL in uc[0]["qs"] and "export=download" in uc[0]["qs"]
    # The bytes come from usercontent directly, as verified 206s.
    data = [r for r in drive_requests(hub, SMALL) if r["range"] != "bytes=0-0"]
    assert data and all(r["status"] == 206 for r in data)
    assert len(drive_requests(hub, SMALL, "gdrive")) == 1      # only the resolution
    assert_no_leaks(hub)


def test_large_file_goes_through_the_virus_scan_form(hub, mount):
    src, sha = add(hub, BIG, BIG_NAME, 12 * MiB + 7, kind="safetensors", seed=3)
    m = mount(drive_config(hub, {"checkpoints": {"big": '"%s"' % link(BIG, "/uc?id={id}&export=download")}}))
    path = m.path / "Stable-diffusion" / BIG_NAME
    assert os.listdir(path.parent) == [BIG_NAME]
    assert path.stat().st_size == 12 * MiB + 7
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    assert h.hexdigest() == sha
    uc = drive_requests(hub, BIG)
    pages = [r for r in uc if r["outcome"] == "scan_page"]
    # The ranged probe met the page, which was then read whole: two, and
    # only while resolving.
    assert len(pages) == 2 and {r["range"] for r in pages} == {"bytes=0-0", None}
    confirmed = [r for r in uc if "confirm=t" in r["qs"]]
    assert confirmed and all(re.search(r"uuid=[0-9a-f-]{36}", r["qs"]) for r in confirmed)
    assert all(r["status"] == 206 for r in confirmed)
    assert sum(r["bytes"] for r in confirmed if r["range"] != "bytes=0-0") == 12 * MiB + 7
    assert_no_leaks(hub)


@pytest.mark.parametrize("status,cookie", [(302, False), (303, True), (307, True)])
def test_redirect_status_and_cookies_kept_across_hops(hub, mount, status, cookie):
    hub.config(gdrive_redirect_status=status, gdrive_require_cookie=int(cookie))
    src, _ = add(hub, BIG, "b.bin", 6 * MiB + 1, seed=4)
    small, _ = add(hub, SMALL, "s.bin", 100_000, seed=5)
    m = mount(drive_config(hub, {"vae": {"b": '"%s"' % link(BIG),
                                         "s": '"%s"' % link(SMALL, "/open?id={id}")}}))
    assert (m.path / "VAE" / "b.bin").read_bytes() == src.read_bytes()
    assert (m.path / "VAE" / "s.bin").read_bytes() == small.read_bytes()
    assert all(r["status"] == status for r in hub.requests(server="gdrive"))
    uc = hub.requests(server="gdrive_uc")
    assert not [r for r in uc if r["outcome"] == "no_cookie"]
    if cookie:
        pages = [r for r in uc if r["outcome"] == "scan_page"]
        assert pages and all("NID=" in r["headers"].get("cookie", "") for r in pages)
    # Cookies live for one request: the data requests carry none.
    data = [r for r in uc if r["range"] not in (None, "bytes=0-0")]
    assert data and not any("cookie" in r["headers"] for r in data)
    if cookie:
        # Without the cookie set on the redirect, usercontent says no.
        r = fetch("%s/download?id=%s&export=download" % (hub.base("gdrive_uc"), BIG))
        assert r.status == 403


def test_resource_key_is_kept(hub, mount):
    src, _ = add(hub, BIG, "rk.bin", 5 * MiB, seed=6)
    url = link(BIG, "/file/d/{id}/view?usp=drive_link&resourcekey=0-AbC_dEf12")
    m = mount(drive_config(hub, {"vae": {"rk": '"%s"' % url}}))
    assert pread(m.path / "VAE" / "rk.bin", 4 * MiB, 100) == src.read_bytes()[4 * MiB:4 * MiB + 100]
    assert "resourcekey=0-AbC_dEf12" in drive_requests(hub, BIG, "gdrive")[0]["qs"]
    confirmed = [r for r in drive_requests(hub, BIG) if "confirm=t" in r["qs"]]
    assert confirmed and all("resourcekey=0-AbC_dEf12" in r["qs"] for r in confirmed)


def test_every_link_form_names_the_file(hub, modelfs_bin, tmp_path):
    # A file per form: one path per entry (two entries showing the same
    # path would be a clash, which check reports).
    forms = ["/file/d/{id}/view?usp=sharing", "/file/d/{id}/edit", "/file/d/{id}",
             "/file/u/1/d/{id}/view", "/open?id={id}", "/uc?id={id}&export=download",
             "/uc?export=download&id={id}",
             "https://docs.google.com/uc?export=download&id={id}",
             "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t",
             "https://DRIVE.google.com/file/d/{id}/view"]
    urls = []
    for i, form in enumerate(forms):
        file_id = "%s%d" % (SMALL, i)
        add(hub, file_id, "forms%d.bin" % i, 1000)
        urls.append(form.format(id=file_id) if form.startswith("https:") else link(file_id, form))
    entries = {"f%d" % i: '"%s"' % u for i, u in enumerate(urls)}
    entries["folder"] = '"https://drive.google.com/drive/folders/1FolderID_xyz"'
    entries["noid"] = '"https://drive.google.com/file/d//view"'
    entries["gone"] = '"%s"' % link("1NoSuchFile_id")
    cfg = tmp_path / "forms.toml"
    cfg.write_text(drive_config(hub, {"vae": entries}))
    r = check(modelfs_bin, cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    rows = r.stdout.splitlines()
    ok = [line for line in rows if re.match(r"VAE/forms\d+\.bin ", line)]
    assert [line.split()[0] for line in ok] == ["VAE/forms%d.bin" % i for i in range(len(urls))]
    assert all(" ok " in line for line in ok), r.stdout
    assert re.search(r"VAE/folder .*error .*folder", r.stdout), r.stdout
    assert re.search(r"VAE/noid .*error .*no file id", r.stdout), r.stdout
    assert re.search(r"VAE/gone .*error .*no Google Drive file with id 1NoSuchFile_id",
                     r.stdout), r.stdout
    assert "modelfs check: 3 entries failed" in r.stderr


# ---------------------------------------------------------------------------
# refusals

def test_private_file_is_eacces_with_the_sharing_advice(hub, mount, modelfs_bin):
    add(hub, PRIVATE, "secret.bin", 1000)
    hub.config(gdrive_private=[PRIVATE])
    m = mount(drive_config(hub, {"vae": {"p": '"%s"' % link(PRIVATE)}}),
              expect_partial=True, allowed_errors=[r"event=entry_failed entry=vae/p "])
    path = m.path / "VAE" / "p"          # no Content-Disposition: named by the entry
    assert read_error(path) == errno.EACCES
    assert xattr(path, "state") == "error"
    err = xattr(path, "error")
    assert "not shared publicly" in err and "'Anyone with the link'" in err
    uc = hub.requests(server="gdrive")
    assert [r["path"] for r in uc][:2] == ["/uc", "/ServiceLogin"] and uc[0]["status"] == 302
    assert not drive_requests(hub, PRIVATE)            # usercontent never asked
    r = check(modelfs_bin, m.config_path)
    assert r.returncode == 1 and "'Anyone with the link'" in r.stdout, r.stdout


def test_quota_page_is_an_error_with_drives_words(hub, mount, modelfs_bin):
    add(hub, QUOTA, "popular.bin", 1000)
    small, _ = add(hub, SMALL, "fine.bin", 1000)
    hub.config(gdrive_quota=[QUOTA])
    m = mount(drive_config(hub, {"vae": {"q": '"%s"' % link(QUOTA),
                                         "s": '"%s"' % link(SMALL)}}),
              expect_partial=True, allowed_errors=[r"event=entry_failed entry=vae/q "])
    path = m.path / "VAE" / "q"
    assert xattr(path, "state") == "error"
    assert read_error(path) in (errno.EIO, errno.EAGAIN)
    assert "Too many users have viewed or downloaded this file recently" in m.log()
    assert (m.path / "VAE" / "fine.bin").read_bytes() == small.read_bytes()
    r = check(modelfs_bin, m.config_path)
    assert r.returncode == 1
    assert re.search(r"VAE/q .*error .*refuses the download for now: Too many users",
                     r.stdout), r.stdout


def test_ignored_range_streams_the_file_never_a_page(hub, mount):
    src, _ = add(hub, SMALL, "norange.bin", 3 * MiB + 5)
    big, _ = add(hub, BIG, "bignorange.bin", 5 * MiB + 3, seed=9)
    hub.faults(server="gdrive_uc", ignore_range=True)
    m = mount(drive_config(hub, {"vae": {"n": '"%s"' % link(SMALL), "b": '"%s"' % link(BIG)}}))
    assert (m.path / "VAE" / "norange.bin").read_bytes() == src.read_bytes()
    assert (m.path / "VAE" / "bignorange.bin").read_bytes() == big.read_bytes()


@pytest.mark.parametrize("how", ["uuid_expired", "html_error"])
def test_html_is_never_cached(hub, mount, how):
    src, _ = add(hub, BIG, "h.bin", 24 * MiB, seed=8)
    m = mount(drive_config(hub, {"vae": {"h": '"%s"' % link(BIG)}}, "retry_timeout = 3"),
              allowed_errors=[r"h\.bin"])
    path = m.path / "VAE" / "h.bin"
    want = src.read_bytes()
    assert pread(path, 0, 100) == want[:100]
    wait_for(lambda: not [r for r in hub.requests(server="gdrive_uc") if r["status"] is None],
             what="readahead to settle")
    # The read was answered as its bytes came; blocks are cached just after.
    cached = stable(lambda: int(xattr(path, "cached")), quiet=0.5)
    if how == "uuid_expired":
        hub.config(gdrive_uuid_epoch=1)      # the confirmed URL now answers with the page
    else:
        hub.faults(server="gdrive_uc", path=BIG, html_error=True)
    with pytest.raises(OSError) as e:
        pread(path, 20 * MiB, 100)      # far from what readahead may have fetched
    assert e.value.errno == errno.EIO
    assert int(xattr(path, "cached")) == cached
    hub.reset()
    time.sleep(1.2)     # a block that just failed for good fails at once for a second
    assert path.read_bytes() == want
