"""The HTTP side of the fake Kubernetes API server (see kube_fake.py for what it answers).

:func:`fake_kube` starts one on 127.0.0.1 in a thread (``.url`` of the returned
:class:`~kube_fake.FakeKube`) and stops it on exit; watches end when it stops.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kube_fake import FakeKube, matches, now_rfc3339, status


class WallClock:
    """The backends' clock for tests against the fake: real time."""

    def now(self) -> float:
        return time.time()


_OBJECT = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?$"
)
_CORE = re.compile(
    r"^/api/v1(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?(?P<log>/log)?$"
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def kube(self) -> FakeKube:
        return self.server.kube

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, reason: str, message: str) -> None:
        self._send(code, status(code, reason, message))

    def _gate(self, method: str) -> bool:
        """Auth and injected failures; True if the request was answered here."""
        kube = self.kube
        with kube.cond:
            kube.requests.append((method, self.path))
            failure = next(
                (f for f in kube.failures if f.method == method and f.path_part in self.path), None
            )
            if failure is not None:
                failure.times -= 1
                if failure.times <= 0:
                    kube.failures.remove(failure)
        if kube.token and self.headers.get("Authorization") != f"Bearer {kube.token}":
            self._error(401, "Unauthorized", "Unauthorized")
            return True
        group = "/".join(urlsplit(self.path).path.split("/")[2:4])
        if self.path.startswith("/apis/") and group in kube.unserved:
            self._error(404, "NotFound", "the server could not find the requested resource")
            return True
        if failure is None:
            return False
        if failure.code == 0:
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        reasons = {
            500: "InternalError",
            503: "ServiceUnavailable",
            403: "Forbidden",
            422: "Invalid",
        }
        self._error(failure.code, reasons.get(failure.code, "Unknown"), f"injected {failure.code}")
        return True

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def do_POST(self) -> None:
        body = self._body()
        if self._gate("POST"):
            return
        path = urlsplit(self.path).path
        kube = self.kube
        with kube.cond:
            if path == "/api/v1/namespaces":
                key = ("v1/namespaces", "", body["metadata"]["name"])
            elif (m := _CORE.match(path)) and m["ns"]:
                key = (f"v1/{m['plural']}", m["ns"], body["metadata"]["name"])
            elif m := _OBJECT.match(path):
                key = (
                    f"{m['group']}/{m['version']}/{m['plural']}",
                    m["ns"] or "",
                    body["metadata"]["name"],
                )
            else:
                return self._error(404, "NotFound", f"no route {path}")
            if key[1] and ("v1/namespaces", "", key[1]) not in kube.objects:
                return self._error(404, "NotFound", f'namespaces "{key[1]}" not found')
            if key in kube.objects:
                return self._error(409, "AlreadyExists", f'{key[0]} "{key[2]}" already exists')
            body["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
            if key[0] == "v1/services" and body["spec"].get("type", "ClusterIP") == "ClusterIP":
                body["spec"].setdefault("clusterIP", kube.cluster_ip())
            body.setdefault("status", {})
            kube._store(key, body, "ADDED")
            return self._send(201, body)

    def do_DELETE(self) -> None:
        body = self._body()
        if self._gate("DELETE"):
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        m = _OBJECT.match(parts.path) or _CORE.match(parts.path)
        if m is None or not m["name"]:
            return self._error(404, "NotFound", f"no route {parts.path}")
        key = (self._kind(m), m["ns"] or "", m["name"])
        kube = self.kube
        with kube.cond:
            obj = kube.objects.get(key)
            if obj is None:
                return self._error(404, "NotFound", f'{key[0]} "{key[2]}" not found')
            policy = body.get("propagationPolicy") or query.get("propagationPolicy", [""])[0]
            kube.deletes.append((key[2], key[1], policy))
            kube._store(key, obj, "DELETED")
            for pkey in [
                k
                for k, p in kube.objects.items()
                if k[0] == "v1/pods"
                and k[1] == key[1]
                and p["metadata"].get("labels") == obj["metadata"].get("labels")
            ]:
                kube.objects.pop(pkey)
        if key[0] == "v1/services":  # the API answers a Service's delete with the Service
            return self._send(200, obj)
        self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})

    def _kind(self, m: re.Match[str]) -> str:
        if "group" in m.groupdict():
            return f"{m['group']}/{m['version']}/{m['plural']}"
        return f"v1/{m['plural']}"

    def do_GET(self) -> None:
        if self._gate("GET"):
            return
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        m = _OBJECT.match(parts.path) or _CORE.match(parts.path)
        if m is None:
            return self._error(404, "NotFound", f"no route {parts.path}")
        kind, ns, name = self._kind(m), m["ns"] or "", m["name"]
        kube = self.kube
        if kind == "v1/nodes":
            with kube.cond:
                return self._send(
                    200,
                    {
                        "kind": "NodeList",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(kube.version)},
                        "items": kube.nodes,
                    },
                )
        if m.groupdict().get("log"):
            with kube.cond:
                if (kind, ns, name) not in kube.objects:
                    return self._error(404, "NotFound", f'pods "{name}" not found')
                data = kube.logs.get((ns, name), b"")
            limit = int(query.get("limitBytes", len(data)))
            return self._send(200, data[:limit], "text/plain")
        if name:
            with kube.cond:
                obj = kube.objects.get((kind, ns, name))
            if obj is None:
                return self._error(404, "NotFound", f'{kind} "{name}" not found')
            return self._send(200, obj)
        if query.get("watch") in ("true", "1"):
            return self._watch(kind, ns, query)
        selector = query.get("labelSelector", "")
        with kube.cond:
            items = [
                o
                for k, o in kube.objects.items()
                if k[0] == kind
                and (not ns or k[1] == ns)
                and matches(o["metadata"].get("labels") or {}, selector)
            ]
            version = kube.version
        self._send(
            200,
            {
                "kind": "List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(version)},
                "items": items,
            },
        )

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, kind: str, ns: str, query: dict[str, str]) -> None:
        kube = self.kube
        since = int(query.get("resourceVersion") or 0)
        deadline = time.monotonic() + float(query.get("timeoutSeconds", 30))
        selector = query.get("labelSelector", "")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            with kube.cond:
                expired = since < kube.compacted
            if expired:
                self._chunk(
                    {
                        "type": "ERROR",
                        "object": status(
                            410, "Expired", f"too old resource version: {since} ({kube.compacted})"
                        ),
                    }
                )
            else:
                for version, event, obj in self._events(kind, ns, selector, since, deadline):
                    self._chunk({"type": event, "object": obj})
                    since = version
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _events(
        self, kind: str, ns: str, selector: str, since: int, deadline: float
    ) -> Iterator[tuple[int, str, dict[str, Any]]]:
        kube = self.kube
        while not self.server.stopping.is_set():
            with kube.cond:
                fresh = [e for e in kube.events if e[0] > since and e[2] == kind]
                if not fresh:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    kube.cond.wait(min(left, 0.5))
                    continue
            for version, event, _, obj in fresh:
                since = version
                meta = obj["metadata"]
                if (not ns or meta.get("namespace") == ns) and matches(
                    meta.get("labels") or {}, selector
                ):
                    yield version, event, obj


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, kube: FakeKube) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.kube = kube
        self.stopping = threading.Event()


def _controller(kube: FakeKube, stopping: threading.Event) -> None:
    while not stopping.wait(0.1):
        kube.tick()


@contextmanager
def fake_kube(token: str = "", *, controller: bool = False) -> Iterator[FakeKube]:
    """A running fake API server on 127.0.0.1 (its URL in ``.url``), stopped on exit;
    ``controller``: jobs start and end by themselves (:meth:`FakeKube.tick`)."""
    kube = FakeKube(token=token)
    server = Server(kube)
    kube.url = f"http://127.0.0.1:{server.server_address[1]}"
    threads = [
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    ]
    if controller:
        threads.append(
            threading.Thread(target=_controller, args=(kube, server.stopping), daemon=True)
        )
    for thread in threads:
        thread.start()
    try:
        yield kube
    finally:
        server.stopping.set()
        with kube.cond:
            kube.cond.notify_all()
        server.shutdown()
        server.server_close()
        for thread in threads:
            thread.join(timeout=5)
