"""An RFC 822 message, as fetched, turned into what an Observation needs.

Mail is hostile input: broken MIME, unknown charsets, undecodable headers. Nothing here
raises on a malformed message; what cannot be read is left out and noted as a defect,
and the raw bytes are kept unchanged by the caller whatever happens here.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import email.utils
import hashlib
from datetime import datetime
from email.message import EmailMessage, Message
from email.policy import EmailPolicy

from watchers.toolkit.text import html_to_text, one_line, tidy

# ``default`` policy decodes encoded words; ``raise_on_defect`` stays off so a broken
# header becomes a defect, not an exception.
_POLICY: EmailPolicy[EmailMessage] = email.policy.default.clone(raise_on_defect=False)
MAX_DEFECTS = 10


@dataclasses.dataclass(frozen=True, slots=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int
    sha256: str

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedMail:
    message_id: str | None
    from_address: str | None  # bare address, as written (case kept)
    from_name: str | None  # display name, encoded words decoded
    recipients: tuple[str, ...]  # bare To and Cc addresses
    subject: str
    body: str  # text/plain, or the HTML part as text
    date: datetime | None
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]
    authentication_results: tuple[str, ...]  # as received, unfolded

    @property
    def text(self) -> str:
        """Subject and body: what the matcher reads and the timeline shows."""
        return "\n\n".join(part for part in (self.subject, self.body) if part)


def native_id(raw: bytes, message_id: str | None) -> str:
    """The Message-ID without angle brackets, or a hash of the raw message without it
    (the same bytes re-read after a UIDVALIDITY change give the same id)."""
    if message_id:
        return message_id
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def parse_or_note(raw: bytes) -> ParsedMail:
    """``parse``, or an empty result naming the failure: whatever a hostile message does
    to the standard library's parser, its raw bytes must still be kept as evidence."""
    try:
        return parse(raw)
    except Exception as exc:  # noqa: BLE001 - hostile input; the raw bytes are kept
        defect = f"unparseable message ({type(exc).__name__})"
        return ParsedMail(None, None, None, (), "", "", None, (), (defect,), ())


def parse(raw: bytes) -> ParsedMail:
    message = email.message_from_bytes(raw, policy=_POLICY)
    defects: list[str] = [type(defect).__name__ for defect in message.defects]
    from_name, from_address = _from(message, defects)
    body_part = _body_part(message)
    return ParsedMail(
        message_id=_message_id(message, defects),
        from_address=from_address,
        from_name=from_name,
        recipients=_recipients(message, defects),
        subject=one_line(_header(message, "Subject", defects), 998),
        body=_body_text(body_part, defects) if body_part is not None else "",
        date=_date(message, defects),
        attachments=tuple(_attachments(message, body_part)),
        defects=tuple(dict.fromkeys(defects))[:MAX_DEFECTS],
        authentication_results=tuple(
            " ".join(str(value).split()) for value in _raw_values(message, "Authentication-Results")
        ),
    )


def _raw_values(message: Message, name: str) -> list[str]:
    # The undecoded header text: provenance headers are kept as the server wrote them.
    return [value for key, value in message.raw_items() if key.lower() == name.lower()]


def _header(message: Message, name: str, defects: list[str]) -> str:
    try:
        value = message.get(name)
    except (ValueError, LookupError, TypeError, IndexError) as exc:
        defects.append(f"unreadable {name} header ({type(exc).__name__})")
        return ""
    return "" if value is None else str(value)


def _message_id(message: Message, defects: list[str]) -> str | None:
    value = _header(message, "Message-ID", defects).strip()
    value = value.removeprefix("<").removesuffix(">").strip()
    return value or None


def _from(message: Message, defects: list[str]) -> tuple[str | None, str | None]:
    value = _header(message, "From", defects)
    name, address = email.utils.parseaddr(value)
    if not address and value:
        defects.append("unparseable From header")
    return (name or None), (address or None)


def _recipients(message: Message, defects: list[str]) -> tuple[str, ...]:
    values = [_header(message, name, defects) for name in ("To", "Cc")]
    found = [address for _name, address in email.utils.getaddresses(values) if address]
    return tuple(dict.fromkeys(found))


def _date(message: Message, defects: list[str]) -> datetime | None:
    value = _header(message, "Date", defects)
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        defects.append("unparseable Date header")
        return None


def _body_part(message: Message) -> Message | None:
    if isinstance(message, EmailMessage):
        try:
            return message.get_body(preferencelist=("plain", "html"))
        except (KeyError, ValueError, LookupError):
            return None
    return None


def _body_text(part: Message, defects: list[str]) -> str:
    text = _decoded(part, defects)
    if part.get_content_subtype() == "html":
        return html_to_text(text)
    return tidy(text)


def _decoded(part: Message, defects: list[str]) -> str:
    """The part's text in its declared charset; an unknown or wrong charset falls back
    to UTF-8 then Latin-1 with replacement, never an exception."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "us-ascii"
    try:
        return payload.decode(charset)
    except (LookupError, UnicodeDecodeError):
        defects.append(f"text not in its declared charset {charset!r}")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1", errors="replace")


def _attachments(message: Message, body: Message | None) -> list[Attachment]:
    found: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart() or part is body:
            continue
        filename = part.get_filename()
        disposition = part.get_content_disposition()
        maintype = part.get_content_maintype()
        if disposition != "attachment" and not filename and maintype == "text":
            continue  # an alternative body (the HTML twin of the text), not an attachment
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        found.append(
            Attachment(
                filename=filename,
                content_type=part.get_content_type(),
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    return found
