"""The SLS wire: the LogGroup protobuf (descriptor built at runtime with ``protobuf``'s
descriptor_pb2, the schema of the SLS docs' log.proto) and the body compressions the SDK
uses (lz4 block, deflate, none)."""

from __future__ import annotations

import zlib
from typing import Any

import lz4.block
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from ..exceptions import SlsEnvelopeError

__all__ = ["MAX_BODY", "MAX_LOGS", "WireError", "compress", "decompress", "log_group_list", "parse_log_group"]

#: SLS's documented PutLogs limits: a body of at most 10 MB raw, 40960 logs per LogGroup.
MAX_BODY = 10 * 1024 * 1024
MAX_LOGS = 40960


class WireError(SlsEnvelopeError):
    """A body that is not what its headers say (400, SLS's codes)."""

    def __init__(self, message: str, *, code: str = "PostBodyInvalid", http_status: int = 400) -> None:
        super().__init__(message, code=code, http_status=http_status)


def _build() -> Any:
    f = descriptor_pb2.FileDescriptorProto(name="sls_envelope_log.proto", package="sls", syntax="proto2")
    T = descriptor_pb2.FieldDescriptorProto

    def msg(name: str, fields: list[Any]) -> None:
        m = f.message_type.add(name=name)
        for fname, num, typ, label, tname in fields:
            fd = m.field.add(name=fname, number=num, type=typ, label=label)
            if tname:
                fd.type_name = tname

    req, opt, rep = T.LABEL_REQUIRED, T.LABEL_OPTIONAL, T.LABEL_REPEATED
    msg("Content", [("Key", 1, T.TYPE_STRING, req, None), ("Value", 2, T.TYPE_STRING, req, None)])
    msg("Log", [("Time", 1, T.TYPE_UINT32, req, None), ("Contents", 2, T.TYPE_MESSAGE, rep, ".sls.Content"),
                ("Time_ns", 4, T.TYPE_FIXED32, opt, None)])
    msg("LogTag", [("Key", 1, T.TYPE_STRING, req, None), ("Value", 2, T.TYPE_STRING, req, None)])
    msg("LogGroup", [("Logs", 1, T.TYPE_MESSAGE, rep, ".sls.Log"), ("Reserved", 2, T.TYPE_STRING, opt, None),
                     ("Topic", 3, T.TYPE_STRING, opt, None), ("Source", 4, T.TYPE_STRING, opt, None),
                     ("LogTags", 6, T.TYPE_MESSAGE, rep, ".sls.LogTag")])
    msg("LogGroupList", [("logGroupList", 1, T.TYPE_MESSAGE, rep, ".sls.LogGroup")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName("sls." + n))
            for n in ("LogGroup", "LogGroupList")}


_CLASSES = _build()
LogGroup = _CLASSES["LogGroup"]
LogGroupList = _CLASSES["LogGroupList"]


def parse_log_group(raw: bytes) -> Any:
    """The LogGroup of a PutLogs body; WireError if it is not one or breaks SLS's limits."""
    group = LogGroup()
    try:
        group.ParseFromString(raw)
    except DecodeError as exc:
        raise WireError(f"the body is not a protobuf LogGroup: {exc}") from None
    if not group.IsInitialized():
        raise WireError("the body is not a complete LogGroup (a required field is missing)")
    if len(group.Logs) > MAX_LOGS:
        raise WireError(f"a LogGroup holds at most {MAX_LOGS} logs, this one {len(group.Logs)}",
                        code="InvalidLogSize")
    return group


def log_group_list(raws: list[bytes]) -> bytes:
    """A LogGroupList of stored LogGroup bodies: each is field 1 of the list, so the
    list is the concatenation of their length-delimited encodings (protobuf's own)."""
    out = LogGroupList()
    for raw in raws:
        out.logGroupList.add().MergeFromString(raw)
    return bytes(out.SerializeToString())


def decompress(body: bytes, compress_type: str, raw_size: int | None) -> bytes:
    """The raw body of a request; WireError if the compression or bodyrawsize lies."""
    kind = compress_type.strip().lower()
    if raw_size is None or raw_size < 0:
        raise WireError("x-log-bodyrawsize is missing or not a number", code="InvalidBodyRawSize")
    if raw_size > MAX_BODY:
        raise WireError(f"a PutLogs body is at most {MAX_BODY} bytes raw", code="PostBodyTooLarge", http_status=413)
    try:
        if kind == "lz4":
            raw = bytes(lz4.block.decompress(body, uncompressed_size=raw_size))
        elif kind in ("deflate", "gzip"):
            d = zlib.decompressobj()
            raw = d.decompress(body, raw_size + 1)
            if not d.eof:
                raise WireError("the deflate body is truncated or larger than x-log-bodyrawsize")
        elif kind in ("", "none"):
            raw = body
        else:
            raise WireError(f"unsupported x-log-compresstype {compress_type!r}", code="InvalidCompressType")
    except WireError:
        raise
    except (lz4.block.LZ4BlockError, zlib.error) as exc:
        raise WireError(f"the body does not decompress as {kind}: {exc}", code="PostBodyUncompressError") from None
    if len(raw) != raw_size:
        raise WireError(f"x-log-bodyrawsize is {raw_size} but the body is {len(raw)} bytes raw",
                        code="PostBodyUncompressError")
    return raw


def compress(raw: bytes, accept: str) -> tuple[bytes, str]:
    """The body in the first compression of Accept-Encoding we know, and its name."""
    for kind in (k.strip().lower() for k in accept.split(",")):
        if kind == "lz4":
            return bytes(lz4.block.compress(raw, store_size=False)), "lz4"
        if kind == "deflate":
            return zlib.compress(raw), "deflate"
    return raw, ""
