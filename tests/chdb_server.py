#!/usr/bin/env python3
"""A stand-in for ClickHouse's HTTP interface over chDB (the ClickHouse 26.x engine,
in-process), so meshscope's ClickHouse client runs its modern-dialect SQL against a current
engine in tests. POST a statement in the body (or `?query=` plus a body for INSERT);
answers like ClickHouse: 200 with the output, or 500 with `Code: N. DB::Exception: ...`.
Takes the directory for chDB's data as its argument (the caller owns and removes it).
Prints the port it listens on, then serves one request at a time (a chDB session is not
thread-safe) until killed."""

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

from chdb import session

SESSION = session.Session(sys.argv[1])


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        params = parse_qs(urlparse(self.path).query)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        sql = body.decode("utf-8")
        if "query" in params:
            sql = params["query"][0] + "\n" + sql
        try:
            out = SESSION.query(sql, "TSV").bytes()
            status = 200
        except Exception as e:  # chDB raises its engine's message, code included
            out, status = str(e).encode("utf-8"), 500
        self.send_response(status)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):  # noqa: N802
        out = b"Ok.\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
