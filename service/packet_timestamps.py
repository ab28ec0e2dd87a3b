"""Trusted timestamps in the export packet (#14 item 1).

The packet carries, for each timestamp authority, the first token that stamped a head
at or after each of the case's records (it proves that record existed by the token's
time) and the newest token (made at export when timestamping is configured). Files
under ``timestamps/``:

- ``<seq>.tsr`` — the TSA's response, byte for byte as received;
- ``head-<stamped seq>.txt`` — the 64 hex digits of the chain head it stamped;
- ``tsa-<seq>-certs.pem`` — the certificates the token carries (the TSA's own);
- ``root-<n>.pem`` — the root certificates from ``evidence.timestamping.ca_files``.

Each token is checked offline with the command ``verify_command`` gives.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import chain
from service.models import ChainRecord, Evidence, Violation, ViolationEvidence
from service.timestamping import token_certificates
from watchers.toolkit.redact import mask_url

FOLDER = "timestamps"


@dataclasses.dataclass(frozen=True, slots=True)
class TokenInfo:
    seq: int
    tsa: str  # masked URL
    gen_time: str
    stamped_seq: int
    stamped_head: str
    token_file: str
    head_file: str
    certs_file: str
    root_files: tuple[str, ...]

    def verify_command(self) -> str:
        trust = self.root_files[0] if self.root_files else "<the TSA's root certificate>.pem"
        return (
            f"openssl ts -verify -data {self.head_file} -in {self.token_file} "
            f"-CAfile {trust} -untrusted {self.certs_file}"
        )


@dataclasses.dataclass(slots=True)
class PacketTimestamps:
    tokens: list[TokenInfo] = dataclasses.field(default_factory=list)
    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    files: list[str] = dataclasses.field(default_factory=list)
    # evidence seq → "existed by <time> (token timestamps/<seq>.tsr)"
    notes: dict[int, str] = dataclasses.field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        return max((token.seq for token in self.tokens), default=0)


def _case_seqs(session: Session, case_id: str) -> list[int]:
    query = (
        select(Evidence.seq)
        .join(ViolationEvidence, ViolationEvidence.evidence_id == Evidence.id)
        .join(Violation, Violation.id == ViolationEvidence.violation_id)
        .where(Violation.case_id == case_id)
        .distinct()
    )
    return sorted(session.scalars(query))


def select_tokens(session: Session, case_id: str) -> tuple[list[ChainRecord], dict[int, int]]:
    """The tokens the packet needs, and evidence seq → seq of its earliest token."""
    by_tsa: dict[str, list[tuple[int, ChainRecord]]] = {}
    for row in chain.iter_records(session, "timestamp"):
        data = json.loads(row.data)
        by_tsa.setdefault(str(data["tsa_url"]), []).append((int(data["stamped_seq"]), row))
    chosen: dict[int, ChainRecord] = {}
    first_token: dict[int, int] = {}
    seqs = _case_seqs(session, case_id)
    for tokens in by_tsa.values():
        stamped = [stamped_seq for stamped_seq, _ in tokens]
        for seq in seqs:
            at = bisect.bisect_left(stamped, seq)
            if at < len(tokens):
                row = tokens[at][1]
                chosen[row.seq] = row
                first_token[seq] = min(first_token.get(seq, row.seq), row.seq)
        chosen[tokens[-1][1].seq] = tokens[-1][1]
    return [chosen[seq] for seq in sorted(chosen)], first_token


def _write(out_dir: Path, name: str, data: bytes, opener: Any) -> None:
    handle: IO[bytes]
    with opener(out_dir / name) as handle:
        handle.write(data)


def write_timestamps(
    session: Session,
    case_id: str,
    out_dir: Path,
    roots: Sequence[x509.Certificate],
    opener: Any,
) -> PacketTimestamps:
    """Write ``timestamps/`` (only when there are tokens); ``opener`` opens a file
    for writing with the packet's private mode."""
    rows, first_token = select_tokens(session, case_id)
    packet = PacketTimestamps()
    if not rows:
        return packet
    folder = out_dir / FOLDER
    folder.mkdir(mode=0o700, exist_ok=True)
    root_files = []
    for number, root in enumerate(roots, 1):
        name = f"{FOLDER}/root-{number}.pem"
        _write(out_dir, name, root.public_bytes(Encoding.PEM), opener)
        root_files.append(name)
    packet.files.extend(root_files)
    times: dict[int, str] = {}
    for row in rows:
        data = json.loads(row.data)
        token = TokenInfo(
            seq=row.seq,
            tsa=mask_url(str(data["tsa_url"])),
            gen_time=str(data["gen_time"]),
            stamped_seq=int(data["stamped_seq"]),
            stamped_head=str(data["stamped_chain_sha256"]),
            token_file=f"{FOLDER}/{row.seq}.tsr",
            head_file=f"{FOLDER}/head-{data['stamped_seq']}.txt",
            certs_file=f"{FOLDER}/tsa-{row.seq}-certs.pem",
            root_files=tuple(root_files),
        )
        blob = row.blob or b""
        _write(out_dir, token.token_file, blob, opener)
        _write(out_dir, token.head_file, token.stamped_head.encode("ascii"), opener)
        _write(out_dir, token.certs_file, b"".join(token_certificates(blob)), opener)
        for name in (token.token_file, token.head_file, token.certs_file):
            if name not in packet.files:
                packet.files.append(name)
        packet.tokens.append(token)
        packet.records.append({**chain.json_record(row), "token_file": token.token_file})
        times[row.seq] = f"{token.gen_time} by {token.tsa} ({token.token_file})"
    for seq, token_seq in first_token.items():
        packet.notes[seq] = f"existed by {times[token_seq]}"
    return packet
