"""The pieces of request signing that were rewritten for speed (issue 15 item 9) give what the
straightforward versions gave: percent_encode is urllib's quote(value, safe="~"), and the cached
parse_timestamp still refuses what strptime refuses, every time it is asked; parse_query is
parse_qsl(keep_blank_values=True, errors="strict")."""

from __future__ import annotations

import calendar
import time
from urllib.parse import parse_qsl, quote, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sls_envelope.kms.acs_signature import (parse_query, parse_timestamp, percent_decode, percent_encode,
                                            rpc_string_to_sign)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_percent_encode_is_rfc3986_quote(value: str) -> None:
    try:
        expected = quote(value, safe="~", encoding="utf-8")
    except UnicodeEncodeError:  # a lone surrogate: neither can encode it
        with pytest.raises(UnicodeEncodeError):
            percent_encode(value)
        return
    assert percent_encode(value) == expected


@pytest.mark.parametrize("value, encoded", [
    ("", ""),
    ("AZaz09-._~", "AZaz09-._~"),
    ("a b+c/d=e", "a%20b%2Bc%2Fd%3De"),
    ('{"project":"p"}', "%7B%22project%22%3A%22p%22%7D"),
    ("é€\U0001f600", "%C3%A9%E2%82%AC%F0%9F%98%80"),
    ("*%", "%2A%25"),
])
def test_percent_encode_known_values(value: str, encoded: str) -> None:
    assert percent_encode(value) == encoded


def test_rpc_string_to_sign_of_a_documented_shape() -> None:
    # Alibaba Cloud's RPC example: the canonical query is itself percent-encoded once more.
    assert rpc_string_to_sign("get", {"Action": "DescribeKey", "KeyId": "a b", "Signature": "x"}) == \
        "GET&%2F&Action%3DDescribeKey%26KeyId%3Da%2520b"


@pytest.mark.parametrize("value", ["2024-01-02T03:04:05Z", "2000-02-29T23:59:59Z", "1970-01-01T00:00:00Z"])
def test_parse_timestamp_values(value: str) -> None:
    expected = float(calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))
    assert parse_timestamp(value) == expected
    assert parse_timestamp(value) == expected  # from the cache


@pytest.mark.parametrize("value", ["2024-13-02T03:04:05Z", "2024-01-02 03:04:05", "2023-02-29T00:00:00Z", "",
                                   "2024-01-02T03:04:05+08:00"])
def test_parse_timestamp_refuses_malformed_values_every_time(value: str) -> None:
    for _ in range(2):
        with pytest.raises(ValueError):
            parse_timestamp(value)


#: Pieces of query strings: plain and reserved characters, raw non-ASCII, good, bad and partial escapes.
_QUERY_CHARS = st.sampled_from(list("aZ09-._~ +&=%%%/?#;:,é€\U0001f600") + [
    "%2", "%2B", "%2b", "%C3%A9", "%E2%82", "%zz", "%%41", "%F0%9F%98%80", "%e2%82%ac"])


@settings(max_examples=1000, deadline=None)
@given(st.lists(_QUERY_CHARS, max_size=30).map("".join))
def test_parse_query_is_parse_qsl(query: str) -> None:
    try:
        expected = parse_qsl(query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:  # escapes that are not UTF-8: refused by both
        with pytest.raises(UnicodeDecodeError):
            parse_query(query)
        return
    assert parse_query(query) == expected


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_percent_decode_undoes_percent_encode(value: str) -> None:
    try:
        encoded = percent_encode(value)
    except UnicodeEncodeError:
        return
    assert percent_decode(encoded) == value == unquote(encoded, errors="strict")


def test_parse_query_of_an_sdk_request() -> None:
    query = ("CiphertextBlob=AQ%2Bx%2F%3D&EncryptionContext=%7B%22project%22%3A%22bench%22%7D&KeyId=&Flag"
             "&&Name=a+b%20c")
    assert parse_query(query) == [("CiphertextBlob", "AQ+x/="), ("EncryptionContext", '{"project":"bench"}'),
                                  ("KeyId", ""), ("Flag", ""), ("Name", "a b c")]
