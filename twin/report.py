"""One report writer for every run: `report.html` with its PNG figures beside it.

A :class:`Report` is built piece by piece (facts, paragraphs, tables, figures, sections, links to the
reports of sub-runs) and written once, atomically (a temporary name, then a rename), so a reader never
sees half a report. The page is self-contained: one inline stylesheet, no scripts, fonts or anything
fetched from elsewhere; every text is HTML-escaped. Figures and links point inside the run folder only,
and a figure must be there when the report is written, or the writer refuses and names the file.

    report = Report("Ground-water run: today", lead="Krefeld, March")
    report.facts(["Period: ...", ["Scenario ", code("groundwater-today")]])
    report.section("Water budget")
    report.table(["package", "in", "out"], [["WEL", 0.0, 0.012]])
    report.figure("map_head.png", "Head at the end")
    report.write(run_folder)  # run_folder/report.html
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from twin.errors import DataError

REPORT = "report.html"

STYLE = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
h3{font-size:1.05em}
table{border-collapse:collapse;font-size:13px;margin:0.6em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eee}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
caption{caption-side:bottom;font-size:12px;color:#555;text-align:left;padding-top:3px}
figure{margin:0.8em 0}figure img{max-width:100%}figcaption{font-size:12px;color:#555}
code{background:#f4f4f4;padding:0 2px}p.note{font-style:italic}
"""

_NUM = r"(?:[+\-−]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][+\-]?\d+)?|–)"
_NUMBER = re.compile(rf"^\s*{_NUM}(?:\s*±\s*{_NUM})?\s*$")  # '1,234', '0.5 ± 0.1', '–'
NUMERIC = ' class="n"'  # a right-aligned table cell
NOTE = ' class="note"'
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


# -- inline text ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inline:
    """A piece of inline markup: code, strong or emphasised text, or a link (made by the helpers)."""

    tag: str
    text: str
    href: str | None = None

    def html(self) -> str:
        """The piece as HTML, its text escaped."""
        inner = _escape(self.text)
        if self.tag == "a":
            return f'<a href="{_attr(self.href or "")}">{inner}</a>'
        return f"<{self.tag}>{inner}</{self.tag}>"


Text = str | Inline | Sequence["str | Inline"]
"""Text as given to the builder: a plain string, one inline piece, or a list of both."""


def code(text: str) -> Inline:
    """`text` set as code (a file name, a scenario name)."""
    return Inline("code", str(text))


def strong(text: str) -> Inline:
    """`text` set in bold."""
    return Inline("b", str(text))


def em(text: str) -> Inline:
    """`text` set in italics."""
    return Inline("i", str(text))


def link(href: str, text: str | None = None) -> Inline:
    """A link to a file of the run folder (e.g. a sub-run's report); no URL of another site."""
    return Inline("a", str(text if text is not None else href), _local(href, "link"))


def _escape(text: Any) -> str:
    return html.escape(str(text), quote=False)


