"""The one report writer (twin.report): escaped text, an atomic write, figures that must be there, and
a page that fetches nothing from elsewhere."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from twin.errors import DataError
from twin.report import REPORT, Report, code, link, number, strong

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


class _Page(HTMLParser):
    """Every tag with its attributes, and the text, of a written page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def full_report(folder: Path) -> Report:
    (folder / "map.png").write_bytes(PNG)
    (folder / "part").mkdir()
    (folder / "part" / "head.png").write_bytes(PNG)
    report = Report("Run <b>&", lead="lead & <script>alert(1)</script>")
    report.facts(["one < two", ["scenario ", code("a&b"), " ", strong("<x>")],
                  ("outages: 1", ["01:00 to 02:00"])])  # fmt: skip
    report.section("Table")
    report.table(["name", "value", "mean ± sd"],
                 [["<well>", 1.5, "1,234 ± 5.6"], ["b", float("nan"), "–"]])  # fmt: skip
    report.figure("map.png", "Head <m>")
    report.figure("part/head.png", "Part's head", width=400)
    report.links([("part/report.html", "the part's report")])
    return report


def test_text_is_escaped_and_the_page_fetches_nothing(tmp_path: Path):
    path = full_report(tmp_path).write(tmp_path)
    assert path == tmp_path / REPORT
    raw = path.read_text(encoding="utf-8")
    assert "<script" not in raw and "<well>" not in raw and "<x>" not in raw
    page = parse(path)
    text = "".join(page.text)
    assert "lead & <script>alert(1)</script>" in text  # shown as written, not run
    assert "Run <b>&" in text and "<well>" in text and "Part's head" in text
    tags = [t for t, _ in page.tags]
    assert tags.count("style") == 1 and "script" not in tags and "link" not in tags
    refs = [v for _, attrs in page.tags for k, v in attrs.items() if k in ("src", "href")]
    assert sorted(refs) == ["map.png", "part/head.png", "part/report.html"]
    assert not re.search(r"https?:|//|url\(|@import", raw.replace("<!DOCTYPE html>", ""))


def test_numbers_are_right_aligned_and_text_is_not(tmp_path: Path):
    page = parse(full_report(tmp_path).write(tmp_path))
    cells = [(t, a.get("class")) for t, a in page.tags if t in ("th", "td")]
    assert cells == [("th", None), ("th", "n"), ("th", "n"),  # a column of numbers: header too
                     ("td", None), ("td", "n"), ("td", "n"),
                     ("td", None), ("td", "n"), ("td", "n")]  # fmt: skip
    assert (
        number(float("nan")) == "–"
        and number(12345.678) == "12,346"
        and number(0.01234) == "0.01234"
    )


def test_a_missing_figure_is_refused_by_name_and_nothing_is_written(tmp_path: Path):
    report = Report("r")
    report.figure("sub/missing.png", "gone")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "sub" / "missing.png"))):
        report.write(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["https://cdn.example.org/x.png", "//cdn.example.org/x.png",
                                   "/etc/x.png", "../x.png", "data:image/png;base64,AAAA"])  # fmt: skip
def test_figures_and_links_stay_inside_the_run_folder(where: str):
    with pytest.raises(DataError, match="run folder"):
        Report("r").figure(where, "x")
    with pytest.raises(DataError, match="run folder"):
        link(where)


def test_the_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An old report stays whole until the new one is complete; a failed write leaves no
    temporary file."""
    old = Report("old").write(tmp_path).read_text(encoding="utf-8")
    seen: list[str] = []
    replace = os.replace

    def failing(src: str | Path, dst: str | Path) -> None:
        seen.append(Path(src).name)
        assert Path(src).read_text(encoding="utf-8").endswith("</html>\n")  # complete first
        assert (tmp_path / REPORT).read_text(encoding="utf-8") == old
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        Report("new").write(tmp_path)
    monkeypatch.setattr(os, "replace", replace)
    assert seen and seen[0].startswith(".") and seen[0] != REPORT
    assert sorted(p.name for p in tmp_path.iterdir()) == [REPORT]
    assert (tmp_path / REPORT).read_text(encoding="utf-8") == old
    Report("new").write(tmp_path)
    assert "<h1>new</h1>" in (tmp_path / REPORT).read_text(encoding="utf-8")


def test_a_table_row_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="row 2 has 1 cells, not 2"):
        Report("r").table(["a", "b"], [[1, 2], [3]])
