#!/usr/bin/env bash
# The main job on a fresh Debian 12 box, with no network needed: install
# what is missing, build, start the bundled fake hub serving a few
# generated model files, mount them with modelfs, and show what a webui
# sees: the listing, and a safetensors header read that fetches a few cache blocks.
#   tools/demo.sh [--keep]    --keep leaves the mount and hub running (and
#                             /tmp/modelfs-demo; it is removed otherwise)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
keep=${1:-}
PY=/usr/bin/python3

bash tools/build.sh

work=/tmp/modelfs-demo
mnt=$work/models
mkdir -p "$work/hubroot" "$mnt"
fusermount3 -uz "$mnt" 2>/dev/null || true

echo "== generating demo models (a 256 MiB checkpoint, a LoRA, a VAE)"
sha_xl=$($PY tests/fakehub/genmodel.py safetensors "$work/hubroot/demo-xl.safetensors" --size 256M --seed 1)
$PY tests/fakehub/genmodel.py safetensors "$work/hubroot/detail-tweaker.safetensors" --size 36M --seed 2 >/dev/null
$PY tests/fakehub/genmodel.py safetensors "$work/hubroot/demo-vae.safetensors" --size 80M --seed 3 >/dev/null

echo "== starting the local fake hub"
rm -f "$work/ports.json"
$PY tests/fakehub/fakehub.py --root "$work/hubroot" --port-file "$work/ports.json" \
	>"$work/hub.log" 2>&1 &
hub_pid=$!
cleanup() {
	if [ "$keep" != "--keep" ]; then
		fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
		kill "$hub_pid" 2>/dev/null || true
		wait "$hub_pid" 2>/dev/null || true
		# The generated models and the cache (~400 MB): nothing to keep.
		grep -q " $mnt " /proc/mounts || rm -rf "$work"
	fi
}
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$work/ports.json" ] && break; sleep 0.1; done
port=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["origin"])' "$work/ports.json")
export DEMO_HUB=http://127.0.0.1:$port DEMO_XL_SHA256=$sha_xl

echo "== modelfs check conf/demo.toml"
build/modelfs check conf/demo.toml

echo "== modelfs mount conf/demo.toml $mnt"
build/modelfs mount --cache-dir "$work/cache" --log-file "$work/modelfs.log" conf/demo.toml "$mnt"

echo "== ls -l (instant: nothing is downloaded yet)"
ls -l "$mnt" "$mnt/Stable-diffusion" "$mnt/Lora" "$mnt/VAE"

echo "== reading the safetensors header of the checkpoint"
$PY - "$mnt/Stable-diffusion/demo-xl.safetensors" <<'PYEOF'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
tensors = {k: v for k, v in header.items() if k != "__metadata__"}
print("%d tensors, header %d bytes; first: %s" % (len(tensors), n, ", ".join(list(tensors)[:3])))
PYEOF
fetched=$($PY - "$port" <<'PYEOF'
import json, sys, urllib.request
log = json.load(urllib.request.urlopen("http://127.0.0.1:%s/_control/requests" % sys.argv[1]))
print(sum(e["bytes"] for e in log
          if e["file"] == "demo-xl.safetensors" and e["range"] != "bytes=0-0"))
PYEOF
)
echo "bytes fetched from the hub for that: $fetched of 256 MiB (the header, Forge's 64 KiB"
echo "probe at 1 MiB that the mount prefetches, and the kernel's readahead)"
getfattr -d -m user.modelfs "$mnt/Stable-diffusion/demo-xl.safetensors" 2>/dev/null | sed 1d

if [ "$keep" = "--keep" ]; then
	echo "== left mounted at $mnt; unmount with: fusermount3 -u $mnt; kill $hub_pid"
else
	echo "== unmounting (run tools/demo.sh --keep to keep it)"
fi
