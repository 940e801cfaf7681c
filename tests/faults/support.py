"""Helpers of the fault figures (tests/faults/test_fault_figures.py).

`S3Proxy` is an HTTP proxy on loopback in front of an S3 server (moto's): a region's store
pointed at it sends every request through it, so the test counts what really reached the
region (request and response body bytes, each request's answer) without trusting the
product's own counters, and can make the endpoint fail: answer 503 or 500, or time out
(the connections it has are dropped and no new one is accepted, so a client's connect
times out as it would on an endpoint that went dark).

The data set helpers write a fixed tree of random files and hash trees and points.
"""

import hashlib
import http.client
import os
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from console.models import Region
from vaults.dataplane.readback import PointReader

MiB = 1 << 20
PIECE = 64 * 1024

ERRORS = {
    "503": (503, "Service Unavailable", "ServiceUnavailable", "The service is unavailable. Please try again."),
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
}


@dataclass
class Exchange:
    """One request that went through the proxy."""

    method: str
    bucket: str
    key: str
    sent: int = 0  # request body bytes received from the client (passed on unless refused)
    received: int = 0  # response body bytes passed back to the client
    status: int | None = None  # the answer (None: cut before one: the client died or the endpoint timed out)
    fault: str = ""

    @property
    def stored(self):
        """A PUT the server took (it may have stored it even if the client never saw the answer)."""
        return self.method == "PUT" and self.status is not None and 200 <= self.status < 300 and not self.fault


def listen_overflows():
    """SYNs the kernel dropped because a listen queue was full (TcpExt ListenOverflows, the whole host's)."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1], strict=True))["ListenOverflows"])


class _Dropped(Exception):
    """The exchange ends without an answer: the connection is closed."""


class S3Proxy:
    """A counting, fault-injecting HTTP proxy on 127.0.0.1 in front of `upstream` (an S3 endpoint URL)."""

    def __init__(self, upstream):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.lock = threading.Lock()
        self.gate = threading.Lock()  # held around accept(), so the listening socket changes between two calls
        self.exchanges = []
        self.live = Counter()  # body bytes by method as they pass: PUT request bodies, GET response bodies
        self.faults = Counter()  # requests answered 503, 500, dropped unanswered ("timeout"); "syn": connects refused
        self.fault = None
        self.paused = False
        self.dummy = None
        self.overflows = 0
        self.clients = set()
        self.stopped = False
        self.thread = threading.Thread(target=self._accept_loop, name="s3-proxy", daemon=True)
        self.thread.start()

    # -- faults ---------------------------------------------------------------------------------------------

    def set_fault(self, fault):
        """None (healthy), "503", "500" (every request answered so) or "timeout" (no answer, no new connection)."""
        assert fault in (None, "503", "500", "timeout")
        with self.gate:
            if fault == "timeout" and self.fault != "timeout":
                # A listen backlog of 0 with one connection waiting is full: the kernel drops the SYNs of any
                # other client, whose connect then times out (the proxy stops accepting meanwhile).
                self.paused = True
                self.overflows = listen_overflows()
                self.sock.listen(0)
                self.dummy = socket.create_connection(self.sock.getsockname(), timeout=2)
                self.fault = fault
                self._drop_clients()
            elif fault != "timeout" and self.fault == "timeout":
                self.fault = fault
                self.sock.listen(128)
                self.paused = False
                self.dummy.close()
                self.dummy = None
                self.faults["syn"] += listen_overflows() - self.overflows
            else:
                self.fault = fault

    def _drop_clients(self):
        with self.lock:
            clients = list(self.clients)
        for conn in clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.stopped = True
        with self.gate:
            self.sock.close()
            if self.dummy is not None:
                self.dummy.close()
        self._drop_clients()
        self.thread.join(5)

    # -- what passed ----------------------------------------------------------------------------------------

    def done(self, method=None, prefixes=("",)):
        """The finished exchanges (of `method`, with a key under one of `prefixes`)."""
        with self.lock:
            exchanges = list(self.exchanges)
        return [
            e
            for e in exchanges
            if (method is None or e.method == method) and any(e.key.startswith(p) for p in prefixes)
        ]

    def put_bytes(self, prefixes=("",), stored=None):
        """Request body bytes of the PUTs under `prefixes` (taken by the server, cut off, or either)."""
        return sum(e.sent for e in self.done("PUT", prefixes) if stored is None or e.stored == stored)

    # -- serving --------------------------------------------------------------------------------------------

    def _accept_loop(self):
        while not self.stopped:
            conn = None
            with self.gate:
                if not self.paused:
                    try:
                        conn, _ = self.sock.accept()
                    except TimeoutError:
                        pass
                    except OSError:
                        return
            if conn is None:
                if self.paused:
                    time.sleep(0.02)
                continue
            conn.settimeout(None)
            threading.Thread(target=self._serve, args=(conn,), name="s3-proxy-conn", daemon=True).start()

    def _serve(self, conn):
        with self.lock:
            self.clients.add(conn)
        handler = None
        try:
            handler = _Handler(conn, conn.getpeername(), self)
        except (_Dropped, OSError, http.client.HTTPException):
            pass
        finally:
            if handler is not None and handler.upstream is not None:
                handler.upstream.close()
            with self.lock:
                self.clients.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _record(self, exchange):
        with self.lock:
            self.exchanges.append(exchange)
            if exchange.fault:
                self.faults[exchange.fault] += 1

    def _count(self, method, n):
        with self.lock:
            self.live[method] += n


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect
    upstream = None

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def handle(self):
        try:
            super().handle()
        except _Dropped:
            self.close_connection = True

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self):
        self._forward()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _forward(self):
        proxy = self.server
        bucket, _, key = urlsplit(self.path).path.lstrip("/").partition("/")
        exchange = Exchange(self.command, bucket, unquote(key))
        fault = proxy.fault
        try:
            if fault == "timeout":  # arrived on a connection the endpoint is dropping: no answer
                exchange.fault = fault
                raise _Dropped()
            if fault in ERRORS:
                exchange.fault = fault
                self._body(exchange, None)
                self._error(*ERRORS[fault])
                exchange.status = ERRORS[fault][0]
                return
            self._pass_on(exchange)
        finally:
            proxy._record(exchange)

    def _pass_on(self, exchange):
        if self.upstream is None:
            self.upstream = http.client.HTTPConnection(*self.server.upstream, timeout=300)
        upstream = self.upstream
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() != "expect":  # the client was told to go on already (handle_expect_100)
                upstream.putheader(name, value)
        upstream.endheaders()
        try:
            self._body(exchange, upstream)
        except _Dropped:
            upstream.close()  # a partial body: the server must not take it
            self.upstream = None
            raise
        response = upstream.getresponse()
        exchange.status = response.status
        if self.command == "HEAD":
            body, length = b"", None
        elif response.length is None:  # chunked or until close: passed on whole, with its length
            body = response.read()
            length = len(body)
        else:
            body, length = None, response.length
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection") and not (
                length is not None and name.lower() == "content-length"
            ):
                self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            if body is None:
                while piece := response.read(PIECE):
                    self._write(exchange, piece)
            elif body:
                self._write(exchange, body)
            self.wfile.flush()
        except OSError as exc:
            raise _Dropped() from exc
        finally:
            if response.will_close or not response.isclosed():
                upstream.close()
                self.upstream = None

    def _write(self, exchange, piece):
        self.wfile.write(piece)
        exchange.received += len(piece)
        if self.command == "GET":
            self.server._count("GET", len(piece))

    def _body(self, exchange, upstream):
        """Read the request's body, passing it on to `upstream` (None: drained). _Dropped if the client died."""
        count = upstream is not None and self.command == "PUT"

        def take(data):
            if upstream is not None:
                upstream.send(data)

        def read(n):
            try:
                data = self.rfile.read(n)
            except OSError as exc:
                raise _Dropped() from exc
            if len(data) < n:
                raise _Dropped()
            return data

        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise _Dropped()
                take(line)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers, then the empty line
                        line = self.rfile.readline(65536)
                        if not line:
                            raise _Dropped()
                        take(line)
                        if line in (b"\r\n", b"\n"):
                            return
                data = read(size + 2)
                take(data)
                exchange.sent += size
                if count:
                    self.server._count("PUT", size)
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            data = read(min(left, PIECE))
            take(data)
            left -= len(data)
            exchange.sent += len(data)
            if count:
                self.server._count("PUT", len(data))

    def _error(self, status, reason, code, message):
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            "<RequestId>fault-injected</RequestId></Error>"
        ).encode()
        self.send_response_only(status, reason)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()


