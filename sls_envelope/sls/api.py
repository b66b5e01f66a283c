"""The SLS operations over a KeyManager (keys, encrypt_conf echo, SLS errors) and shard
files (store.py).  ``SlsApi.handle`` takes a parsed request and returns status, headers
and body; the HTTP glue is server.py."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..exceptions import SlsEnvelopeError
from ..keys import KeyManager
from ..kms.ram import Caller
from ..names import SLS_MIN_NAME, is_logstore_name, is_project_name
from . import wire
from .store import Shard

__all__ = ["ApiError", "Response", "SlsApi"]

Response = tuple[int, dict[str, str], bytes]


class ApiError(SlsEnvelopeError):
    def __init__(self, message: str, code: str, http_status: int) -> None:
        super().__init__(message, code=code, http_status=http_status)


def _json(obj: Any) -> Response:
    return 200, {"Content-Type": "application/json"}, json.dumps(obj).encode()


def _cursor(i: int) -> str:
    return base64.b64encode(str(i).encode()).decode()


def _uncursor(c: str, limit: int) -> int:
    try:
        i = int(base64.b64decode(c.encode(), validate=True).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(f"cursor {c!r} is not valid", "InvalidCursor", 400) from None
    if not 0 <= i <= limit:
        raise ApiError(f"cursor {c!r} is out of range", "InvalidCursor", 400)
    return i


class SlsApi:
    def __init__(self, root: str, manager: KeyManager) -> None:
        self.root = root
        self.manager = manager
        self._lock = threading.Lock()
        self._shards: dict[tuple[str, str, int], Shard] = {}
        self._rr = itertools.count()
        os.makedirs(root, mode=0o700, exist_ok=True)

    # ---- helpers -------------------------------------------------------------------------
    def _pdir(self, project: str) -> str:
        # Names become path components: only SLS's name alphabet ever reaches the disk
        # (no "..", "/" or NUL from the Host header or the URL).
        if not is_project_name(project):
            raise ApiError(f"The Project does not exist : {project}", "ProjectNotExist", 404)
        return os.path.join(self.root, project)

    def _meta_path(self, project: str, logstore: str) -> str:
        if not is_logstore_name(logstore):
            raise ApiError(f"logstore {logstore} does not exist", "LogStoreNotExist", 404)
        return os.path.join(self._pdir(project), logstore, "logstore.json")

    def _meta(self, project: str, logstore: str) -> dict[str, Any]:
        self._project(project)
        try:
            with open(self._meta_path(project, logstore)) as f:
                meta: dict[str, Any] = json.load(f)
                return meta
        except FileNotFoundError:
            raise ApiError(f"logstore {logstore} does not exist", "LogStoreNotExist", 404) from None

    def _project(self, project: str) -> None:
        if not os.path.isdir(self._pdir(project)):
            raise ApiError(f"The Project does not exist : {project}", "ProjectNotExist", 404)

    def _shard(self, project: str, logstore: str, which: str) -> Shard:
        """The shard a request's path names: its number, or "lb"/"route" (round robin,
        as the service balances a PutLogs without a shard).  One read of the metadata."""
        count = int(self._meta(project, logstore)["shardCount"])
        if which in ("lb", "route"):
            shard = next(self._rr) % count
        elif which.isdigit():
            shard = int(which)
        else:
            raise ApiError(f"shard {which!r} is not valid", "ShardNotExist", 404)
        if not 0 <= shard < count:
            raise ApiError(f"shard {shard} does not exist", "ShardNotExist", 404)
        with self._lock:
            s = self._shards.get((project, logstore, shard))
            if s is None:
                s = Shard(os.path.join(self._pdir(project), logstore, f"shard-{shard}.log"))
                self._shards[(project, logstore, shard)] = s
            return s

    def close(self) -> None:
        with self._lock:
            for s in self._shards.values():
                s.close()
            self._shards.clear()

    # ---- dispatch ------------------------------------------------------------------------
    def handle(self, method: str, project: str, path: str, query: Mapping[str, str],
               headers: Mapping[str, str], body: bytes, caller: Caller | None = None) -> Response:
        """``caller``: the RAM user who signed (None: the account), for BYOK's PassRole."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            if method == "POST":
                return self.create_project(self._body(body))
            if method == "GET":
                self._project(project)
                return _json({"projectName": project, "status": "Normal", "description": ""})
            if method == "DELETE":
                return self.delete_project(project)
        elif parts[0] == "logstores":
            if len(parts) == 1 and method == "POST":
                return self.create_logstore(project, self._body(body), caller)
            if len(parts) == 1 and method == "GET":
                return self.list_logstores(project)
            name = parts[1] if len(parts) > 1 else ""
            if len(parts) == 2:
                if method == "GET":
                    return _json(self._logstore_json(project, name))
                if method == "PUT":
                    return self.update_logstore(project, name, self._body(body))
                if method == "DELETE":
                    return self.delete_logstore(project, name)
            if len(parts) == 3 and parts[2] == "encryption" and method == "PUT":  # UpdateLogStoreEncryption
                self._meta(project, name)
                self.manager.update_logstore(project, name, self._body(body))
                return 200, {}, b""
            if len(parts) == 3 and parts[2] == "shards" and method == "GET":
                meta = self._meta(project, name)
                return _json([{"shardID": i, "status": "readwrite", "inclusiveBeginKey": "", "exclusiveEndKey": "",
                               "createTime": meta["createTime"]} for i in range(int(meta["shardCount"]))])
            if len(parts) == 4 and parts[2] == "shards":
                if method == "POST":
                    return self.put_logs(project, name, parts[3], headers, body)
                if method == "GET" and query.get("type") == "cursor":
                    return self.get_cursor(project, name, parts[3], query.get("from", ""))
                if method == "GET" and query.get("type") == "log":
                    return self.pull_logs(project, name, parts[3], query, headers)
        raise ApiError(f"{method} {path} is not an operation of this endpoint", "InvalidParameter", 400)

    @staticmethod
    def _body(body: bytes) -> dict[str, Any]:
        try:
            obj = json.loads(body)
        except ValueError:
            raise ApiError("the body is not JSON", "PostBodyInvalid", 400) from None
        if not isinstance(obj, dict):
            raise ApiError("the body is not a JSON object", "PostBodyInvalid", 400)
        return obj

    # ---- projects and Logstores ----------------------------------------------------------
    def create_project(self, body: dict[str, Any]) -> Response:
        name = body.get("projectName")
        if not isinstance(name, str) or not is_project_name(name, SLS_MIN_NAME):
            raise ApiError(f"project name {name!r} is not valid", "ProjectNameInvalid", 400)
        try:
            os.mkdir(self._pdir(name), 0o700)
        except FileExistsError:
            raise ApiError(f"Project {name} already exists", "ProjectAlreadyExist", 400) from None
        return 200, {}, b""

    def delete_project(self, project: str) -> Response:
        self._project(project)
        if any(os.scandir(self._pdir(project))):
            raise ApiError("the project still has Logstores", "ProjectNotEmpty", 400)
        os.rmdir(self._pdir(project))
        return 200, {}, b""

    def create_logstore(self, project: str, body: dict[str, Any], caller: Caller | None = None) -> Response:
        self._project(project)
        name = body.get("logstoreName")
        if not isinstance(name, str) or not is_logstore_name(name, SLS_MIN_NAME):
            raise ApiError(f"logstore name {name!r} is not valid", "LogStoreInfoInvalid", 400)
        shards = body.get("shardCount", 2)
        if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= 256:
            raise ApiError("shardCount must be 1 to 256", "LogStoreInfoInvalid", 400)
        conf = body.get("encrypt_conf", {"enable": False})
        self.manager.create_logstore(project, name, conf, caller=caller)  # LogStoreInfoInvalid, LogStoreAlreadyExist, KMS codes
        meta = {"logstoreName": name, "ttl": int(body.get("ttl", 30)), "shardCount": shards,
                "createTime": int(time.time())}
        os.makedirs(os.path.join(self._pdir(project), name), mode=0o700, exist_ok=True)
        with open(self._meta_path(project, name), "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        return 200, {}, b""

    def _logstore_json(self, project: str, name: str) -> dict[str, Any]:
        meta = self._meta(project, name)
        out = dict(meta, enable_tracking=False, appendMeta=False, autoSplit=False, maxSplitShard=64,
                   lastModifyTime=meta["createTime"])
        out["encrypt_conf"] = self.manager.get_encrypt_conf(project, name).to_dict()
        return out

    def list_logstores(self, project: str) -> Response:
        self._project(project)
        names = sorted(e.name for e in os.scandir(self._pdir(project)) if e.is_dir())
        return _json({"count": len(names), "total": len(names), "logstores": names})

    def update_logstore(self, project: str, name: str, body: dict[str, Any]) -> Response:
        self._meta(project, name)
        if "encrypt_conf" in body:
            self.manager.update_logstore(project, name, body["encrypt_conf"])
        return 200, {}, b""

    def delete_logstore(self, project: str, name: str) -> Response:
        meta = self._meta(project, name)
        with self._lock:
            for i in range(int(meta["shardCount"])):
                s = self._shards.pop((project, name, i), None)
                if s is not None:
                    s.close()
        self.manager.delete_logstore(project, name)
        d = os.path.join(self._pdir(project), name)
        for e in os.scandir(d):
            os.unlink(e.path)
        os.rmdir(d)
        return 200, {}, b""

    # ---- data ----------------------------------------------------------------------------
    def put_logs(self, project: str, name: str, which: str, headers: Mapping[str, str], body: bytes) -> Response:
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            raw_size: int | None = int(lower.get("x-log-bodyrawsize", ""))
        except ValueError:
            raw_size = None
        raw = wire.decompress(body, lower.get("x-log-compresstype", ""), raw_size)
        group = wire.parse_log_group(raw)
        shard = self._shard(project, name, which)
        cipher = self.manager.open_logstore(project, name)
        sealed = cipher is not None and cipher.enabled
        payload = cipher.encrypt(raw) if sealed and cipher is not None else raw  # KeyInvalidError: the CMK's code
        shard.append(payload, int(time.time()), len(group.Logs), sealed=sealed)
        return 200, {}, b""

    def get_cursor(self, project: str, name: str, which: str, frm: str) -> Response:
        shard = self._shard(project, name, which)
        if frm == "begin":
            i = 0
        elif frm == "end":
            i = len(shard)
        else:
            try:
                i = shard.cursor_at(int(frm))
            except ValueError:
                raise ApiError(f"from {frm!r} is not begin, end or a unix time", "InvalidParameter", 400) from None
        return _json({"cursor": _cursor(i)})

    def pull_logs(self, project: str, name: str, which: str, query: Mapping[str, str],
                  headers: Mapping[str, str]) -> Response:
        shard = self._shard(project, name, which)
        start = _uncursor(query.get("cursor", ""), len(shard))
        try:
            count = int(query.get("count", "1000"))
        except ValueError:
            count = -1
        if not 0 < count <= 1000:
            raise ApiError("count must be 1 to 1000", "InvalidParameter", 400)
        if "end_cursor" in query:
            count = min(count, _uncursor(query["end_cursor"], len(shard)) - start)
        records = shard.read(start, max(count, 0))
        sealed = [p for p, is_sealed in records if is_sealed]
        cipher = self.manager.open_logstore(project, name) if sealed else None
        if sealed and cipher is None:
            raise ApiError("the Logstore holds sealed batches but has no key", "LogStoreInfoInvalid", 409)
        opened = iter(cipher.decrypt_many(sealed) if cipher is not None else [])
        raws = [next(opened) if is_sealed else p for p, is_sealed in records]
        raw = wire.log_group_list(raws)
        lower = {k.lower(): v for k, v in headers.items()}
        out, kind = wire.compress(raw, lower.get("accept-encoding", ""))
        hdrs = {"Content-Type": "application/x-protobuf", "x-log-cursor": _cursor(start + len(raws)),
                "x-log-count": str(len(raws)), "x-log-bodyrawsize": str(len(raw))}
        if kind:
            hdrs["x-log-compresstype"] = kind
        return 200, hdrs, out
