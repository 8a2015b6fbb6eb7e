#!/usr/bin/python3
"""A file server for download tests, on 127.0.0.1 only. The first path segment picks a
behaviour, the rest names a file under --root:

  /ok/NAME        the file, with Range support (206 partial content)
  /cut/NAME       the first request sends half the file and drops the connection; later
                  requests behave like /ok
  /flaky/NAME     the first request answers 500; later requests behave like /ok
  /slow429/NAME   the first request answers 429 with Retry-After: 1; later ones like /ok
  /badhash/NAME   the file with one byte changed
  /norange/NAME   the whole file (200) whatever Range says
  /missing/NAME   404
  /redirect/NAME  302 to /ok/NAME on the same server

Prints "PORT <n>" once listening. Each request is appended to --log as
"<path> range=<Range header or ->".
"""
import argparse
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from file_serving import send_cut, send_ranged

seen = set()
lock = threading.Lock()


def first_time(key):
    with lock:
        if key in seen:
            return False
        seen.add(key)
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        with open(self.server.log_path, "a") as log:
            log.write(f"{self.path} range={self.headers.get('Range', '-')} auth={self.headers.get('Authorization', '-')}\n")
        parts = self.path.strip("/").split("/", 1)
        if len(parts) != 2:
            return self.send_error(404)
        mode, name = parts
        path = os.path.join(self.server.root, name)
        if mode == "missing" or not os.path.isfile(path):
            return self.plain(404, b"no such file")
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", f"/ok/{name}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "flaky" and first_time(self.path):
            return self.plain(500, b"temporary failure")
        if mode == "slow429" and first_time(self.path):
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with open(path, "rb") as f:
            data = f.read()
        if mode == "badhash":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        if mode == "cut" and first_time(self.path):
            return send_cut(self, data)
        send_ranged(self, data, honour_range=mode != "norange")

    def plain(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.root, server.log_path = a.root, a.log
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