def serve_region_through(region, proxy, bucket):
    """The region's store: `bucket` on the S3 server behind `proxy` (the workers read the row at each task)."""
    Region.objects.filter(pk=region.pk).update(store_backend="s3", store_endpoint_url=proxy.url, store_location=bucket)
    region.refresh_from_db()


# -- the data set -------------------------------------------------------------------------------------------


def write_random_files(root, total, rng, prefix="f", smallest=64 << 10, largest=4 * MiB):
    """Files of random (incompressible) bytes and random sizes adding up to `total` bytes; their names."""
    root.mkdir(parents=True, exist_ok=True)
    names, left, n = [], total, 0
    while left > 0:
        size = min(left, rng.randrange(smallest, largest + 1))
        name = f"{prefix}{n:04d}.bin"
        (root / name).write_bytes(rng.randbytes(size))
        names.append(name)
        left -= size
        n += 1
    return names


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def tree_hashes(root):
    """{relative path: sha256} of every regular file under `root`."""
    root = Path(root)
    found = {}
    for top, _dirs, files in os.walk(root):
        for name in files:
            path = Path(top) / name
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(MiB):
                    digest.update(block)
            found[str(path.relative_to(root))] = digest.hexdigest()
    return found


def point_hashes(point):
    """{path: sha256} of every file of a point, read back (and checked) from its vault's store."""
    reader = PointReader(point)
    found = {}
    for entry in reader.manifest()["entries"]:
        if entry["type"] == "file":
            digest = hashlib.sha256()
            for data in reader.iter_file(entry):
                digest.update(data)
            found[entry["path"]] = digest.hexdigest()
    return found


def seeded(name, default=None):
    """A seed from the environment variable `name` (to replay a run), else a new one; (seed, Random)."""
    value = os.environ.get(name)
    seed = int(value) if value else (default if default is not None else random.randrange(1 << 30))
    return seed, random.Random(seed)
