"""Exports that leave the service as files: CSV cells safe to open in a spreadsheet, and the
``Content-Disposition`` header that names the file.

A CSV cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by
spreadsheet programs as a formula (CSV injection); as OWASP recommends, such a cell gets a
leading single quote, which makes it text. Only text cells are changed: a number stays a number.

>>> as_csv([{"q": "=HYPERLINK(\\"http://x\\")", "n": -1.5}], ["q", "n"])
'q,n\\r\\n"\\'=HYPERLINK(""http://x"")",-1.5\\r\\n'
>>> attachment('x"; filename="evil.exe', "csv")
'attachment; filename="x_filename_evil.exe.csv"; filename*=UTF-8\\'\\'x%22%3B%20filename%3D%22evil.exe.csv'
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._-]+")


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet reads it as text: a leading quote before a formula character."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _text(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ", ".join("" if v is None else str(v) for v in value)
    return value


def as_csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """``rows`` as CSV with a header of ``columns`` (lists joined with ", "), every cell safe."""
    buf = io.StringIO()
    # CRLF as RFC 4180 has it; it also makes the writer quote a cell holding a lone CR.
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: safe_cell(_text(r.get(c))) for c in columns})
    return buf.getvalue()


def attachment(name: str, extension: str) -> str:
    """A ``Content-Disposition`` naming the file ``name.extension`` (RFC 6266): ``filename`` is
    an ASCII stand-in (anything but letters, digits, ``.``, ``_`` and ``-`` becomes ``_``),
    ``filename*`` the name itself, percent-encoded UTF-8 without control characters. Nothing in
    ``name`` can end the header value or add a parameter."""
    printable = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")[:200]
    fallback = _UNSAFE_ASCII.sub("_", printable).strip("_.") or "export"
    return (f'attachment; filename="{fallback}.{extension}"; '
            f"filename*=UTF-8''{quote(f'{printable}.{extension}', safe='')}")
