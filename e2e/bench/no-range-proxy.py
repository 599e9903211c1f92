#!/usr/bin/env python3
"""A registry front that ignores Range, as some registries and caching
proxies do: every request goes to UPSTREAM without its Range header, and the
whole answer (200) comes back, streamed. Usage: no-range-proxy.py PORT UPSTREAM"""
import http.client
import http.server
import socketserver
import sys

PORT = int(sys.argv[1])
UPSTREAM = sys.argv[2]
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP | {"range", "host"}}
        up = http.client.HTTPConnection(UPSTREAM, timeout=60)
        up.request(self.command, self.path, body=body, headers=headers)
        r = up.getresponse()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        if r.getheader("Content-Length") is None and self.command != "HEAD":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            while True:
                chunk = r.read(1 << 16)
                if not chunk:
                    break
                self.wfile.write(chunk)
        up.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = forward

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


Server(("127.0.0.1", PORT), Proxy).serve_forever()
