#!/usr/bin/python3
"""A Kaggle API stand-in for Whisker's tests, on 127.0.0.1 only.

It implements the RPC calls of shared/spec/kaggle-api.md (POST /v1/competitions.
CompetitionApiService/<Method>), the legacy REST paths (/api/v1/...), a separate "storage" path
that rejects Kaggle credentials and supports Range, and an upload path for PUT.

    kaggle_test_server.py --state DIR --competition NAME --archive ZIP --solution CSV
                          [--user U --key K] [--mode MODE ...]

Modes (switchable per test with POST /control {"modes": [...]}):
  unauthorized   every API call answers 401
  rules          DownloadDataFiles answers 403 (rules not accepted)
  rpc404         the RPC paths answer a plain 404 (only the legacy API exists)
  ratelimit      the first API call answers 429 with Retry-After: 1
  flaky          the first API call answers 500
  cut            the first storage download sends half the archive, then drops the connection
  putfail        the upload PUT answers 500
  scoreerror     submissions end in ERROR
  limit          no submissions allowed today
Prints "PORT <n>" once listening. Uploaded files are kept in DIR/uploads/<token>, submissions
in DIR/submissions.json, and every request is logged to DIR/requests.log.
"""
import argparse
import base64
import csv
import io
import json
import math
import os
import threading
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from file_serving import send_cut, send_ranged

LOCK = threading.Lock()
SERVICE = "/v1/competitions.CompetitionApiService/"


class State:
    def __init__(self, args):
        self.args = args
        self.modes = set(args.mode or [])
        self.once = set()
        self.submissions = []
        self.polls = {}
        os.makedirs(os.path.join(args.state, "uploads"), exist_ok=True)

    def first(self, key):
        with LOCK:
            if key in self.once:
                return False
            self.once.add(key)
            return True

    def save(self):
        with open(os.path.join(self.args.state, "submissions.json"), "w") as f:
            json.dump(self.submissions, f, indent=1)


