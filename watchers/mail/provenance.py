"""Where an e-mail came from, checked at capture: every DKIM signature and the ARC chain
(dkimpy), with the public key record each verdict used.

The key record is kept because keys rotate: with it and the raw message anyone can
re-check the verdict years later. Key lookups go through a configurable resolver with a
timeout; a lookup that fails is recorded as ``unverified (DNS)``, never raised, so a
DNS outage cannot stop the capture of evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import dkim
import dns.exception
import dns.resolver
from dkim.util import InvalidTagValueList, parse_tag_value

# dkimpy logs every failed signature at ERROR. Hostile mail fails signatures routinely
# and the verdict is recorded with the evidence, so that is no operator error.
logging.getLogger("dkimpy").setLevel(logging.CRITICAL)

PASS = "pass"  # noqa: S105 - a DKIM verdict, not a password
FAIL = "fail"
NO_KEY = "no key"
DNS_FAILED = "unverified (DNS)"
INVALID = "invalid signature"


class KeyLookup:
    """``dnsfunc`` for dkimpy: TXT records through dnspython, remembering every answer
    (name → record text, ``None`` for "no such record") and every failure."""

    def __init__(self, resolver: str | None, timeout: float) -> None:
        self.timeout = timeout
        self.records: dict[str, str | None] = {}
        self.failures: dict[str, str] = {}
        self._setup_error: str | None = None
        self._resolver: dns.resolver.Resolver | None = None
        try:
            self._resolver = _make_resolver(resolver)
        except dns.exception.DNSException as exc:
            self._setup_error = f"no DNS resolver ({type(exc).__name__})"

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        key = name.decode("ascii", "replace").rstrip(".").lower()
        if key in self.records:
            value = self.records[key]
            return None if value is None else value.encode()
        if self._resolver is None:
            self.failures[key] = self._setup_error or "no DNS resolver"
            raise dkim.DnsTimeoutError(self.failures[key])
        try:
            answer = self._resolver.resolve(key + ".", "TXT", lifetime=self.timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            self.records[key] = None
            return None
        except dns.exception.DNSException as exc:
            self.failures[key] = f"DNS lookup of {key} failed ({type(exc).__name__})"
            raise dkim.DnsTimeoutError(self.failures[key]) from exc
        texts = [b"".join(rdata.strings) for rdata in answer]
        chosen = next((t for t in texts if t.lstrip().startswith(b"v=DKIM1")), texts[0])
        self.records[key] = chosen.decode("ascii", "replace")
        return chosen


def _make_resolver(spec: str | None) -> dns.resolver.Resolver:
    if spec is None:
        return dns.resolver.Resolver(configure=True)
    host, _, port = spec.rpartition(":") if spec.count(":") == 1 else (spec, "", "")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host.strip("[]")]
    resolver.port = int(port) if port else 53
    return resolver


def _signature_headers(message: dkim.DKIM, name: bytes) -> list[bytes]:
    return [value for key, value in message.headers if key.lower() == name]


def _tags(value: bytes) -> dict[bytes, bytes]:
    try:
        tags: dict[bytes, bytes] = parse_tag_value(value)
    except InvalidTagValueList:
        return {}
    return tags


def verify_or_note(raw: bytes, lookup: KeyLookup) -> dict[str, Any]:
    """``verify``, or a record of why it could not run: a message that trips dkimpy up
    is still evidence, and its verdict is then "not verified", never a failed poll."""
    try:
        return verify(raw, lookup)
    except Exception as exc:  # noqa: BLE001 - hostile input; the capture must go on
        reason = f"not verified: dkimpy failed on this message ({type(exc).__name__})"
        return {"dkim": [], "arc": {"result": "none", "reason": reason}, "error": reason}


def verify(raw: bytes, lookup: KeyLookup) -> dict[str, Any]:
    """Verdicts for every DKIM signature and the ARC chain of ``raw``."""
    try:
        signer = dkim.DKIM(raw, timeout=max(1, int(lookup.timeout)))
    except dkim.DKIMException as exc:
        return {"dkim": [], "arc": {"result": "none", "reason": f"unreadable message: {exc}"}}
    results = [
        _verify_one(raw, index, header, lookup)
        for index, header in enumerate(_signature_headers(signer, b"dkim-signature"))
    ]
    return {"dkim": results, "arc": _verify_arc(raw, lookup)}


def _verify_one(raw: bytes, index: int, header: bytes, lookup: KeyLookup) -> dict[str, Any]:
    tags = _tags(header)
    domain = tags.get(b"d", b"").decode("ascii", "replace")
    selector = tags.get(b"s", b"").decode("ascii", "replace")
    name = f"{selector}._domainkey.{domain}".lower()
    entry: dict[str, Any] = {"domain": domain, "selector": selector, "key_name": name}
    try:
        # One DKIM object per signature: dkimpy keeps per-signature state on it.
        ok = dkim.DKIM(raw, timeout=max(1, int(lookup.timeout))).verify(idx=index, dnsfunc=lookup)
    except dkim.ValidationError as exc:
        # dkimpy raises, rather than returns False, when the body no longer matches
        # the signed body hash: the message was changed after signing.
        mismatch = "body hash mismatch" in str(exc)
        entry.update(result=FAIL if mismatch else INVALID, detail=str(exc)[:200])
        ok = None
    except dkim.DKIMException as exc:
        entry.update(result=INVALID, detail=str(exc)[:200])
        ok = None
    if ok is not None:
        entry["result"] = _verdict(bool(ok), name, lookup)
        if name in lookup.failures:
            entry["detail"] = lookup.failures[name]
    entry["key_record"] = lookup.records.get(name)
    return entry


def _verdict(ok: bool, name: str, lookup: KeyLookup) -> str:
    if ok:
        return PASS
    if name in lookup.failures:
        return DNS_FAILED
    if name in lookup.records and lookup.records[name] is None:
        return NO_KEY
    return FAIL


def _verify_arc(raw: bytes, lookup: KeyLookup) -> dict[str, Any]:
    try:
        cv, instances, reason = dkim.arc_verify(
            raw, dnsfunc=lookup, timeout=max(1, int(lookup.timeout))
        )
    except dkim.DKIMException as exc:
        return {"result": FAIL, "reason": str(exc)[:200], "instances": []}
    result = (cv or b"none").decode("ascii", "replace").lower()
    if result == FAIL and lookup.failures:
        result = DNS_FAILED
    sets = [
        {
            "instance": item.get("instance"),
            "domain": _text(item.get("as-domain")),
            "selector": _text(item.get("as-selector")),
            "ams_domain": _text(item.get("ams-domain")),
            "ams_selector": _text(item.get("ams-selector")),
            "ams_valid": bool(item.get("ams-valid")),
            "as_valid": bool(item.get("as-valid")),
            "cv": _text(item.get("cv")),
        }
        for item in instances
    ]
    keys = {
        name: record
        for name, record in lookup.records.items()
        if any(name.startswith(f"{s['selector']}._domainkey.") for s in sets)
        or any(name.startswith(f"{s['ams_selector']}._domainkey.") for s in sets)
    }
    return {"result": result, "reason": str(reason), "instances": sets, "key_records": keys}


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return None if value is None else str(value)


def summary(provenance: Mapping[str, Any]) -> str:
    """One line for the report: ``DKIM: pass, d=example.com`` (each signature)."""
    entries = provenance.get("dkim") or []
    if not entries:
        return "DKIM: none (the message is not signed)"
    parts = [f"{entry.get('result')}, d={entry.get('domain')}" for entry in entries]
    return "DKIM: " + "; ".join(parts)