def _attr(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _text(text: Text) -> str:
    if isinstance(text, Inline):
        return text.html()
    if isinstance(text, str):
        return _escape(text)
    return "".join(_text(piece) for piece in text)


def _local(path: str, what: str) -> str:
    """`path` as a relative path inside the report's folder; a URL or a way out is refused."""
    posix = PurePosixPath(str(path).replace("\\", "/"))
    if _SCHEME.match(str(path)) or str(path).startswith("//") or posix.is_absolute():
        raise DataError(f"{path}: a report {what} must be a file of the run folder, not a URL "
                        "or an absolute path")  # fmt: skip
    if ".." in posix.parts or not posix.parts:
        raise DataError(f"{path}: a report {what} must stay inside the run folder")
    return posix.as_posix()


def number(value: float, digits: int = 4) -> str:
    """A number as tables show it: `digits` significant digits, thousands separated, NaN as '–'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int) or float(value) == int(value) or abs(value) >= 10**digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _cell(value: Any, tag: str) -> str:
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, int | float):
        return f"<{tag}{NUMERIC}>{_escape(number(value))}</{tag}>"
    text = value if isinstance(value, Inline | list | tuple) else str(value)
    numeric = isinstance(text, str) and bool(_NUMBER.match(text))
    return f"<{tag}{NUMERIC if numeric else ''}>{_text(text)}</{tag}>"


# -- the builder ----------------------------------------------------------------------------------------


class Report:
    """A report being built; :meth:`write` puts it into a run folder as report.html."""

    def __init__(self, title: str, *, lead: Text | None = None) -> None:
        self.title = str(title)
        self._body: list[str] = [f"<h1>{_escape(self.title)}</h1>"]
        self._figures: list[str] = []
        if lead:
            self.paragraph(lead)

    def section(self, title: str, *, level: int = 2) -> Report:
        """A heading: a section (level 2) or a sub-section (level 3)."""
        if level not in (2, 3):
            raise ValueError(f"a report section has level 2 or 3, not {level}")
        self._body.append(f"<h{level}>{_escape(title)}</h{level}>")
        return self

    def paragraph(self, text: Text, *, note: bool = False) -> Report:
        """A paragraph (`note`: set apart in italics, e.g. a remark on the data)."""
        self._body.append(f"<p{NOTE if note else ''}>{_text(text)}</p>")
        return self

    def facts(self, items: Iterable[Text]) -> Report:
        """A bullet list of facts (period, grid, sources, ...); a list item may nest a list as
        `(text, [sub-items])`."""
        self._body.append(self._list(items))
        return self

    def _list(self, items: Iterable[Any]) -> str:
        out = []
        for item in items:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], list):
                out.append(f"<li>{_text(item[0])}{self._list(item[1])}</li>")
            else:
                out.append(f"<li>{_text(item)}</li>")
        return f"<ul>{''.join(out)}</ul>"

    def table(self, header: Sequence[Text], rows: Iterable[Sequence[Any]], *,
              caption: Text | None = None) -> Report:  # fmt: skip
        """A table: numbers (and cells that read as numbers, such as '1.2 ± 0.3') right-aligned,
        floats shown by :func:`number`; format a cell yourself by passing a string."""
        rows = [list(r) for r in rows]
        width = len(header)
        for i, row in enumerate(rows):
            if len(row) != width:
                raise ValueError(f"report table row {i + 1} has {len(row)} cells, not {width}")
        numeric = [bool(rows) and all(_cell(r[c], "td").startswith(f"<td{NUMERIC}>") for r in rows)
                   for c in range(width)]  # fmt: skip
        head = "".join(f"<th{NUMERIC if numeric[c] else ''}>{_text(h)}</th>"
                       for c, h in enumerate(header))  # fmt: skip
        body = "".join("<tr>" + "".join(_cell(v, "td") for v in r) + "</tr>" for r in rows)
        cap = f"<caption>{_text(caption)}</caption>" if caption else ""
        self._body.append(
            f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
        return self

    def figure(self, path: str, caption: Text, *, width: int | None = None) -> Report:
        """A PNG of the run folder (`path` relative to it, e.g. 'map_head.png' or
        'groundwater/map_head.png') with its caption; it must exist when the report is written."""
        src = _local(path, "figure")
        self._figures.append(src)
        alt = caption if isinstance(caption, str) else src
        size = f' width="{int(width)}"' if width else ""
        self._body.append(f'<figure><img src="{_attr(src)}" alt="{_attr(alt)}"{size}>'
                          f"<figcaption>{_text(caption)}</figcaption></figure>")  # fmt: skip
        return self

    def links(self, items: Iterable[tuple[str, str]]) -> Report:
        """A list of links to files of the run folder, e.g. the reports of its parts:
        `(href, text)` pairs."""
        self._body.append(self._list([link(href, text) for href, text in items]))
        return self

    def html(self) -> str:
        """The whole page."""
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_escape(self.title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(self._body)
            + "\n</body></html>\n"
        )

    def write(self, folder: Path, name: str = REPORT) -> Path:
        """Write the page into `folder` atomically; refused (DataError naming the file) when a
        figure is not there."""
        folder = Path(folder)
        for src in self._figures:
            if not (folder / src).is_file():
                raise DataError(f"{folder / src}: the report's figure is not there")
        path = folder / name
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        try:
            tmp.write_text(self.html(), encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path
