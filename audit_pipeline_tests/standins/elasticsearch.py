"""A stand-in for an Elasticsearch 9 node: the parts of its REST API the forwarder and the tests use.

This is a stand-in, not Elasticsearch: no Elasticsearch server can be installed on these machines.
It follows Elastic's documentation of the APIs closely enough for the official Python client:

* every answer carries ``X-Elastic-Product: Elasticsearch`` (the client refuses servers without
  it) and honours the client's ``compatible-with=N`` media type: a version other than the
  server's major or the one before is a 400 ``media_type_header_exception``;
* ``GET /`` cluster info; ``PUT|GET|DELETE|HEAD /_index_template/<name>`` composable templates
  (``index_patterns``, ``priority``, ``version``, ``_meta``, ``template.mappings``);
* ``POST|PUT /_bulk`` and ``/<index>/_bulk`` (the client sends PUT): NDJSON action/source pairs,
  ``create`` (``409 version_conflict_engine_exception`` when the id exists) and ``index``;
  indices are created on first write and take the highest-priority matching template's
  mappings, which are enforced for ``date``/``date_nanos``, ``ip`` (with ``ignore_malformed``),
  ``keyword`` and ``dynamic: strict`` (``400 document_parsing_exception``), nested ``properties`` included;
  an index whose template's ``_meta`` names an ``ecs_version`` takes only ECS's allowed values in
  ``event.kind``, ``event.category``, ``event.type`` and ``event.outcome`` (the closed lists of Elastic's
  "ECS categorization fields" pages), as a cluster with an ECS-validating ingest pipeline does; per-item errors come
  inside an HTTP 200 with ``"errors": true``, as the real server does; ``filter_path`` is applied;
* ``GET /<index>/_doc/<id>``, ``GET|POST /<index>/_count`` (wildcards, comma lists; match_all or an ``ids`` query),
  ``POST /<index>/_refresh``, ``DELETE /<index>`` (concrete names only: wildcards are refused
  as with 8.x's default ``action.destructive_requires_name: true``),
  ``GET /_cat/indices[/<expression>]?format=json``;
* ``Authorization: ApiKey ...`` or Basic when ``api_key`` / ``basic_auth`` is set (401 otherwise).

Faults on demand: :meth:`reject_ids` (a mapping rejection, 400, for those ids),
:meth:`throttle_ids` (per-item 429 ``es_rejected_execution_exception`` for the first N attempts),
:meth:`outage` (503 to everything for a while), :meth:`drop_connections` (the next N bulk
requests are applied, then the connection is closed without an answer), ``bulk_delay`` (seconds
before a bulk request is applied) and ``on_bulk`` (called when a bulk request arrives).

``creates`` counts, per ``(index, _id)``, the ``create`` actions that *succeeded*: a value above 1
would be a duplicate, which the real server cannot show after the fact.

Run it alone (the benchmark does): ``python -m audit_pipeline_tests.standins.elasticsearch --port 9200``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fnmatch
import gzip
import ipaddress
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

VERSION = "9.1.0"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_INVALID_INDEX = re.compile(r'[\\/*?"<>| ,#:A-Z]')
_COMPAT = re.compile(r"compatible-with=(\d+)")


def _error(kind: str, reason: str, status: int, **extra: Any) -> dict[str, Any]:
    cause = {"type": kind, "reason": reason, **extra}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


_WHOLE = object()


def _path_tree(paths: list[list[str]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for i, segment in enumerate(path):
            if i == len(path) - 1:
                node[segment] = _WHOLE
            elif node.get(segment) is not _WHOLE:
                node = node.setdefault(segment, {})
    return tree


def _merge(trees: list[Any]) -> Any:
    if any(t is _WHOLE for t in trees):
        return _WHOLE
    if len(trees) == 1:
        return trees[0]
    merged: dict[str, Any] = {}
    for tree in trees:
        for key, sub in tree.items():
            merged[key] = _merge([merged[key], sub]) if key in merged else sub
    return merged


def _subtree(tree: Any, key: str, cache: dict[Any, Any]) -> Any:
    """The merged path tree that applies below ``key`` (None: the key is dropped)."""
    slot = (id(tree), key)
    if slot not in cache:
        subs = [tree[key]] if key in tree else []
        subs.extend(s for segment, s in tree.items() if "*" in segment and (segment == "*" or fnmatch.fnmatchcase(key, segment)))
        cache[slot] = _merge(subs) if subs else None
    return cache[slot]


def _filter(value: Any, tree: Any, cache: dict[Any, Any]) -> Any:
    if tree is _WHOLE:
        return value
    if isinstance(value, list):
        return [_filter(v, tree, cache) for v in value]
    if not isinstance(value, dict):
        return None
    # Objects of one shape (a bulk answer's thousands of items) share one plan of what to keep.
    shape = (id(tree), tuple(value))
    plan = cache.get(shape)
    if plan is None:
        plan = cache[shape] = [(key, sub) for key in value if (sub := _subtree(tree, key, cache)) is not None]
    out = {}
    for key, sub in plan:
        kept = value[key] if sub is _WHOLE else _filter(value[key], sub, cache)
        if kept is not None and kept != {}:
            out[key] = kept
    return out


def filter_path(value: Any, paths: list[list[str]]) -> Any:
    """Elasticsearch's ``filter_path``: keep what the dotted paths (``*`` wildcards) select."""
    tree = _path_tree(paths)
    return _filter(value, tree, {})


