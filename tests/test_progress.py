"""The one progress interface (twin.progress): the data build and a ground-water run report stages and
advancing counts through it, and the console shows them as readable lines where there is no terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from gw_scenario import write_gw_scenario
from progress_recording import Recording

from twin.city.build import Step, StepContext, run_build
from twin.city.pack import load_pack
from twin.cli import main
from twin.progress import PREFIX, SILENT, Progress, as_progress, console_progress


def _writer(name: str, say: str | None = None):
    def run(ctx: StepContext) -> None:
        if say:
            ctx.progress(say)
        ctx.out(name).write_text(name, encoding="utf-8")

    return run


def test_the_data_build_reports_its_steps(mini_pack: Path, tmp_path: Path):
    steps = [Step("first", _writer("a.txt", "half way"), ("a.txt",)),
             Step("second", _writer("b.txt"), ("b.txt",), after=("first",))]  # fmt: skip
    pack = load_pack(mini_pack)
    rec = Recording()
    run_build(pack, steps, tmp_path / "b", progress=rec)
    assert isinstance(rec, Progress)
    assert rec.stages == ["building first", "half way", "building second"]
    assert rec.counts == [(0, 2), (1, 2), (2, 2)]
    again = Recording()  # up to date: nothing built, the count still reaches the end
    run_build(pack, steps, tmp_path / "b", progress=again)
    assert again.stages == [] and again.counts[-1] == (2, 2)
    said: list[str] = []  # a plain callable of one message sees the stages
    run_build(pack, steps, tmp_path / "b", force=True, progress=said.append)
    assert said == ["building first", "half way", "building second"]


def test_a_groundwater_run_reports_stages_and_steps(mini_pack: Path, tmp_path: Path):
    from twin.groundwater.run import run_scenario

    scenario = write_gw_scenario(tmp_path, mini_pack, end="2024-03-05T00:00:00Z")
    rec = Recording()
    result = run_scenario(scenario, runs_dir=tmp_path / "runs", pack=mini_pack, progress=rec)
    assert result.steps == 4
    for stage in ("steady state", "stepping", "writing outputs"):
        assert stage in rec.stages
    assert any(s.startswith("done: set-up") for s in rec.stages)
    done = [d for d, _ in rec.counts]
    assert done == sorted(done) and rec.counts[-1] == (4, 4)
    assert {t for _, t in rec.counts} == {4}


def test_plain_lines_one_per_stage_and_one_per_tenth():
    out = io.StringIO()
    with console_progress("ground water", unit="steps", plain=True, out=out) as progress:
        progress.stage("stepping")
        for k in range(1001):
            progress.advance(k, 1000)
        progress.stage("writing outputs")
    lines = out.getvalue().splitlines()
    assert all(line.startswith(PREFIX + "ground water: ") for line in lines)
    assert lines[0].endswith("stepping") and lines[-1].endswith("writing outputs")
    tenths = lines[1:-1]
    assert [ln.split(": ", 1)[1].split(" %")[0] for ln in tenths] == [str(10 * k)
                                                                     for k in range(1, 11)]  # fmt: skip
    assert tenths[-1].endswith("100 % (1,000 of 1,000 steps)")


def test_the_console_is_plain_without_a_terminal_and_a_bar_on_one():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    pipe = io.StringIO()
    with console_progress("run", out=pipe) as progress:
        progress.advance(5, 10)
    assert pipe.getvalue() == f"{PREFIX}run: 50 % (5 of 10)\n"
    tty = Terminal()
    with console_progress("run", unit="steps", out=tty) as progress:
        progress.stage("[not markup] stepping")
        progress.advance(5, 10)
        progress.advance(10, 10)
    shown = tty.getvalue()
    assert "run: [not markup] stepping" in shown and "10/10 steps" in shown


def test_as_progress_and_silent():
    assert as_progress(None) is SILENT
    rec = Recording()
    assert as_progress(rec) is rec
    said: list[str] = []
    wrapped = as_progress(said.append)
    wrapped.stage("x")
    wrapped.advance(1, 2)
    assert said == ["x"]


def test_twin_data_build_shows_the_build_as_progress_lines(
    mini_pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert main(["data", "build", "--pack", str(mini_pack), "--build-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith(PREFIX + "data: ") for line in err), err
    assert f"{PREFIX}data: building terrain" in err
    assert err[-1].startswith(f"{PREFIX}data: 100 % (") and err[-1].endswith(" steps)")
