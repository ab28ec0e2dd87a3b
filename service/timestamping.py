"""Trusted timestamps (RFC 3161) of the chain head (#14 item 1).

Each listed timestamp authority (TSA) signs the chain head: the 64 ASCII hex digits of
the newest ``chain_sha256``, hashed with SHA-256 into the request's message imprint.
A token proves that the head — hence every record before it — existed at the TSA's
time, whatever nocontact's own clock said. The TSA's whole response is stored as a
chain record of kind ``timestamp`` (the response bytes are its ``blob``, covered by
``token_sha256``) and goes into the packet with the command that checks it offline:

    openssl ts -verify -data head.txt -in token.tsr -CAfile tsa-root.pem

The head is stamped when records other than timestamps were added since a TSA's last
token, at every ``every`` and at every export. A TSA that does not answer is logged
and tried again at the next round; capture never waits for it (stamping runs in its
own job and holds the chain lock only to append the token).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service import chain
from service.evidence import format_time, sha256_hex
from service.evidence_settings import TimestampingSettings
from service.models import ChainHead, ChainRecord, Evidence
from watchers.toolkit.redact import mask_url

log = logging.getLogger(__name__)

_QUERY_TYPE = "application/timestamp-query"
_REPLY_TYPE = "application/timestamp-reply"
_MAX_REPLY = 1 << 20  # a token is a few kB; anything bigger is not one


class TimestampError(Exception):
    """A TSA did not give a usable token (one line, URL masked)."""


@dataclasses.dataclass(frozen=True, slots=True)
class StampOutcome:
    tsa_url: str  # masked
    stamped_seq: int
    record_seq: int | None = None  # the timestamp record's own seq when stamped
    error: str | None = None
    skipped: bool = False  # the head had not changed since this TSA's last token


def head_bytes(chain_head: str) -> bytes:
    """What a TSA signs (its SHA-256 is the message imprint): the head's hex digits."""
    return chain_head.encode("ascii")


def load_roots(paths: Sequence[str], base_dir: Path) -> list[x509.Certificate]:
    """Root certificates from PEM files (relative to the config file's folder)."""
    roots: list[x509.Certificate] = []
    for name in paths:
        path = Path(name) if Path(name).is_absolute() else base_dir / name
        try:
            roots.extend(x509.load_pem_x509_certificates(path.read_bytes()))
        except (OSError, ValueError) as exc:
            raise TimestampError(
                f"evidence.timestamping.ca_files: cannot read certificates from {path}: {exc}"
            ) from None
    return roots


class Stamper:
    """Requests tokens from each configured TSA and appends them to the chain."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: TimestampingSettings,
        *,
        clock: Callable[[], datetime],
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        self._client = httpx.Client(
            timeout=settings.timeout.total_seconds(),
            transport=transport,
            headers={"User-Agent": "nocontact (RFC 3161 client)", "Accept": _REPLY_TYPE},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def stamp(self, *, force: bool = False) -> list[StampOutcome]:
        """Stamp the head by each TSA that has not stamped its newest records (all of
        them when ``force``). Never raises for a TSA's failure: it is an outcome."""
        with self.sessions() as session:
            head = session.get(ChainHead, 1)
            if head is None or head.seq == 0:
                return []
            seq, link = head.seq, head.chain_sha256
            newest = _newest_non_timestamp(session)
            stamped = _last_stamped(session)
        outcomes: list[StampOutcome] = []
        for url in self.settings.tsa_urls:
            shown = mask_url(url)
            if not force and stamped.get(url, 0) >= newest:
                outcomes.append(StampOutcome(shown, seq, skipped=True))
                continue
            try:
                response, raw = self._request(url, link)
            except TimestampError as exc:
                log.warning("timestamp authority %s: %s; will retry", shown, exc)
                outcomes.append(StampOutcome(shown, seq, error=str(exc)))
                continue
            record_seq = self._append(url, seq, link, response, raw)
            outcomes.append(StampOutcome(shown, seq, record_seq=record_seq))
        return outcomes

    def _request(self, url: str, link: str) -> tuple[TimeStampResponse, bytes]:
        request = (
            TimestampRequestBuilder()
            .data(head_bytes(link))
            .hash_algorithm(HashAlgorithm.SHA256)
            .cert_request(cert_request=True)
            .build()
        )
        try:
            reply = self._client.post(
                url, content=request.as_bytes(), headers={"Content-Type": _QUERY_TYPE}
            )
        except httpx.HTTPError as exc:
            raise TimestampError(f"not reachable ({type(exc).__name__})") from None
        if reply.status_code != 200:
            raise TimestampError(f"answered HTTP {reply.status_code}")
        raw = reply.content
        if len(raw) > _MAX_REPLY:
            raise TimestampError("answered something too big to be a timestamp token")
        try:
            response = decode_timestamp_response(raw)
        except ValueError:
            raise TimestampError("answered something that is not an RFC 3161 response") from None
        if response.status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
            raise TimestampError(f"refused the request (PKI status {response.status})")
        info = response.tst_info
        if info.message_imprint.message != hashlib.sha256(head_bytes(link)).digest():
            raise TimestampError("signed another hash than the one asked for")
        if request.nonce is not None and info.nonce != request.nonce:
            raise TimestampError("answered with another request's nonce")
        return response, raw

    def _append(
        self, url: str, seq: int, link: str, response: TimeStampResponse, raw: bytes
    ) -> int:
        info = response.tst_info
        data = {
            "tsa_url": url,
            "stamped_seq": seq,
            "stamped_chain_sha256": link,
            "hash_algorithm": "sha256",
            "gen_time": format_time(info.gen_time),
            "serial_number": str(info.serial_number),
            "token_sha256": sha256_hex(raw),
        }
        with self.sessions.begin() as session:
            row = chain.append(session, "timestamp", data, self.clock(), blob=raw)
            return row.seq