_SHARDS = {"total": 1, "successful": 1, "failed": 0}


class ElasticsearchStandIn:
    def __init__(
        self,
        *,
        port: int = 0,
        version: str = VERSION,
        api_key: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        product_header: bool = True,
        store_documents: bool = True,
        auto_create_index: bool = True,
    ) -> None:
        self.version = version
        self.api_key = api_key
        self.basic_auth = basic_auth
        self.product_header = product_header
        self.store_documents = store_documents
        self.auto_create_index = auto_create_index
        self.templates: dict[str, dict[str, Any]] = {}
        #: index -> {"mappings": ..., "docs": {_id: source bytes}}
        self.indices: dict[str, dict[str, Any]] = {}
        self.creates: Counter[tuple[str, str]] = Counter()
        self.conflicts = 0
        self.item_statuses: Counter[int] = Counter()
        self.requests: list[tuple[str, str, int | None]] = []
        self.bulk_requests = 0
        self.bulk_delay = 0.0
        self.on_bulk: Callable[[int], None] | None = None
        self._rejected: dict[str, str] = {}
        self._throttled: dict[str, int] = {}
        self._outage_until = 0.0
        self._drops = 0
        self._lock = threading.RLock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                standin._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ElasticsearchStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- faults --------------------------------------------------------------------------------
    def reject_ids(self, ids: dict[str, str] | set[str] | list[str], reason: str = "failed to parse field [metadata] of type [flattened]") -> None:
        with self._lock:
            for i in ids:
                self._rejected[i] = ids[i] if isinstance(ids, dict) else reason

    def clear_rejections(self) -> None:
        with self._lock:
            self._rejected.clear()

    def throttle_ids(self, ids: set[str] | list[str], times: int = 1) -> None:
        with self._lock:
            for i in ids:
                self._throttled[i] = times

    def outage(self, seconds: float) -> None:
        """Answer 503 to every request for ``seconds`` (0 ends an outage)."""
        with self._lock:
            self._outage_until = time.monotonic() + seconds

    def drop_connections(self, count: int) -> None:
        with self._lock:
            self._drops += count

    # -- views for tests -----------------------------------------------------------------------
    def documents(self) -> dict[str, str]:
        """``_id`` → index for every stored document."""
        with self._lock:
            return {doc_id: name for name, index in self.indices.items() for doc_id in index["docs"]}

    def source(self, index: str, doc_id: str) -> dict[str, Any]:
        with self._lock:
            value: dict[str, Any] = orjson.loads(self.indices[index]["docs"][doc_id])
            return value

    def duplicates(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return {k: v for k, v in self.creates.items() if v > 1}

    # -- HTTP ----------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if handler.headers.get("Content-Encoding", "").lower() == "gzip" and body:
            body = gzip.decompress(body)
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segments = [unquote(s) for s in parts.path.split("/") if s]
        status, payload, drop = self._route(handler, segments, query, body)
        with self._lock:
            self.requests.append((handler.command, parts.path, None if drop else status))
        if drop:
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(2)
            return
        if payload is not None and "filter_path" in query and status < 300:
            payload = filter_path(payload, [p.split(".") for p in query["filter_path"].split(",")])
        data = b"" if payload is None or handler.command == "HEAD" else orjson.dumps(payload)
        try:
            handler.send_response(status)
            if self.product_header:
                handler.send_header("X-Elastic-Product", "Elasticsearch")
            handler.send_header("Content-Type", f"application/vnd.elasticsearch+json;compatible-with={self.version.split('.')[0]}")
            if status == 401:
                handler.send_header("WWW-Authenticate", 'ApiKey, Basic realm="security", charset="UTF-8"')
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            if data:
                handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        if self.api_key is None and self.basic_auth is None:
            return True
        given = handler.headers.get("Authorization", "")
        if self.api_key is not None and given == f"ApiKey {self.api_key}":
            return True
        if self.basic_auth is not None:
            expected = base64.b64encode(f"{self.basic_auth[0]}:{self.basic_auth[1]}".encode()).decode()
            if given == f"Basic {expected}":
                return True
        return False

    def _route(self, handler: BaseHTTPRequestHandler, segments: list[str], query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        method = handler.command
        if not self._authorised(handler):
            return (
                401,
                _error("security_exception", "unable to authenticate with provided credentials and anonymous access is not allowed for this request", 401),
                False,
            )
        for header in ("Accept", "Content-Type"):
            match = _COMPAT.search(handler.headers.get(header, ""))
            major = int(self.version.split(".")[0])
            if match and int(match.group(1)) not in (major, major - 1):
                reason = f"{header} version must be either version {major} or {major - 1}, but found {match.group(1)}. {header}={handler.headers.get(header)}"
                return (
                    400,
                    _error(
                        "media_type_header_exception",
                        "Invalid media-type value on headers [Accept, Content-Type]",
                        400,
                        caused_by={"type": "status_exception", "reason": reason},
                    ),
                    False,
                )
        with self._lock:
            if time.monotonic() < self._outage_until:
                return 503, _error("cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];", 503), False
        if not segments:
            if method in ("GET", "HEAD"):
                return 200, self._info(), False
            return 405, _error("illegal_argument_exception", f"Incorrect HTTP method for uri [/] and method [{method}]", 405), False
        if segments[0] == "_index_template" and len(segments) == 2:
            return (*self._template(method, segments[1], body), False)
        if segments[-1] == "_bulk" and len(segments) <= 2 and method in ("POST", "PUT"):
            return self._bulk(handler, segments[0] if len(segments) == 2 else None, body)
        if segments[:2] == ["_cat", "indices"] and len(segments) <= 3 and method == "GET":
            with self._lock:
                names = sorted(self._matching(segments[2]) if len(segments) == 3 else self.indices)
                return (
                    200,
                    [{"index": n, "docs.count": str(len(self.indices[n]["docs"])), "health": "green", "status": "open"} for n in names],
                    False,
                )
        if len(segments) == 2 and segments[1] == "_count":
            return (*self._count(segments[0], body), False)
        if len(segments) == 2 and segments[1] == "_refresh":
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}, False
        if len(segments) == 3 and segments[1] == "_doc" and method in ("GET", "HEAD"):
            return (*self._get(segments[0], segments[2]), False)
        if len(segments) == 1 and method == "DELETE":
            if "*" in segments[0] or segments[0] == "_all":  # action.destructive_requires_name defaults to true since 8.0
                return 400, _error("illegal_argument_exception", "Wildcard expressions or all indices are not allowed", 400), False
            with self._lock:
                names = self._matching(segments[0])
                for name in names:
                    del self.indices[name]
                    for key in [k for k in self.creates if k[0] == name]:
                        del self.creates[key]
            if not names:
                return 404, _error("index_not_found_exception", f"no such index [{segments[0]}]", 404, index=segments[0]), False
            return 200, {"acknowledged": True}, False
        return 400, _error("illegal_argument_exception", f"request [{method} /{'/'.join(segments)}] is not supported by this stand-in", 400), False

    def _info(self) -> dict[str, Any]:
        return {
            "name": "standin-node",
            "cluster_name": "audit-standin",
            "cluster_uuid": "standin",
            "version": {"number": self.version, "build_flavor": "default", "lucene_version": "10.0.0", "minimum_wire_compatibility_version": "8.19.0"},
            "tagline": "You Know, for Search",
        }

    def _matching(self, expression: str) -> list[str]:
        with self._lock:
            names: list[str] = []
            for part in expression.split(","):
                names.extend(n for n in self.indices if fnmatch.fnmatchcase(n, part) and n not in names)
            return names

    # -- templates -----------------------------------------------------------------------------
    def _template(self, method: str, name: str, body: bytes) -> tuple[int, Any]:
        with self._lock:
            if method in ("PUT", "POST"):
                spec = orjson.loads(body or b"{}")
                if not spec.get("index_patterns"):
                    return 400, _error("action_request_validation_exception", "Validation Failed: 1: index patterns are missing;", 400)
                self.templates[name] = spec
                return 200, {"acknowledged": True}
            if name not in self.templates:
                return 404, _error("resource_not_found_exception", f"index template matching [{name}] not found", 404)
            if method == "DELETE":
                del self.templates[name]
                return 200, {"acknowledged": True}
            return 200, {"index_templates": [{"name": name, "index_template": self.templates[name]}]}

    def _template_for(self, index: str) -> dict[str, Any] | None:
        best = None
        for spec in self.templates.values():
            patterns = spec["index_patterns"]
            matches = any(fnmatch.fnmatchcase(index, p) for p in ([patterns] if isinstance(patterns, str) else patterns))
            if matches and (best is None or spec.get("priority", 0) > best.get("priority", 0)):
                best = spec
        return best

    # -- documents -----------------------------------------------------------------------------
    def _count(self, expression: str, body: bytes) -> tuple[int, Any]:
        """``_count``: all documents, or those an ``ids`` query names; a concrete missing index is a 404 as in Elasticsearch."""
        query = (orjson.loads(body) if body else {}).get("query") or {"match_all": {}}
        names = self._matching(expression)
        missing = [p for p in expression.split(",") if "*" not in p and p not in names]
        if missing:
            return 404, _error("index_not_found_exception", f"no such index [{missing[0]}]", 404, index=missing[0])
        if set(query) - {"match_all", "ids"}:
            return 400, _error("parsing_exception", f"the stand-in understands match_all and ids queries, not {sorted(query)}", 400)
        with self._lock:
            if "ids" in query:
                wanted = set(query["ids"].get("values", []))
                count = sum(sum(1 for i in self.indices[n]["docs"] if i in wanted) for n in names)
            else:
                count = sum(len(self.indices[n]["docs"]) for n in names)
        return 200, {"count": count, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}

    def _get(self, index: str, doc_id: str) -> tuple[int, Any]:
        with self._lock:
            docs = self.indices.get(index, {}).get("docs", {})
            if doc_id not in docs:
                return 404, {"_index": index, "_id": doc_id, "found": False}
            return 200, {"_index": index, "_id": doc_id, "_version": 1, "found": True, "_source": orjson.loads(docs[doc_id])}

    def _bulk(self, handler: BaseHTTPRequestHandler, default_index: str | None, body: bytes) -> tuple[int, Any, bool]:
        content_type = handler.headers.get("Content-Type", "")
        if "x-ndjson" not in content_type and "application/json" not in content_type:
            return 406, _error("media_type_header_exception", f"Content-Type header [{content_type}] is not supported", 406), False
        if body and not body.endswith(b"\n"):
            return 400, _error("illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]", 400), False
        with self._lock:
            self.bulk_requests += 1
            number = self.bulk_requests
        if self.on_bulk is not None:
            self.on_bulk(number)
        if self.bulk_delay:
            time.sleep(self.bulk_delay)
        started = time.perf_counter()
        lines = body.split(b"\n")
        items = []
        errors = False
        i = 0
        with self._lock:
            while i < len(lines) - 1:
                action_line = lines[i]
                if not action_line.strip():
                    i += 1
                    continue
                try:
                    action = orjson.loads(action_line)
                    ((op, meta),) = action.items()
                except (orjson.JSONDecodeError, ValueError):
                    return 400, _error("x_content_parse_exception", f"[1:1] Malformed action/metadata line [{i + 1}]", 400), False
                if op not in ("create", "index"):
                    return (
                        400,
                        _error(
                            "illegal_argument_exception",
                            f"Malformed action/metadata line [{i + 1}], expected one of [create, delete, index, update] but found [{op}]",
                            400,
                        ),
                        False,
                    )
                source = lines[i + 1] if i + 1 < len(lines) else b""
                i += 2
                item = self._apply(op, meta.get("_index") or default_index, meta.get("_id"), source)
                errors = errors or "error" in item
                self.item_statuses[item["status"]] += 1
                items.append({op: item})
            drop = self._drops > 0
            if drop:
                self._drops -= 1
        took = int((time.perf_counter() - started) * 1000)
        return 200, {"errors": errors, "took": took, "items": items}, drop

    def _apply(self, op: str, index: str | None, doc_id: str | None, source: bytes) -> dict[str, Any]:
        if not index:
            return {
                "_index": None,
                "_id": doc_id,
                "status": 400,
                "error": {"type": "action_request_validation_exception", "reason": "Validation Failed: 1: index is missing;"},
            }
        if _INVALID_INDEX.search(index) or index[0] in "-_+":
            return {
                "_index": index,
                "_id": doc_id,
                "status": 400,
                "error": {"type": "invalid_index_name_exception", "reason": f"Invalid index name [{index}]", "index": index},
            }
        doc_id = doc_id or uuid.uuid4().hex
        base = {"_index": index, "_id": doc_id}
        remaining = self._throttled.get(doc_id, 0) if self._throttled else 0
        if remaining > 0:
            self._throttled[doc_id] = remaining - 1
            return {
                **base,
                "status": 429,
                "error": {
                    "type": "es_rejected_execution_exception",
                    "reason": "rejected execution of coordinating operation [shard_detail=[" + index + "][0][P], shard_coordinating_and_primary_bytes=0]",
                },
            }
        if self._rejected and doc_id in self._rejected:
            return {**base, "status": 400, "error": {"type": "document_parsing_exception", "reason": f"[1:1] {self._rejected[doc_id]}"}}
        target = self.indices.get(index)
        if target is None:
            if not self.auto_create_index:
                return {**base, "status": 404, "error": {"type": "index_not_found_exception", "reason": f"no such index [{index}]", "index": index}}
            template = self._template_for(index)
            mappings = (template or {}).get("template", {}).get("mappings", {})
            ecs = "ecs_version" in ((template or {}).get("_meta") or {})
            target = {"mappings": mappings, "docs": {}, "plan": _plan(mappings, ecs)}
            self.indices[index] = target
        if op == "create" and doc_id in target["docs"]:
            self.conflicts += 1
            return {
                **base,
                "status": 409,
                "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": f"[{doc_id}]: version conflict, document already exists (current version [1])",
                    "index": index,
                    "shard": "0",
                },
            }
        problem = _validate(target["plan"], source)
        if problem:
            return {**base, "status": 400, "error": {"type": problem[0], "reason": problem[1], "index": index}}
        updated = doc_id in target["docs"]
        target["docs"][doc_id] = source if self.store_documents else b""
        if op == "create":
            key = (index, doc_id)
            self.creates[key] = self.creates.get(key, 0) + 1  # not `+= 1`: Counter.__missing__ is a Python call per event
        return {
            "_index": index,
            "_id": doc_id,
            "_version": 1,
            "result": "updated" if updated else "created",
            "_shards": _SHARDS,
            "status": 200 if updated else 201,
        }


