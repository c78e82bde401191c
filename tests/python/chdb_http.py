"""A modern ClickHouse engine (chDB, in-process ClickHouse 26.x) behind the
small part of ClickHouse's HTTP interface that the `clickhouse` crate uses,
so that the audit's modern path (version detection, schema-modern.sql, the
deduplication token, type validation, the rendered queries) runs against a
real modern engine in the tests.

    python chdb_http.py PORT DATA_DIR

POST / with the SQL as body (settings as URL parameters), or POST
/?query=INSERT INTO t(cols) FORMAT F with the rows as body (possibly
chunked): the rows are written to a file and inserted with
`INSERT INTO t (cols) SETTINGS … SELECT * FROM file(…)`, the URL's settings
(insert_deduplication_token, async_insert, …) becoming the insert's
SETTINGS. Errors answer 500 with X-ClickHouse-Exception-Code, as the server.
One request at a time (chDB's session is not shared between threads).
"""

import http.server
import os
import re
import sys
import tempfile
import urllib.parse

from chdb import session as chs

# Parameters of the request, not settings of the query.
NOT_SETTINGS = {"query", "default_format", "database", "query_id"}
INSERT = re.compile(r"(?is)\s*INSERT\s+INTO\s+(\S+?)\s*\((.*?)\)\s*FORMAT\s+(\w+)\s*$")


def quote(v):
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def answer(self, status, body, code=None):
        self.send_response(status)
        if code is not None:
            self.send_header("X-ClickHouse-Exception-Code", str(code))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer(200, b"Ok.\n")

    def do_POST(self):
        params = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).items()}
        body = self.body()
        settings = {k: v for k, v in params.items() if k not in NOT_SETTINGS}
        fmt = params.get("default_format", "TabSeparated")
        try:
            if "query" in params:
                self.answer(200, self.insert(params["query"], body, settings))
            else:
                for k, v in settings.items():
                    SESSION.query(f"SET {k} = {quote(v)}")
                res = SESSION.query(body.decode(), fmt)
                self.answer(200, bytes(res.bytes() or b"") if res is not None else b"")
        except Exception as e:  # the server's error, as the server says it
            msg = str(e)
            m = re.search(r"Code: (\d+)", msg)
            self.answer(500, msg.encode(), m.group(1) if m else 1000)

    def insert(self, sql, rows, settings):
        m = INSERT.match(sql)
        if not m:
            raise ValueError(f"Code: 62. not an INSERT … FORMAT: {sql}")
        table, cols, fmt = m.groups()
        fd, path = tempfile.mkstemp(dir=DATA, suffix=".rows")
        with os.fdopen(fd, "wb") as f:
            f.write(rows)
        structure = ""
        if fmt == "RowBinary":
            described = SESSION.query(f"DESCRIBE TABLE {table}", "TSV").bytes().decode()
            types = dict(line.split("\t")[:2] for line in described.splitlines())
            names = [c.strip().strip("`") for c in cols.split(",")]
            structure = ", " + quote(", ".join(f"{n} {types[n]}" for n in names))
        clause = ", ".join(f"{k} = {quote(v)}" for k, v in settings.items())
        clause = f" SETTINGS {clause}" if clause else ""
        try:
            SESSION.query(
                f"INSERT INTO {table} ({cols}){clause} SELECT * FROM file({quote(path)}, {quote(fmt)}{structure})"
            )
        finally:
            os.unlink(path)
        return b""

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    PORT, DATA = int(sys.argv[1]), sys.argv[2]
    SESSION = chs.Session(os.path.join(DATA, "chdb"))
    http.server.HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
