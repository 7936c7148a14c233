"""A hostile Binance-compatible origin for tests and benchmarks: the simulator's genuine answers (REST
and archive), spoilt one way each, as broken or malicious servers do: dripping bodies or headers, endless
bodies, bodies cut short of their Content-Length, rows beyond the window, pages in reverse or with
duplicates, NaN, infinity or negative values, an error object with HTTP 200, an exchangeInfo listing
nothing, zip bombs, archive files with duplicates, empty or with an empty CHECKSUM.

    with RunningSimulator() as sim, Hostile(sim.url, "drip") as bad:
        ...  # point KLINE_FUTURES_URL (or KLINE_ARCHIVE_URL) at bad.url
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
import time
import urllib.error
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

MODES = ("drip", "drip_headers", "huge", "short", "beyond", "descending", "duplicates", "nan", "inf", "negative",
         "error200", "no_symbols", "bomb", "dupes", "empty", "empty_checksum")


class Hostile:
    """A Binance-compatible origin (REST and archive) that answers with the simulator's genuine answers
    spoilt as `mode` says, for the hostile-server tests. `drip_s`: the body (and for `drip_headers` the
    status line too) goes out one byte at a time, this far apart, for paths containing `target`."""

    def __init__(self, upstream: str, mode: str, target: str = "klines", drip_s: float = 3.0,
                 from_ms: int = 0) -> None:
        """`upstream`: the simulator's URL; `from_ms`: spoil only kline requests starting there or later (the
        earlier days are served well)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
        self.upstream_url, self.mode, self.target = upstream.rstrip("/"), mode, target
        self.drip_s, self.from_ms = drip_s, from_ms
        self.zips: dict[str, bytes] = {}
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with contextlib.suppress(OSError):  # the client gave up: that is the point
                    hostile.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def upstream(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.upstream_url + path, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def answer(self, handler) -> None:
        path = handler.path
        start = parse_qs(urlparse(path).query).get("startTime", ["0"])[-1]
        hit = self.target in path and int(start) >= self.from_ms
        if hit and self.mode == "drip_headers":
            for byte in b"HTTP/1.1 200 OK\r\n":
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(self.drip_s)
            return
        if hit and self.mode == "huge":  # an endless body: no length, closed only by the client
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(b"[")
            for _ in range(200):  # 200 MB
                handler.wfile.write(b" " * (1 << 20))
            handler.wfile.write(b"]")
            handler.close_connection = True
            return
        if hit and self.mode in ("bomb", "dupes", "empty", "empty_checksum"):
            status, body = self.spoilt_archive(path)
        else:
            status, body = self.upstream(path)
            if hit and status == 200 and self.mode == "no_symbols":  # exchangeInfo listing nothing
                body = json.dumps({**json.loads(body), "symbols": []}).encode()
            if hit and status == 200 and "klines" in path:
                rows = json.loads(body)
                query = {k: v[-1] for k, v in parse_qs(urlparse(path).query).items()}
                rows = self.spoil(rows, query, path)
                body = json.dumps(rows).encode()
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if hit and self.mode == "short":  # the length of the whole body, then half of it and the end
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        if hit and self.mode == "drip":
            for byte in body:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(self.drip_s)
            return
        handler.wfile.write(body)

    def spoil(self, rows: list, query: dict, path: str) -> list:
        if self.mode == "beyond" and "endTime" in query:  # rows of the days after the window
            later = {k: v for k, v in query.items() if k != "endTime"}
            later["startTime"] = str(int(query["endTime"]) + 1)
            _, extra = self.upstream(path.split("?")[0] + "?" + urlencode(later))
            return rows + json.loads(extra)
        if self.mode == "descending":
            return rows[::-1]
        if self.mode == "error200":  # an error object where rows were due, with HTTP 200
            return {"code": -1001, "msg": "Internal error; unable to process your request."}
        if self.mode == "duplicates":
            return [r for r in rows for _ in (0, 1)]
        if self.mode in ("nan", "inf", "negative") and rows:
            bad = {"nan": "NaN", "inf": "Infinity", "negative": "-5.0"}[self.mode]
            rows[len(rows) // 2][1 if self.mode != "negative" else 5] = bad
        return rows

    def spoilt_archive(self, path: str) -> tuple[int, bytes]:
        zip_path = path.removesuffix(".CHECKSUM")
        if zip_path not in self.zips:
            status, genuine = self.upstream(zip_path)
            if status != 200:
                return status, genuine
            with zipfile.ZipFile(io.BytesIO(genuine)) as zf:
                name = zf.namelist()[0]
                text = zf.read(name)
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
                if self.mode == "bomb":  # a valid start, then 300 MB of zeros
                    with zf.open(name, "w", force_zip64=True) as member:
                        member.write(text)
                        for _ in range(300):
                            member.write(b"0" * (1 << 20))
                elif self.mode == "dupes":
                    lines = text.splitlines(keepends=True)
                    zf.writestr(name, b"".join(lines[:10] + lines[5:]))
                else:
                    zf.writestr(name, b"" if self.mode == "empty" else text)
            self.zips[zip_path] = out.getvalue()
        data = self.zips[zip_path]
        if path.endswith(".CHECKSUM"):
            digest = "" if self.mode == "empty_checksum" else hashlib.sha256(data).hexdigest()
            return 200, f"{digest}  {zip_path.rsplit('/', 1)[-1]}\n".encode()
        return 200, data
