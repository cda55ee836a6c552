"""The coupler's clock: model time in seconds since a UTC epoch, and back to tz-aware datetimes."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from twin.core.errors import ClockError

__all__ = ["Clock", "format_utc", "parse_end", "parse_utc"]

_HHMM = re.compile(r"(\d+):([0-5]\d)")
_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_utc(value: datetime | str, *, field: str = "time") -> datetime:
    """Return ``value`` as a tz-aware UTC datetime; ISO 8601 text is parsed.

    Naive datetimes (and text without ``Z`` or an offset) are refused: a time without a zone is
    ambiguous in a city that switches between CET and CEST. ``field`` names the value in errors.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            # Python 3.11's parser reads the ISO 8601 forms we meet ('Z', offsets, basic format).
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ClockError(
                f"{field}: {value!r} is not an ISO 8601 date-time; expected e.g. "
                "'2024-06-01T00:00:00Z'"
            ) from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise ClockError(
            f"{field}: expected a tz-aware datetime or ISO 8601 text, got {type(value).__name__}"
        )
    if parsed.tzinfo is None or parsed.tzinfo.utcoffset(parsed) is None:
        raise ClockError(
            f"{field}: {value!s} is a naive date-time (no time zone); give it in UTC with 'Z' "
            "or with an offset such as '+02:00'"
        )
    return parsed.astimezone(UTC)


def parse_end(value: str, start: datetime | str, *, field: str = "--end") -> datetime:
    """The end of a run from the one ``--end`` rule of every command, as a UTC datetime.

    ``value`` is either a duration counted from ``start`` (``HH:MM`` with hours that may pass 24,
    or a number with a unit: ``90s``, ``30m``, ``6h``, ``2d``) or an ISO 8601 time with a zone
    (``2024-06-01T06:00:00Z``). The end must come after ``start``; ``field`` names the value.
    """
    begin = parse_utc(start, field="start")
    text = str(value).strip()
    hhmm, span = _HHMM.fullmatch(text), _SPAN.fullmatch(text)
    if hhmm:
        seconds = int(hhmm.group(1)) * 3600.0 + int(hhmm.group(2)) * 60.0
    elif span:
        seconds = float(span.group(1)) * _UNIT_S[span.group(2)]
    else:
        try:
            datetime.fromisoformat(text)
        except ValueError:
            raise ClockError(
                f"{field}: expected a duration from the start (HH:MM, 90s, 30m, 6h, 2d) or an "
                f"ISO 8601 UTC time such as '2024-06-01T06:00:00Z', got {value!r}"
            ) from None
        end = parse_utc(text, field=field)  # refuses a time without a zone, saying so
        if end <= begin:
            raise ClockError(
                f"{field}: {format_utc(end)} is not after the start {format_utc(begin)}"
            )
        return end
    if seconds <= 0:
        raise ClockError(f"{field}: the duration {text!r} must be longer than zero")
    try:
        return begin + timedelta(seconds=seconds)
    except OverflowError:
        raise ClockError(f"{field}: the duration {text!r} ends after the year 9999") from None


def format_utc(when: datetime) -> str:
    """Format a tz-aware datetime as ISO 8601 UTC text ending in ``Z``."""
    text = parse_utc(when).isoformat()
    return text.removesuffix("+00:00") + "Z"


class Clock:
    """Maps model time (float seconds since ``start``) to tz-aware UTC datetimes and back.

    ``start`` is the epoch of every coupled model (model time 0); ``end`` is optional and bounds
    a run. Both are given as tz-aware datetimes or ISO 8601 text; naive values are refused.
    Datetimes carry microseconds, so conversions are exact to 1 microsecond.
    """

    __slots__ = ("_start", "_end")

    def __init__(self, start: datetime | str, end: datetime | str | None = None) -> None:
        self._start = parse_utc(start, field="start")
        self._end = None if end is None else parse_utc(end, field="end")
        if self._end is not None and self._end < self._start:
            raise ClockError(
                f"end: {format_utc(self._end)} is before start {format_utc(self._start)}; "
                "expected end >= start"
            )

    @property
    def start(self) -> datetime:
        """The epoch (model time 0) as a tz-aware UTC datetime."""
        return self._start

    @property
    def end(self) -> datetime | None:
        """The end of the run as a tz-aware UTC datetime, or None when open-ended."""
        return self._end

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or None when the clock has no end."""
        return None if self._end is None else (self._end - self._start).total_seconds()

    def to_datetime(self, seconds: float) -> datetime:
        """The UTC datetime ``seconds`` after the epoch (rounded to the microsecond)."""
        value = float(seconds)
        if not math.isfinite(value):
            raise ClockError(f"seconds: expected a finite number of seconds, got {seconds!r}")
        return self._start + timedelta(seconds=value)

    def to_seconds(self, when: datetime | str) -> float:
        """Seconds from the epoch to ``when`` (tz-aware datetime or ISO 8601 text)."""
        return (parse_utc(when) - self._start).total_seconds()

    def isoformat(self, seconds: float) -> str:
        """ISO 8601 UTC text (``...Z``) of the time ``seconds`` after the epoch."""
        return format_utc(self.to_datetime(seconds))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Clock):
            return NotImplemented
        return (self._start, self._end) == (other._start, other._end)

    def __hash__(self) -> int:
        return hash((self._start, self._end))

    def __repr__(self) -> str:
        end = "None" if self._end is None else repr(format_utc(self._end))
        return f"Clock(start={format_utc(self._start)!r}, end={end})"


def utc_check(value: object) -> str | None:
    """A config check (``twin.config.Field(check=...)``) for an ISO 8601 UTC time."""
    try:
        parse_utc(value)
    except ClockError:
        return "an ISO 8601 UTC time such as '2024-03-01T00:00:00Z'"
    return None
