"""Checks that depend on a chain record's kind, beyond its hash and chain link
(``nocontact verify``): a timestamp token must match its bytes, the head it stamped
and, when root certificates are configured, verify up to one of them."""

from __future__ import annotations

import json
from collections.abc import Sequence

from cryptography import x509
from sqlalchemy.orm import Session

from service.evidence import sha256_hex
from service.models import ChainRecord


def check_record(
    session: Session, row: ChainRecord, roots: Sequence[x509.Certificate] = ()
) -> list[str]:
    try:
        data = json.loads(row.data)
    except ValueError:
        return ["data is not JSON"]
    if not isinstance(data, dict):
        return ["data is not a JSON object"]
    if row.record == "timestamp":
        from service.timestamping import check_token

        return check_token(session, data, row.blob, roots)
    # A platform's delete event is kept as the record's blob, covered by its hash.
    event_sha = data.get("event_sha256") if row.record == "recheck" else None
    if event_sha is not None and (row.blob is None or sha256_hex(row.blob) != event_sha):
        return ["the delete event stored with this record does not match event_sha256"]
    return []