def _newest_non_timestamp(session: Session) -> int:
    evidence_seq = session.scalar(select(func.max(Evidence.seq))) or 0
    other = session.scalar(
        select(func.max(ChainRecord.seq)).where(ChainRecord.record != "timestamp")
    )
    return max(evidence_seq, other or 0)


def _last_stamped(session: Session) -> dict[str, int]:
    """TSA URL → the newest head seq it stamped."""
    stamped: dict[str, int] = {}
    for row in chain.iter_records(session, "timestamp"):
        data = json.loads(row.data)
        url, seq = data.get("tsa_url"), data.get("stamped_seq")
        if isinstance(url, str) and isinstance(seq, int):
            stamped[url] = max(stamped.get(url, 0), seq)
    return stamped


# ---------------------------------------------------------------- checking a token


def link_at(session: Session, seq: int) -> str | None:
    """The chain_sha256 stored at ``seq`` (in either table)."""
    for model in (Evidence, ChainRecord):
        found = session.scalar(select(model.chain_sha256).where(model.seq == seq))
        if found is not None:
            return str(found)
    return None


def check_token(
    session: Session | None,
    data: dict[str, Any],
    blob: bytes | None,
    roots: Sequence[x509.Certificate] = (),
) -> list[str]:
    """What is wrong with one stored token, if anything: its bytes against its hash,
    the imprint against the stamped head, the head against the chain (when a session
    is given), and the signature up to a trusted root (when roots are given)."""
    if blob is None or sha256_hex(blob) != data.get("token_sha256"):
        return ["token bytes changed: their SHA-256 is not token_sha256"]
    stamped = str(data.get("stamped_chain_sha256", ""))
    try:
        response = decode_timestamp_response(blob)
    except ValueError:
        return ["token is not an RFC 3161 response"]
    problems: list[str] = []
    digest = hashlib.sha256(head_bytes(stamped)).digest()
    if response.tst_info.message_imprint.message != digest:
        problems.append("token signs another hash than the stamped chain head")
    if session is not None:
        link = link_at(session, int(data.get("stamped_seq", 0)))
        if link != stamped:
            problems.append(f"stamped head is not the chain link at seq {data.get('stamped_seq')}")
    if roots:
        builder = VerifierBuilder()
        for root in roots:
            builder = builder.add_root_certificate(root)
        for der in response.signed_data.certificates:
            builder = builder.add_intermediate_certificate(x509.load_der_x509_certificate(der))
        try:
            builder.build().verify(response, digest)
        except VerificationError as exc:
            problems.append(f"token signature does not verify: {exc}")
    return problems


def token_certificates(blob: bytes) -> list[bytes]:
    """The certificates a token carries (the TSA's own, at least), as PEM."""
    response = decode_timestamp_response(blob)
    return [
        x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
        for der in sorted(response.signed_data.certificates)
    ]


# ---------------------------------------------------------------- entry points


def stamp_now(
    sessions: sessionmaker[Session],
    settings: TimestampingSettings,
    *,
    clock: Callable[[], datetime],
    force: bool = True,
) -> list[StampOutcome]:
    """One round of stamping (``nocontact timestamp``, ``export``, the service's job)."""
    stamper = Stamper(sessions, settings, clock=clock)
    try:
        return stamper.stamp(force=force)
    finally:
        stamper.close()


def outcome_line(outcome: StampOutcome) -> str:
    if outcome.error is not None:
        return (
            f"{outcome.tsa_url}: not stamped: {outcome.error} "
            "(the head will be stamped at the next round)"
        )
    if outcome.skipped:
        return f"{outcome.tsa_url}: head unchanged since its last token (seq {outcome.stamped_seq})"
    return (
        f"{outcome.tsa_url}: stamped chain head seq {outcome.stamped_seq} "
        f"(token stored as chain record seq {outcome.record_seq})"
    )


def prepare_export(
    sessions: sessionmaker[Session],
    settings: TimestampingSettings | None,
    base_dir: Path,
    *,
    warn: Callable[[str], None],
) -> list[x509.Certificate]:
    """Before an export: close the open coverage runs into the chain, then have each
    TSA stamp the head (a TSA that fails is reported through ``warn``; the packet
    carries the tokens already stored). Returns the configured root certificates."""
    from service.coverage import close_open_periods

    close_open_periods(sessions, datetime.now(UTC))
    if settings is None:
        return []
    roots = load_roots(settings.ca_files, base_dir)
    for outcome in stamp_now(sessions, settings, clock=lambda: datetime.now(UTC)):
        if outcome.error is not None:
            warn(outcome_line(outcome))
    return roots
