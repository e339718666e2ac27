"""A list-and-watch cache of suanwang's run objects on one cluster (an informer).

One daemon thread per (cluster, kind) lists the objects labelled
``app.kubernetes.io/managed-by=suanwang`` in every namespace, then watches from the list's
``resourceVersion``: ADDED / MODIFIED replace an object, DELETED removes it. When the
server ends the watch it is resumed from the last version seen; when that version has
expired (``410 Gone``, as an HTTP status or an ERROR event) the thread lists again and
resumes from the new list. So ``poll`` answers from memory, and a run's completion is
seen as the watch delivers it, without one request per run per tick.

While the thread is not in sync (before its first list, or after an error until the next
list succeeds), :meth:`JobCache.get` says so and the backend asks the API server directly.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from kubernetes import client as k8s

from suanwang.adapters.backends.kube_client import ApiKind, KubeApi
from suanwang.adapters.backends.kube_render import MANAGED_SELECTOR
from suanwang.ports import EngineUnreachable

log = structlog.get_logger("suanwang.backends.kube")
WATCH_S = 60
"""How long one watch request lasts before the server closes it (then it is resumed)."""
RETRY_S = 2.0
MAX_RETRY_S = 30.0
"""Retries after errors back off from RETRY_S to this (an API server down for long is not
asked, nor logged about, every 2 s)."""


class NotSynced(Exception):
    """The cache cannot answer (not listed yet, or the watch broke): ask the server."""


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


class JobCache:
    """The managed objects of one kind on one cluster, kept current by a watch thread."""

    def __init__(self, api: KubeApi, kind: ApiKind, *, watch_s: int = WATCH_S) -> None:
        self._api = api
        self._kind = kind
        self._watch_s = watch_s
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._synced = False
        self._stop = threading.Event()
        self._watches: list[Any] = []
        self.relists = 0
        """How many times the thread listed (the first list included): tests read it."""
        self.interruptions = 0
        """How many times the watch broke on an error (a 410 is not one: it relists)."""
        self._retry_s = RETRY_S
        self._thread = threading.Thread(
            target=self._run, name=f"kube-watch-{kind.plural}", daemon=True
        )
        self._thread.start()

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as last seen (None: it does not exist); NotSynced if unknown."""
        with self._lock:
            if not self._synced:
                raise NotSynced(self._kind.plural)
            return self._objects.get((namespace, name))

    def put(self, obj: dict[str, Any]) -> None:
        """Record an object the backend just read or created (newer versions win later)."""
        with self._lock:
            self._objects.setdefault(_key(obj), obj)

    def close(self) -> None:
        """Stop the thread (at the latest when its current watch request ends)."""
        self._stop.set()
        for watcher in list(self._watches):
            watcher.stop()
        self._thread.join(timeout=5)

    # --- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                version = self._relist()
                while not self._stop.is_set():
                    version = self._watch_from(version)
            except k8s.ApiException as exc:
                if exc.status != 410:
                    self._lost(f"watch {self._kind.plural}: {exc.status} {exc.reason}")
                else:
                    log.info("kubernetes watch expired: listing again", kind=self._kind.plural)
            except EngineUnreachable as exc:
                self._lost(str(exc))
            except Exception as exc:  # a broken stream mid-watch: never leave a stale cache
                log.exception("kubernetes watch broke", kind=self._kind.plural)
                self._lost(f"watch {self._kind.plural}: {exc!r}")

    def _lost(self, why: str) -> None:
        with self._lock:
            self._synced = False
            self.interruptions += 1
        log.warning("kubernetes watch interrupted", reason=why)
        self._stop.wait(self._retry_s)
        self._retry_s = min(self._retry_s * 2, MAX_RETRY_S)

    def _relist(self) -> str:
        items, version = self._api.list_objects(self._kind, MANAGED_SELECTOR)
        with self._lock:
            self._objects = {_key(i): i for i in items}
            self._synced = True
            self.relists += 1
        self._retry_s = RETRY_S
        return version

    def _watch_from(self, version: str) -> str:
        self._watches.clear()
        events = self._api.watch(
            self._kind, MANAGED_SELECTOR, version, self._watch_s, self._watches
        )
        for kind, obj in events:
            seen = str(obj.get("metadata", {}).get("resourceVersion", version))
            if kind == "BOOKMARK":
                version = seen
                continue
            with self._lock:
                if kind == "DELETED":
                    self._objects.pop(_key(obj), None)
                else:
                    self._objects[_key(obj)] = obj
            version = seen
            if self._stop.is_set():
                break
        return version
