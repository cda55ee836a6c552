"""A twin.progress.Progress for tests: it keeps the stages and counts it was told, in order."""

from __future__ import annotations


class Recording:
    """A Progress that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def stage(self, text: str) -> None:
        self.events.append(("stage", text))

    def advance(self, done: float, total: float) -> None:
        self.events.append(("advance", done, total))

    @property
    def stages(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "stage"]

    @property
    def counts(self) -> list[tuple[float, float]]:
        return [(e[1], e[2]) for e in self.events if e[0] == "advance"]
