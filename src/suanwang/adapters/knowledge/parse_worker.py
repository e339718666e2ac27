"""The document parser that runs inside the sandbox: file bytes on stdin, text on stdout.

``python -m suanwang.adapters.knowledge.parse_worker <media type>``. Exit 0 with UTF-8
text; exit 2 with one line on stderr when the file is not what it claims or is hostile
(a zip whose members would inflate past :data:`MAX_INFLATED_BYTES`). Anything worse
(memory, CPU) is the sandbox's limits' business: the process is killed and the caller
reports it. Nothing here touches the disk or the network.
"""

from __future__ import annotations

import io
import sys
import zipfile
from html.parser import HTMLParser

MAX_INFLATED_BYTES = 200 << 20
SKIPPED_TAGS = frozenset({"script", "style", "head", "template", "noscript"})
BLOCK_TAGS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})


class Refused(Exception):
    """The file is corrupt or hostile."""


class _TextOf(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, _attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED_TAGS:
            self._skipping += 1
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise Refused("not UTF-8 or GB18030 text")


def html_text(data: bytes) -> str:
    parser = _TextOf()
    parser.feed(decode(data))
    parser.close()
    return "".join(parser.parts)


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise Refused(f"not a readable PDF: {type(exc).__name__}: {exc}"[:300]) from exc


def docx_text(data: bytes) -> str:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise Refused("not a DOCX file (not a zip archive)") from exc
    inflated = sum(info.file_size for info in archive.infolist())
    if inflated > MAX_INFLATED_BYTES:
        raise Refused(f"the archive would inflate to {inflated} bytes (a zip bomb?)")
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise Refused(f"not a readable DOCX: {type(exc).__name__}") from exc
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text for cell in row.cells))
    return "\n\n".join(parts)


PARSERS = {
    "text/plain": decode,
    "text/markdown": decode,
    "text/html": html_text,
    "application/pdf": pdf_text,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": docx_text,
}


def main(argv: list[str]) -> int:
    parser = PARSERS.get(argv[1]) if len(argv) == 2 else None
    if parser is None:
        sys.stderr.write("usage: parse_worker <media type>\n")
        return 2
    try:
        text = parser(sys.stdin.buffer.read())
    except Refused as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    sys.stdout.buffer.write(text.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
