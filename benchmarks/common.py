"""What every benchmark shares: a result row, the one table writer and the one floors check.

A benchmark measures our code and an anchor (SciPy, a bare MQTT subscriber, py3dtiles, plain
`sumo`, ...) on the same input in the same run and returns rows; `benchmarks/run.py` runs them all,
prints one table and fails when a ratio falls below its floor in `benchmarks/floors.toml`. Each
ratio is ours / anchor with both as rates (higher is better), so a ratio above 1 means we are faster.
"""

from __future__ import annotations

import argparse
import json
import math
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

FLOORS = Path(__file__).with_name("floors.toml")


@dataclass
class Row:
    """One measure of one benchmark: our rate, the anchor's rate (same unit) and which anchor."""

    bench: str
    measure: str
    unit: str
    ours: float | None
    anchor: float | None
    anchor_name: str
    skipped: str | None = None  # why this row could not be measured on this machine
    failed: str | None = None  # a wrong result (lost messages, a different answer): always fails

    @property
    def ratio(self) -> float | None:
        """ours / anchor, or None where the row was not measured."""
        if self.skipped or self.ours is None or not self.anchor:
            return None
        return self.ours / self.anchor


def skipped(bench: str, measure: str, anchor_name: str, why: str) -> Row:
    """A row that could not be measured here (a missing anchor or input), and why."""
    return Row(bench, measure, "", None, None, anchor_name, skipped=why)


class FloorsError(Exception):
    """floors.toml is missing or malformed."""


def load_floors(path: Path = FLOORS) -> dict[tuple[str, str], float]:
    """The floor of each (benchmark, measure) from floors.toml: `[bench.measure]` with `floor`."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FloorsError(f"{path}: cannot read floors: {exc}") from None
    floors = {}
    for bench, measures in doc.items():
        if not isinstance(measures, dict):
            raise FloorsError(f"{path}: [{bench}]: expected a table of measures")
        for measure, entry in measures.items():
            value = entry.get("floor") if isinstance(entry, dict) else None
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise FloorsError(f"{path}: [{bench}.{measure}] floor: expected a number >= 0")
            floors[(bench, measure)] = float(value)
    return floors


def status(row: Row, floors: dict[tuple[str, str], float]) -> tuple[str, bool]:
    """What the ok column says for a row, and whether the row fails the check."""
    if row.failed:
        return f"FAILED: {row.failed}", True
    if row.skipped:
        return f"skipped: {row.skipped}", False
    floor = floors.get((row.bench, row.measure))
    ratio = row.ratio
    if ratio is None or not math.isfinite(ratio):
        return "FAILED: no ratio measured", True
    if floor is None:
        return "no floor", False
    return ("ok", False) if ratio >= floor else ("BELOW FLOOR", True)


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _ratio(ratio: float | None) -> str:
    """A ratio with two decimals, or three significant digits below 0.1 (a floor no code reaches)."""
    if ratio is None:
        return "-"
    return f"{ratio:.2f}" if abs(ratio) >= 0.1 else f"{ratio:.3g}"


def table(rows: list[Row], floors: dict[tuple[str, str], float], source: Path = FLOORS) -> str:
    """The rows as one text table: ours, anchor, ratio, floor, ok and which anchor."""
    head = ("benchmark", "measure", "ours", "anchor", "unit", "ratio", "floor", "ok", "anchor is")
    lines = [head]
    for r in rows:
        floor = floors.get((r.bench, r.measure))
        ratio = r.ratio
        lines.append((
            r.bench, r.measure, _num(r.ours), _num(r.anchor), r.unit,
            _ratio(ratio), "-" if floor is None else f"{floor:g}",
            status(r, floors)[0], r.anchor_name,
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    right = {2, 3, 5, 6}
    out = []
    for line in lines:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line[:-1], widths, strict=True))
        ]
        out.append("  ".join([*cells, line[-1]]).rstrip())
    out.insert(1, "-" * len(out[0]))
    out.append("ratio = ours / anchor, both rates measured in the same run (higher is better);")
    out.append(f"floors from {source.parent.name}/{source.name}")
    return "\n".join(out)


def problems(rows: list[Row], floors: dict[tuple[str, str], float]) -> list[str]:
    """One line per row that fails: below its floor, no ratio, or a wrong result."""
    out = []
    for r in rows:
        text, bad = status(r, floors)
        if bad:
            floor = floors.get((r.bench, r.measure))
            ratio = _ratio(r.ratio)
            limit = "" if floor is None or r.failed else f" < floor {floor:g}"
            out.append(f"{r.bench}/{r.measure}: {text} (ratio {ratio}{limit} vs {r.anchor_name})")
    return out


def to_json(rows: list[Row], floors: dict[tuple[str, str], float]) -> list[dict]:
    """The rows with ratio, floor and status, for results.json."""
    out = []
    for r in rows:
        text, bad = status(r, floors)
        out.append({**asdict(r), "ratio": r.ratio, "floor": floors.get((r.bench, r.measure)),
                    "status": text, "fails": bad})  # fmt: skip
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options every bench_*.py takes: --short (what `make bench` runs) and --rows FILE."""
    p.add_argument("--short", action="store_true", help="the short mode that `make bench` runs")
    p.add_argument("--rows", type=Path, help="also write this benchmark's rows as JSON to FILE")


def save_rows(rows: list[Row], path: Path) -> None:
    """Write rows for benchmarks/run.py to read back."""
    path.write_text(json.dumps([asdict(r) for r in rows], indent=1), encoding="utf-8")


def read_rows(path: Path) -> list[Row]:
    """Rows written by save_rows."""
    return [Row(**d) for d in json.loads(path.read_text(encoding="utf-8"))]


def finish(rows: list[Row], args: argparse.Namespace) -> int:
    """Print a benchmark's own rows against the floors, save them if asked; 1 if one fails."""
    floors = load_floors()
    print()
    print(table(rows, floors))
    if args.rows:
        save_rows(rows, args.rows)
    return 1 if problems(rows, floors) else 0
