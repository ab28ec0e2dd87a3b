"""The ``evidence:`` section of config.yaml (#14): trusted timestamps and re-checks."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from watchers.base import Duration

MIN_STAMP_INTERVAL = timedelta(seconds=10)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TimestampingSettings(_Strict):
    """RFC 3161 timestamps of the chain head by each listed authority."""

    tsa_urls: list[str] = Field(min_length=1)
    # How often the head is stamped when it has changed (and retried after a failure).
    every: Duration = Field(default=timedelta(hours=1))
    # PEM files of the authorities' root certificates: used by `verify` and put in the
    # packet, so that `openssl ts -verify` can check each token offline.
    ca_files: list[str] = Field(default_factory=list)
    timeout: Duration = Field(default=timedelta(seconds=15))

    @field_validator("tsa_urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL of a timestamp authority")
        if len(set(urls)) != len(urls):
            raise ValueError("a timestamp authority is listed twice")
        return urls

    @field_validator("every")
    @classmethod
    def _not_too_often(cls, every: timedelta) -> timedelta:
        if every < MIN_STAMP_INTERVAL:
            raise ValueError("must be at least 10s (timestamp authorities limit their rate)")
        return every


class RecheckSettings(_Strict):
    """Re-read captured items on a decaying schedule, for this long after capture."""

    for_: Duration = Field(default=timedelta(days=30), alias="for")


class EvidenceSettings(_Strict):
    timestamping: TimestampingSettings | None = None
    recheck: RecheckSettings | None = None
