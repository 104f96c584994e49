"""RFC 3161 trusted timestamps of the log's checkpoints (``integrity.timestamp_url``; off by default).

A checkpoint proves what the log held, signed with our key; whoever holds that key could sign
a rewritten history today.  A time-stamping authority's token over the checkpoint note proves
the note existed at the token's time, on the word of a third party.  Each checkpoint the log
publishes is sent to the TSA (an HTTP POST of an RFC 3161 ``TimeStampReq``, SHA-256 of the
note's bytes, with a nonce); the reply (``TimeStampResp``, DER) is checked and stored beside
the checkpoint as ``<checkpoint key>.tsr``.  ``rfc3161-client`` (Trail of Bits) builds and
checks the messages; it does no network I/O, so the one request is made here with urllib.
"""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

__all__ = ["REPLY_SUFFIX", "Stamp", "TimestampError", "check_token", "load_certificates", "request_token", "token_key"]

REPLY_SUFFIX = ".tsr"
CONTENT_TYPE = "application/timestamp-reply"
_TIMEOUT = 30


class TimestampError(Exception):
    """A token could not be had or does not verify (one line)."""


@dataclass(frozen=True)
class Stamp:
    """A verified token: when the TSA saw the note, and who it is."""

    time: dt.datetime
    authority: str


def token_key(checkpoint_key: str) -> str:
    return checkpoint_key + REPLY_SUFFIX


def load_certificates(path: Path) -> list[Certificate]:
    """The TSA's root (and intermediate) certificates from a PEM file."""
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise TimestampError(f"cannot read the TSA certificates {path}: {exc.strerror}") from None
    except ValueError:
        raise TimestampError(f"{path} holds no PEM certificate (the TSA's root certificate is expected)") from None


def check_token(token: bytes, note: bytes, roots: list[Certificate], nonce: int | None = None) -> Stamp:
    """Verify a stored reply over ``note``: granted, signed by a certificate chaining to ``roots``, same imprint."""
    from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

    if not roots:
        raise TimestampError("no TSA root certificate to check the timestamp against")
    try:
        response = decode_timestamp_response(token)
    except ValueError as exc:
        raise TimestampError(f"the timestamp token is not an RFC 3161 reply ({exc})") from None
    builder = VerifierBuilder()
    for root in roots:
        builder = builder.add_root_certificate(root)
    if nonce is not None:
        builder = builder.nonce(nonce)
    try:
        builder.build().verify_message(response, note)
    except (VerificationError, ValueError) as exc:
        raise TimestampError(f"the timestamp does not verify: {exc}") from None
    info = response.tst_info
    try:
        authority = info.name.value.rfc4514_string() if info.name is not None else ""
    except (AttributeError, ValueError):
        authority = ""
    return Stamp(time=info.gen_time, authority=authority)


def request_token(url: str, note: bytes, roots: list[Certificate] | None = None) -> tuple[bytes, Stamp | None]:
    """Ask the TSA at ``url`` to timestamp ``note``; the reply's bytes (and, given ``roots``, the checked stamp)."""
    from rfc3161_client import HashAlgorithm, PKIStatus, TimestampRequestBuilder, decode_timestamp_response

    if not url.startswith(("http://", "https://")):
        raise TimestampError("integrity.timestamp_url must be an http:// or https:// URL of an RFC 3161 time-stamping authority")
    request = TimestampRequestBuilder().data(note).hash_algorithm(HashAlgorithm.SHA256).nonce(nonce=True).cert_request(cert_request=True).build()
    post = urllib.request.Request(url, data=request.as_bytes(), method="POST", headers={"Content-Type": "application/timestamp-query"})  # noqa: S310 - http(s) only, checked above
    try:
        with urllib.request.urlopen(post, timeout=_TIMEOUT) as reply:  # noqa: S310 - the configured TSA URL
            token = reply.read()
    except urllib.error.HTTPError as exc:
        raise TimestampError(f"the TSA at integrity.timestamp_url answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TimestampError(f"the TSA at integrity.timestamp_url cannot be reached ({getattr(exc, 'reason', exc)})") from None
    try:
        response = decode_timestamp_response(token)
    except ValueError:
        raise TimestampError("the TSA at integrity.timestamp_url did not answer with an RFC 3161 reply") from None
    if PKIStatus(response.status) != PKIStatus.GRANTED:
        raise TimestampError(f"the TSA at integrity.timestamp_url refused the request (status {response.status})")
    if response.tst_info.nonce != request.nonce:
        raise TimestampError("the TSA's reply does not carry the request's nonce")
    stamp = check_token(token, note, roots, request.nonce) if roots else None
    return token, stamp
