#!/usr/bin/env python3
"""A released binary, run for real: standalone mode in front of a small exporter.

    .ci/smoke-standalone.py BINARY [RUNNER...]     e.g.  BINARY qemu-aarch64-static

Starts a static /metrics page and BINARY (under RUNNER, if given) with
deploy/examples/standalone's tokens.csv and rbac.yaml on free 127.0.0.1 ports, then
asserts: the allowed token gets 200 and the exporter's page, the denied one 403, no
token 401. Every wait is bounded; everything started is stopped.
"""
import http.server
import os
import socket
import ssl
import subprocess
import tempfile
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "deploy", "examples", "standalone")
PAGE = b"# TYPE smoke_up gauge\nsmoke_up 1\n"


class Exporter(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *_):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, token):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # self-signed, standalone
    req = urllib.request.Request(f"https://127.0.0.1:{port}/metrics")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    binary, runner = sys.argv[1], sys.argv[2:]
    exporter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    port = free_port()
    log = tempfile.TemporaryFile()
    proxy = subprocess.Popen(stdout=log, stderr=subprocess.STDOUT, args=runner + [
        binary, f"--secure-listen-address=127.0.0.1:{port}",
        f"--upstream=http://127.0.0.1:{exporter.server_address[1]}/",
        f"--token-auth-file={EXAMPLE}/tokens.csv", f"--rbac-file={EXAMPLE}/rbac.yaml"])
    try:
        deadline = time.monotonic() + 90  # qemu: seconds to start, on a loaded machine
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proxy.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
                    sys.exit(f"smoke: {binary} did not listen on {port} (exit {proxy.poll()})")
                time.sleep(0.2)
        results = {
            "allowed": get(port, "prometheus-demo-token"),
            "denied": get(port, "intruder-demo-token"),
            "none": get(port, None),
        }
    finally:
        proxy.terminate()
        try:
            proxy.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proxy.kill()
        exporter.shutdown()
    want = {"allowed": 200, "denied": 403, "none": 401}
    bad = [f"{k}: {results[k][0]} (want {v})" for k, v in want.items() if results[k][0] != v]
    if results["allowed"][1] != PAGE:
        bad.append(f"allowed: body {results['allowed'][1][:80]!r}, not the exporter's page")
    if bad:
        log.seek(0)
        sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
        sys.exit("smoke: " + "; ".join(bad))
    print(f"smoke: {' '.join(runner + [os.path.basename(binary)])}: allowed 200 (exporter's page), "
          "denied 403, no token 401")


if __name__ == "__main__":
    main()
