#!/usr/bin/env python3
"""The Notation tests' two peers on loopback: GET serves the files of DIR
(CRLs), POST /tsa and /tsa-rsa answer an RFC 3161 request with `openssl ts
-reply` and DIR/tsa.cnf or DIR/tsa-rsa.cnf. Every request is appended to
DIR/access.log.

    serve.py DIR PORT
"""
import http.server
import os
import subprocess
import sys
import tempfile

DIR, PORT = sys.argv[1], int(sys.argv[2])
MAX_QUERY = 64 << 10


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        with open(os.path.join(DIR, "access.log"), "a") as f:
            f.write("%s %s\n" % (self.command, self.path))

    def do_GET(self):
        path = os.path.join(DIR, os.path.basename(self.path))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        body = open(path, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        if self.path not in ("/tsa", "/tsa-rsa") or n <= 0 or n > MAX_QUERY:
            self.send_error(400)
            return
        query = self.rfile.read(n)
        with tempfile.TemporaryDirectory() as tmp:
            q, r = os.path.join(tmp, "q"), os.path.join(tmp, "r")
            open(q, "wb").write(query)
            done = subprocess.run(
                ["openssl", "ts", "-reply", "-config", os.path.join(DIR, self.path[1:] + ".cnf"),
                 "-queryfile", q, "-out", r],
                capture_output=True, timeout=30)
            if done.returncode != 0:
                self.send_error(500)
                return
            body = open(r, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
