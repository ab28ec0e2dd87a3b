"""Downloads: one raw payload, and the case's evidence packet as a zip.

Both are sent as attachments of type ``application/octet-stream`` / ``application/zip``:
a raw payload is platform HTML or JSON written by the restrained party, and must never
be rendered by the browser on this site's origin.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response

from service.access_log import log_access
from service.export import export_case
from service.models import Evidence
from service.timeline import raw_file_name

if TYPE_CHECKING:
    from service.web.app import WebContext


def raw_response(item: Evidence) -> Response:
    name = raw_file_name(item.seq, item.platform, item.native_id, item.raw_content_type)
    return Response(
        item.raw,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{name.removeprefix("raw/")}"',
            "X-Raw-SHA256": item.raw_sha256,
        },
    )


def export_response(ctx: WebContext, case_id: str, username: str) -> Response:
    """Build the packet in a private temporary directory, zip it under one top folder
    and send it; the directory is removed once the response is sent."""
    now = ctx.clock()
    stem = f"nocontact-{case_id}-{now.strftime('%Y%m%dT%H%M%SZ')}"
    work = Path(tempfile.mkdtemp(prefix="nocontact-web-"))
    try:
        out = work / stem
        export_case(ctx.reads, ctx.settings.case(case_id), out, now=now)
        archive = work / f"{stem}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    zipped.write(path, f"{stem}/{path.relative_to(out).as_posix()}")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log_access(ctx.writes, at=now, username=username, case_id=case_id, action="export")
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=archive.name,
        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True),
    )
