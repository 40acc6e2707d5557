#!/usr/bin/python3
"""fakehub: fake remote services for modelfs integration tests (stdlib only).

Starts one HTTP/1.1 server per fake host, each on its own loopback port
(port 0, so parallel test runs never collide), then writes
{"origin": P1, "cdn": P2, ...} atomically to --port-file.  Runs until SIGTERM
or SIGINT.

Hosts today (svc_files.py): "origin", a plain file server with byte ranges,
and "cdn", which serves the same files behind presigned URLs handed out by
origin's /redirect/.  svc_hf.py: "hf", "hfcdn", "hfcdn2", "hfmirror", a fake
Hugging Face Hub, its signed CDN (two hops) and a mirror.  svc_civitai.py:
"civitai", a fake CivitAI API, and "civstore", its signed storage host.
svc_gdrive.py: "gdrive" and "gdrive_uc", Google Drive's two hosts.  svc_s3.py:
"s3", an S3 endpoint that verifies SigV4 signatures and presigned URLs.
Faults, the request log and settings are driven at run time through
/_control/ on any server (hubcore.py documents the API).

    /usr/bin/python3 tests/fakehub/fakehub.py --root DIR --port-file FILE \\
        [--bind 127.0.0.1] [--secret HEX] [--verbose] [--exit-with-parent]

To add a service: write a HubHandler subclass (see svc_files.py) and list it
in SERVICES below; it gets the file/range/fault core for free.
"""

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hubcore      # noqa: E402
import svc_civitai  # noqa: E402
import svc_files    # noqa: E402
import svc_gdrive   # noqa: E402
import svc_hf       # noqa: E402
import svc_s3       # noqa: E402

SERVICES = dict(svc_files.SERVICES)
SERVICES.update(svc_hf.SERVICES)
SERVICES.update(svc_civitai.SERVICES)   # "civitai" API, "civstore" storage
SERVICES.update(svc_gdrive.SERVICES)    # "gdrive" (drive.google.com), "gdrive_uc" (usercontent)
SERVICES.update(svc_s3.SERVICES)        # "s3", SigV4-checking S3 endpoint


def write_port_file(path, ports):
    path = Path(path)
    tmp = path.with_name(".%s.%d.tmp" % (path.name, os.getpid()))
    tmp.write_text(json.dumps(ports) + "\n")
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="directory of served files")
    ap.add_argument("--port-file", required=True, help="where to write the ports JSON")
    ap.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--secret", help="hex key for URL signatures (default: random)")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="exit when the parent process goes away (test harness)")
    args = ap.parse_args(argv)

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    secret = bytes.fromhex(args.secret) if args.secret else None
    hub = hubcore.Hub(root, bind=args.bind, secret=secret)
    hub.verbose = args.verbose
    for name, handler in SERVICES.items():
        hub.add_server(name, handler)
    hub.start()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    write_port_file(args.port_file, hub.ports)
    if args.verbose:
        sys.stderr.write("fakehub: %s\n" % json.dumps(hub.ports))
    parent = os.getppid()
    while not stop.wait(1.0 if args.exit_with_parent else 3600):
        if args.exit_with_parent and os.getppid() != parent:
            break
    hub.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