#: ECS's closed lists for the categorization fields, from Elastic's documentation
#: (https://www.elastic.co/docs/reference/ecs/ecs-allowed-values-event-kind, -event-category, -event-type, -event-outcome).
ECS_ALLOWED: dict[str, frozenset[str]] = {
    "event.kind": frozenset({"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"}),
    "event.category": frozenset(
        [
            "api",
            "authentication",
            "configuration",
            "database",
            "driver",
            "email",
            "file",
            "host",
            "iam",
            "intrusion_detection",
            "library",
            "malware",
            "network",
            "package",
            "process",
            "registry",
            "session",
            "threat",
            "vulnerability",
            "web",
        ]
    ),
    "event.type": frozenset(
        [
            "access",
            "admin",
            "allowed",
            "change",
            "connection",
            "creation",
            "deletion",
            "denied",
            "device",
            "end",
            "error",
            "group",
            "indicator",
            "info",
            "installation",
            "protocol",
            "start",
            "user",
        ]
    ),
    "event.outcome": frozenset({"failure", "success", "unknown"}),
}

Plan = tuple[bool, dict[str, tuple[str, bool]], bool, bool]


def _plan(mappings: dict[str, Any], ecs: bool = False) -> Plan:
    """What to check per field: (strict dynamic mapping, {dotted field: (type, ignore_malformed)}, any nested field, ECS index)."""
    checks: dict[str, tuple[str, bool]] = {}

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for name, spec in properties.items():
            if "properties" in spec and "type" not in spec:
                walk(spec["properties"], f"{prefix}{name}.")
            else:
                checks[prefix + name] = (spec.get("type", "object"), bool(spec.get("ignore_malformed")))

    walk(mappings.get("properties", {}), "")
    return mappings.get("dynamic") == "strict", checks, any("." in k for k in checks), ecs


