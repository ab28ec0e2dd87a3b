"""Writing the report's PDF in bounded memory.

reportlab keeps every finished page's content in the document until it is saved, then
assembles the whole file in memory before writing it: for a packet of thousands of
violations that grows with the count. Here each page's content is compressed as soon as
the page is finished and kept in an unlinked temporary file (beside the packet), and the
file is written object by object as reportlab formats it. The bytes are those reportlab
would write (the same objects, compressed the same way); what remains in memory per page
is reportlab's small page object.

``PackedCanvas`` is the canvas to build with; ``format`` below follows reportlab 5's
``PDFDocument.format`` with the output collector writing to the file (the tests read
every PDF the export writes, so a reportlab change that broke this would show).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO, Any

from reportlab import rl_config
from reportlab.pdfbase.pdfdoc import (
    PDFArray,
    PDFBase85Encode,
    PDFCrossReferenceTable,
    PDFDictionary,
    PDFDocument,
    PDFFile,
    PDFIndirectObject,
    PDFName,
    PDFObject,
    PDFTrailer,
    PDFZCompress,
    pdfdocEnc,
)
from reportlab.pdfbase.pdfdoc import format as pdf_format
from reportlab.pdfgen.canvas import Canvas


def _filters() -> list[Any]:
    """The filters reportlab gives a compressed page (PDFPage.check_format)."""
    return [PDFBase85Encode, PDFZCompress] if rl_config.useA85 else [PDFZCompress]


class _Spool:
    """Compressed page streams in an unlinked temporary file."""

    def __init__(self, folder: Path | None) -> None:
        self.file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 (closed at save)

    def add(self, text: str) -> _SpooledStream:
        data: Any = text
        for encoder in reversed(_filters()):  # as PDFStream.format applies them
            data = encoder.encode(data)
        data = pdfdocEnc(data)  # ASCII85 gives text: the bytes PDFStream would write
        offset = self.file.seek(0, 2)
        self.file.write(data)
        return _SpooledStream(self, offset, len(data))

    def read(self, offset: int, length: int) -> bytes:
        self.file.seek(offset)
        return self.file.read(length)


class _SpooledStream(PDFObject):
    """A page's content stream, read back from the spool when it is written."""

    __RefOnly__ = 1
    __Comment__ = "page stream"

    def __init__(self, spool: _Spool, offset: int, length: int) -> None:
        self.spool, self.offset, self.length = spool, offset, length

    def format(self, document: Any) -> bytes:  # as reportlab's PDFStream.format
        content: bytes = document.encrypt.encode(self.spool.read(self.offset, self.length))
        names = PDFArray([PDFName(encoder.pdfname) for encoder in _filters()])
        dictionary = PDFDictionary({"Filter": names, "Length": len(content)})
        head: bytes = pdf_format(dictionary, document)
        return head + b"\nstream\n" + content + b"endstream\n"


class _FileWriter(PDFFile):
    """reportlab's output collector, writing straight to the file."""

    def __init__(self, out: IO[bytes], version: Any) -> None:
        self.out = out
        super().__init__(version)

    def add(self, s: Any) -> int:
        data: bytes = pdfdocEnc(s)
        offset: int = self.offset
        self.offset = offset + len(data)
        self.out.write(data)
        return offset

    def format(self, document: Any) -> bytes:
        return b""  # already written


class _StreamingDocument(PDFDocument):
    _out: IO[bytes]

    def SaveToFile(self, filename: Any, canvas: Any) -> None:
        self._out = filename
        super().SaveToFile(filename, canvas)  # writes what ``format`` returns: nothing

    def format(self) -> bytes:
        """reportlab's PDFDocument.format, with the collector writing to the file."""
        doc: Any = self  # reportlab's attributes are untyped in the stubs
        doc.encrypt.prepare(doc)
        doc.Reference(doc.Catalog)
        doc.Reference(doc.info)
        encryptinfo = doc.encrypt.info()
        encryptref = doc.Reference(encryptinfo) if encryptinfo else None
        counter, ids = 0, []
        doc.__accum__ = out = _FileWriter(doc._out, doc._pdfVersion)
        # Formatting an object may register new ones: go on until none is left.
        while True:
            counter += 1
            if counter not in doc.numberToId:
                break
            oid = doc.numberToId[counter]
            obj = doc.idToObject[oid]
            formatted = PDFIndirectObject(oid, obj).format(doc)
            if not rl_config.invariant and rl_config.pdfComments:
                out.add(f"% {oid!a}: class {obj.__class__.__name__[:50]} \n")
            doc.idToOffset[oid] = out.add(formatted)
            ids.append(oid)
        del doc.__accum__
        if counter - 1 != len(doc.numberToId):
            raise ValueError("PDF objects were numbered out of order")
        xref = PDFCrossReferenceTable()
        xref.addsection(0, ids)
        start = out.add(xref.format(doc))
        trailer = PDFTrailer(startxref=start, Size=len(doc.numberToId) + 1,
                             Root=doc.Reference(doc.Catalog), Info=doc.Reference(doc.info),
                             Encrypt=encryptref, ID=doc.ID())  # fmt: skip
        out.add(trailer.format(doc))
        return b""


class PackedCanvas(Canvas):
    """A canvas whose finished pages leave memory (see the module's docstring)."""

    def __init__(
        self, out: IO[bytes], *args: Any, scratch: Path | None = None, **kwargs: Any
    ) -> None:
        """``scratch``: the folder of the spool file (unlinked; the system's temporary
        folder when None)."""
        super().__init__(out, *args, **kwargs)
        self._spool = _Spool(scratch)
        doc = getattr(self, "_doc")  # noqa: B009 (untyped in the stubs)
        doc.__class__ = _StreamingDocument

    def showPage(self) -> None:
        super().showPage()
        page = getattr(self, "_doc").Pages.pages[-1]  # noqa: B009
        if page.stream and page.compression:
            page.Contents = self._spool.add(page.stream)
            page.stream = None

    def save(self) -> None:
        try:
            super().save()
        finally:
            self._spool.file.close()