def score(solution_path, data):
    truth = {r["id"]: float(r["label"]) for r in csv.DictReader(open(solution_path))}
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    total = 0.0
    for r in rows:
        p = min(max(float(r["label"]), 1e-15), 1 - 1e-15)
        y = truth[r["id"]]
        total += -(y * math.log(p) + (1 - y) * math.log(1 - p))
    return total / len(rows)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    @property
    def st(self):
        return self.server.state

    def log_request_line(self, body=b""):
        with LOCK, open(os.path.join(self.st.args.state, "requests.log"), "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path,
                                "auth": self.headers.get("Authorization", ""),
                                "content_type": self.headers.get("Content-Type", ""),
                                "range": self.headers.get("Range", ""),
                                "body": body.decode("utf-8", "replace")[:500]}) + "\n")

    def reply(self, code, obj=None, headers=None, raw=None):
        body = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def authorized(self):
        a = self.st.args
        expected = "Basic " + base64.b64encode(f"{a.user}:{a.key}".encode()).decode()
        return self.headers.get("Authorization") == expected and "unauthorized" not in self.st.modes

    def api_faults(self):
        if "ratelimit" in self.st.modes and self.st.first("ratelimit"):
            self.reply(429, {"code": 429, "message": "Too many requests"}, {"Retry-After": "1"})
            return True
        if "flaky" in self.st.modes and self.st.first("flaky"):
            self.reply(500, {"code": 500, "message": "Internal error"})
            return True
        if not self.authorized():
            self.reply(401, {"code": 401, "message": "Unauthenticated"})
            return True
        return False

    def read_body(self):
        n = int(self.headers.get("Content-Length", 0))
        return self.rfile.read(n) if n else b""

    # ---- storage ----
    def storage(self):
        if self.headers.get("Authorization"):
            return self.reply(403, {"message": "storage must not receive Kaggle credentials"})
        data = open(self.st.args.archive, "rb").read()
        mtime = formatdate(os.path.getmtime(self.st.args.archive), usegmt=True)
        common = {"Last-Modified": mtime, "Accept-Ranges": "bytes"}
        if self.command == "HEAD":
            return send_ranged(self, data, common, honour_range=False)
        if "cut" in self.st.modes and self.st.first("cut"):
            return send_cut(self, data)
        send_ranged(self, data, common)

    # ---- the API ----
    def do_HEAD(self):
        self.log_request_line()
        if self.path.startswith("/storage/"):
            return self.storage()
        self.reply(404)

    def do_GET(self):
        self.log_request_line()
        if self.path.startswith("/storage/"):
            return self.storage()
        if self.path.startswith("/api/v1/"):
            return self.legacy_get()
        self.reply(404, raw=b"not found")

    def do_PUT(self):
        body = self.read_body()
        self.log_request_line(b"<%d bytes>" % len(body))
        if not self.path.startswith("/upload/"):
            return self.reply(404)
        if self.headers.get("Authorization"):
            return self.reply(403, {"message": "upload must not receive Kaggle credentials"})
        if "putfail" in self.st.modes:
            return self.reply(500, {"message": "upload failed"})
        token = self.path.split("/")[-1]
        with open(os.path.join(self.st.args.state, "uploads", token), "wb") as f:
            f.write(body)
        self.reply(200, raw=b"")

    def do_POST(self):
        body = self.read_body()
        self.log_request_line(body)
        if self.path == "/control":
            self.st.modes = set(json.loads(body)["modes"])
            self.st.once.clear()
            return self.reply(200, {})
        if self.path.startswith("/api/v1/"):
            return self.legacy_post(body)
        if not self.path.startswith(SERVICE):
            return self.reply(404, raw=b"not found")
        if "rpc404" in self.st.modes:
            return self.reply(404, raw=b"<html>Not Found</html>")
        if self.api_faults():
            return
        method = self.path[len(SERVICE):]
        req = json.loads(body or b"{}")
        comp = req.get("competitionName")
        if comp is not None and comp != self.st.args.competition:
            return self.reply(404, {"code": 404, "message": f"Competition '{comp}' not found"})
        handler = getattr(self, "rpc_" + method, None)
        if not handler:
            return self.reply(404, raw=b"no such method")
        handler(req)

    def rpc_ListDataFiles(self, req):
        self.reply(200, {"files": [{"ref": "train.zip", "name": "train.zip", "totalBytes": "12345"},
                                   {"ref": "test.zip", "name": "test.zip", "totalBytes": 6789}]})

    def rpc_DownloadDataFiles(self, req):
        if "rules" in self.st.modes:
            return self.reply(403, {"code": 403, "message": "You must accept this competition's rules before you'll be able to download files."})
        self.reply(302, headers={"Location": f"http://127.0.0.1:{self.server.server_port}/storage/{req['competitionName']}.zip?sig=abc"})

    def rpc_GetSubmissionLimits(self, req):
        today = len(self.st.submissions)
        out = {"numToday": today, "numTotal": today}
        if "limit" not in self.st.modes:
            out["numAllowedNow"] = 5  # left out when 0, as the protocol does
        self.reply(200, out)

    def rpc_StartSubmissionUpload(self, req):
        token = f"tok{len(self.st.submissions) + 1}-{req['contentLength']}"
        self.reply(200, {"token": token, "createUrl": f"http://127.0.0.1:{self.server.server_port}/upload/{token}"})

    def create(self, token, description):
        path = os.path.join(self.st.args.state, "uploads", token)
        if not os.path.exists(path):
            return None
        data = open(path, "rb").read()
        sub = {"ref": str(1000 + len(self.st.submissions)), "date": "2026-11-27T10:00:00Z", "description": description,
               "fileName": "submission.csv", "totalBytes": len(data), "token": token}
        if "scoreerror" in self.st.modes:
            sub["final"] = {"status": "ERROR", "errorDescription": "Submission must have 100 rows"}
        else:
            try:
                sub["final"] = {"status": "COMPLETE", "publicScore": f"{score(self.st.args.solution, data):.5f}"}
            except Exception as e:  # noqa: BLE001
                sub["final"] = {"status": "ERROR", "errorDescription": f"Could not parse the file: {e}"}
        self.st.submissions.append(sub)
        self.st.save()
        return sub

    def rpc_CreateSubmission(self, req):
        sub = self.create(req["blobFileTokens"], req.get("submissionDescription", ""))
        if sub is None:
            return self.reply(400, {"code": 400, "message": "unknown upload token"})
        self.reply(200, {"message": f"Successfully submitted to {self.st.args.competition}", "ref": sub["ref"]})

    def public(self, sub):
        # Pending on the first look, then final; the default status (PENDING) is left out.
        polls = self.st.polls.get(sub["ref"], 0)
        self.st.polls[sub["ref"]] = polls + 1
        out = {k: v for k, v in sub.items() if k not in ("final", "token")}
        if polls >= 1:
            out.update(sub["final"])
        return out

    def rpc_GetSubmission(self, req):
        for s in self.st.submissions:
            if s["ref"] == req["ref"]:
                return self.reply(200, self.public(s))
        self.reply(404, {"code": 404, "message": "no such submission"})

    def rpc_ListSubmissions(self, req):
        self.reply(200, {"submissions": [self.public(s) for s in reversed(self.st.submissions)]})

    # ---- legacy REST ----
    def legacy_get(self):
        if self.api_faults():
            return
        parts = self.path.split("/")
        comp = urllib.parse.unquote(parts[-1])
        if comp != self.st.args.competition:
            return self.reply(404, {"code": 404, "message": "not found"})
        if "/competitions/data/list/" in self.path:
            return self.reply(200, [{"name": "train.zip", "totalBytes": 12345}, {"name": "test.zip", "totalBytes": 6789}])
        if "/competitions/data/download-all/" in self.path:
            return self.reply(302, headers={"Location": f"/storage/{comp}.zip?sig=legacy"})
        if "/competitions/submissions/list/" in self.path:
            return self.reply(200, [self.public(s) for s in reversed(self.st.submissions)])
        self.reply(404, {"message": "no such path"})

    def legacy_post(self, body):
        if self.api_faults():
            return
        form = dict(urllib.parse.parse_qsl(body.decode()))
        parts = self.path.split("/")
        if "/submissions/url/" in self.path:
            size = parts[-2]
            token = f"legacytok{len(self.st.submissions) + 1}-{size}"
            return self.reply(200, {"createUrl": f"/upload/{token}", "token": token})
        if "/competitions/submissions/submit/" in self.path:
            sub = self.create(form["blobFileTokens"], form.get("submissionDescription", ""))
            if sub is None:
                return self.reply(400, {"message": "unknown token"})
            return self.reply(200, {"message": "Successfully submitted"})
        self.reply(404, {"message": "no such path"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True)
    ap.add_argument("--competition", required=True)
    ap.add_argument("--archive", required=True)
    ap.add_argument("--solution", required=True)
    ap.add_argument("--user", default="tester")
    ap.add_argument("--key", default="secret-key-123")
    ap.add_argument("--mode", action="append")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.state = State(args)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