def _flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in document.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[prefix + name] = value
    return flat


def _is_ip(value: Any) -> bool:
    """Whether Elasticsearch's ``ip`` type takes the value, as :func:`ipaddress.ip_address` decides.

    The C library's ``inet_pton`` answers first: whatever it takes (four decimal octets without leading zeros,
    or an IPv6 address) ``ip_address`` takes too, in a fraction of the time; parsing every address in Python was
    most of what this stand-in spent per event, on the cores it shares with the client under test."""
    if isinstance(value, str):
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, value)
            except OSError:
                continue
            return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _validate(plan: Plan, source: bytes) -> tuple[str, str] | None:
    """The mapping errors Elasticsearch would raise for this document, if any."""
    try:
        document = orjson.loads(source)
    except orjson.JSONDecodeError:
        return "document_parsing_exception", "[1:1] failed to parse: the source is not a JSON object"
    if not isinstance(document, dict):
        return "document_parsing_exception", "[1:1] failed to parse: the source is not a JSON object"
    strict, checks, nested, ecs = plan
    if not checks and not strict:
        return None
    if nested:
        document = _flatten(document)
    if ecs:
        for name, allowed in ECS_ALLOWED.items():
            value = document.get(name)
            for item in value if isinstance(value, list) else [] if value is None else [value]:
                if item not in allowed:
                    return "illegal_argument_exception", f"[{name}] has the value [{item}], which is not one of ECS's allowed values {sorted(allowed)}"
    for name, value in document.items():
        check = checks.get(name)
        if check is None:
            if strict:
                return "strict_dynamic_mapping_exception", f"[1:1] mapping set to strict, dynamic introduction of [{name}] within [_doc] is not allowed"
            continue
        if value is None:
            continue
        kind, ignore_malformed = check
        # Any field may hold an array of its values (Elasticsearch has no array type); each value is checked.
        for item in value if isinstance(value, list) else (value,):
            problem = _field_problem(name, item, kind, ignore_malformed)
            if problem:
                return problem
    return None


def _field_problem(name: str, value: Any, kind: str, ignore_malformed: bool) -> tuple[str, str] | None:
    if kind == "keyword":
        if isinstance(value, dict | list):
            return "document_parsing_exception", f"[1:1] failed to parse field [{name}] of type [keyword] in document"
    elif kind in ("date", "date_nanos"):
        if not (isinstance(value, str) and _DATE.match(value)):
            return "document_parsing_exception", f"[1:1] failed to parse field [{name}] of type [{kind}] in document"
    elif kind == "ip" and not ignore_malformed and not _is_ip(value):
        return "document_parsing_exception", f"[1:1] failed to parse field [{name}] of type [ip] in document. Preview of field's value: '{value}'"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Elasticsearch stand-in on a local port.")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--no-store", action="store_true", help="count documents, do not keep them (benchmarks)")
    args = parser.parse_args()
    standin = ElasticsearchStandIn(port=args.port, store_documents=not args.no_store)
    print(f"listening on {standin.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        standin.close()


if __name__ == "__main__":
    main()
