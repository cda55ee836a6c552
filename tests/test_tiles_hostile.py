"""Hostile tilesets: `twin tiles info` reports only what it read, refuses what it must not read,
and neither hangs nor runs out of memory. Each case runs the real command in a subprocess with a
generous timeout and reports how far its peak memory (ru_maxrss) rose above the command's own
start-up (the `twin` parser imports every domain), which must stay bounded.

Every hostile file is built in tmp_path; the gzip bomb is streamed through zlib in chunks so the
test itself stays small.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from tile_bytes import BOX, glb

from twin.errors import DataError
from twin.tiles import open_tileset, tileset_info
from twin.tiles.source import MAX_INFLATED_BYTES, read_capped

SAMPLES = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "3dtiles-samples"
).resolve()
TIMEOUT_S = 120  # generous: a hang shows as a timeout, a busy machine does not
PEAK_LIMIT_MB = 300  # memory a command may add to its start-up while reading a hostile tileset

# Runs `twin` in this interpreter and reports its peak resident memory above start-up on stderr.
RUNNER = """
import resource, sys
from twin.cli import build_parser, main
build_parser()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    rc = main(sys.argv[1:])
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stderr.write(f"\\nPEAK_KB {peak - base}\\n")
sys.exit(rc)
"""


def run_info(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    """`twin tiles info ARGS` in a subprocess (killed on timeout); its result and the MB its
    peak memory rose above start-up."""
    env = {k: v for k, v in os.environ.items() if k != "TWIN_DEBUG"}
    r = subprocess.run(
        [sys.executable, "-c", RUNNER, "tiles", "info", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    marks = [line for line in r.stderr.splitlines() if line.startswith("PEAK_KB ")]
    assert marks, r.stderr
    return r, int(marks[-1].split()[1]) / 1024


def error_lines(r: subprocess.CompletedProcess) -> list[str]:
    return [line for line in r.stderr.splitlines() if line and not line.startswith("PEAK_KB")]


def write_tileset(folder: Path, root: dict, name: str = "tileset.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"asset": {"version": "1.1"}, "geometricError": 10, "root": root}
    (folder / name).write_text(json.dumps(doc), encoding="utf-8")
    return folder / name


def one_content(folder: Path, uri: str = "a.glb") -> Path:
    return write_tileset(
        folder, {"boundingVolume": BOX, "geometricError": 0, "content": {"uri": uri}}
    )


def triangles_glb(
    count: int, buffer_bytes: int | None = None, positions_view: bool = True
) -> bytes:
    """A GLB of one non-indexed triangle list: 36 bytes of positions (one triangle) but
    `count` vertices claimed, and a buffer claiming `buffer_bytes`."""
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    length = buffer_bytes if buffer_bytes is not None else len(pos)
    accessor = {"componentType": 5126, "count": count, "type": "VEC3"}
    if positions_view:
        accessor["bufferView"] = 0
    j = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": length}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": length}],
        "accessors": [accessor],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
        "scene": 0,
    }
    return glb(j, pos)


def gzip_zeros(path: Path, n_bytes: int) -> None:
    """A gzip file inflating to `n_bytes` zeros, compressed in chunks (small on disk)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(4 * 1024**2)
    with open(path, "wb") as f:
        left = n_bytes
        while left > 0:
            f.write(comp.compress(chunk[: min(left, len(chunk))]))
            left -= len(chunk)
        f.write(comp.flush())


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tileset whose content is a gzip bomb inflating 64 MiB past the default cap (under a
    MB on disk)."""
    folder = tmp_path_factory.mktemp("bomb")
    one_content(folder, "a.b3dm")
    gzip_zeros(folder / "a.b3dm", MAX_INFLATED_BYTES + 64 * 1024**2)
    assert (folder / "a.b3dm").stat().st_size < 1024**2
    return folder


# ---------------------------------------------------------------- counts only from read data
def test_a_buffer_claiming_more_than_it_holds_counts_nothing(tmp_path: Path) -> None:
    one_content(tmp_path)
    (tmp_path / "a.glb").write_bytes(triangles_glb(83_333_333, buffer_bytes=1_000_000_000))
    r, peak = run_info(str(tmp_path), "--json")
    assert r.returncode == 1, r.stderr
    info = json.loads(r.stdout)
    assert info["triangles"] == 0 and info["declared_triangles"] == 0
    assert info["contents"] == {"glb": 1}
    (err,) = [p for p in info["errors"] if "a.glb" in p]
    assert "byteLength says 1000000000 bytes, but only 36 are there" in err
    assert peak < PEAK_LIMIT_MB


def test_the_same_glb_with_honest_lengths_is_counted(tmp_path: Path) -> None:
    one_content(tmp_path)
    (tmp_path / "a.glb").write_bytes(triangles_glb(3))
    info = tileset_info(tmp_path)
    assert info["triangles"] == 1 and info["declared_triangles"] == 0
    assert info["errors"] == []


def test_an_accessor_without_data_is_declared_not_verified(tmp_path: Path) -> None:
    one_content(tmp_path)
    (tmp_path / "a.glb").write_bytes(triangles_glb(1_000_000_000, positions_view=False))
    r, peak = run_info(str(tmp_path), "--json")
    info = json.loads(r.stdout)
    assert info["triangles"] == 0
    assert info["declared_triangles"] == 333_333_333
    (note,) = [p for p in info["problems"] if "declared, not verified" in p]
    assert "accessors[0] has no bufferView" in note and "333333333 triangles" in note
    assert note not in info["errors"] and r.returncode == 0  # a warning: zeros are legal glTF
    assert peak < PEAK_LIMIT_MB
    r = subprocess.run(
        [sys.executable, "-m", "twin.cli", "tiles", "info", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert "Triangles      0 (and 333,333,333 declared, not verified)" in r.stdout
    assert "  - warning: " in r.stdout


# ---------------------------------------------------------------- files that are not files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes (os.mkfifo) not available")
def test_a_fifo_content_is_refused_without_blocking(tmp_path: Path) -> None:
    one_content(tmp_path, "a.b3dm")
    os.mkfifo(tmp_path / "a.b3dm")
    r, peak = run_info(str(tmp_path), "--json")
    assert r.returncode == 1
    (err,) = json.loads(r.stdout)["errors"]
    assert "a.b3dm: is a FIFO (named pipe), only regular files are read; refused" in err
    assert peak < PEAK_LIMIT_MB


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes (os.mkfifo) not available")
def test_a_fifo_as_the_tileset_itself_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "tileset.json")
    r, _ = run_info(str(tmp_path))
    assert r.returncode == 1
    (line,) = error_lines(r)
    assert line.startswith("twin: error: ") and "tileset.json: is a FIFO (named pipe)" in line


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="/dev/zero not available")
def test_dev_zero_is_refused_as_content_and_as_tileset(tmp_path: Path) -> None:
    one_content(tmp_path, "a.b3dm")
    (tmp_path / "a.b3dm").symlink_to("/dev/zero")
    r, peak = run_info(str(tmp_path), "--json")
    assert r.returncode == 1
    (err,) = json.loads(r.stdout)["errors"]
    assert "a.b3dm: resolves (through a symlink) to /dev/zero, outside the tileset folder" in err
    assert peak < PEAK_LIMIT_MB
    r, peak = run_info("/dev/zero")
    assert r.returncode == 1 and peak < PEAK_LIMIT_MB
    (line,) = error_lines(r)
    assert (
        line
        == "twin: error: /dev/zero: is a character device, only regular files are read; refused"
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "tileset.json").symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"tileset\.json: is a character device"):
        open_tileset(tmp_path / "in")


def test_a_folder_as_content_is_refused(tmp_path: Path) -> None:
    one_content(tmp_path, "a.b3dm")
    (tmp_path / "a.b3dm").mkdir()
    info = tileset_info(tmp_path)
    (err,) = info["errors"]
    assert "a.b3dm: is a folder, expected a file; refused" in err


# ---------------------------------------------------------------- caps while streaming
def test_a_gzip_bomb_is_refused_at_the_cap_with_bounded_memory(bomb: Path) -> None:
    r, peak = run_info(str(bomb), "--json", "--max-file-mb", "8")
    assert r.returncode == 1
    (err,) = json.loads(r.stdout)["errors"]
    assert "a.b3dm: gzip data inflates to more than 8388608 bytes" in err
    assert peak < PEAK_LIMIT_MB


def test_the_default_cap_stops_a_bomb_beyond_it(bomb: Path) -> None:
    r, peak = run_info(str(bomb), "--json")
    assert r.returncode == 1
    (err,) = json.loads(r.stdout)["errors"]
    assert f"gzip data inflates to more than {MAX_INFLATED_BYTES} bytes" in err
    # the cap is held, never passed, and the inflated bytes are not copied again
    assert peak < MAX_INFLATED_BYTES / 1024**2 + PEAK_LIMIT_MB


def test_within_the_cap_gzip_content_is_inflated_and_read(tmp_path: Path) -> None:
    one_content(tmp_path)
    (tmp_path / "a.glb").write_bytes(gzip.compress(triangles_glb(3)))
    info = tileset_info(tmp_path, max_file_bytes=1024**2)
    assert info["triangles"] == 1 and info["errors"] == []


def test_caps_are_checked_while_streaming(tmp_path: Path) -> None:
    class Endless:
        """A stream that never ends (like a device), counting what was taken from it."""

        taken = 0

        def read(self, n: int) -> bytes:
            self.taken += n
            return bytes(n)

    stream = Endless()
    with pytest.raises(DataError, match="more than 4194304 bytes"):
        read_capped(stream, "endless", max_read=4 * 1024**2)
    assert stream.taken <= 5 * 1024**2
    # a file larger than the cap is refused by its size, before reading
    (tmp_path / "big.json").write_bytes(b" " * (2 * 1024**2))
    one_content(tmp_path, "big.json")
    info = tileset_info(tmp_path, max_file_bytes=1024**2)
    assert any(
        f"big.json: {2 * 1024**2} bytes is more than 1048576 bytes" in e for e in info["errors"]
    )
    # multi-member gzip: every member inflated, the cap counting all of them
    (tmp_path / "two.json").write_bytes(gzip.compress(b'{"a": ') + gzip.compress(b"1}"))
    ts = open_tileset(tmp_path)
    assert bytes(ts.source.read("two.json")) == b'{"a": 1}'


# ---------------------------------------------------------------- exit codes
def test_escaping_uri_exits_1_and_0_with_lenient(tmp_path: Path) -> None:
    root = tmp_path / "ts"
    one_content(root, "../outside.b3dm")
    (tmp_path / "outside.b3dm").write_bytes(b"secret")
    r, _ = run_info(str(root))
    assert r.returncode == 1
    assert "points outside the tileset folder" in r.stdout and "  - error: " in r.stdout
    (line,) = error_lines(r)
    assert line.startswith("twin: error: ") and "1 problem(s) of error severity" in line
    r, _ = run_info(str(root), "--lenient")
    assert r.returncode == 0 and error_lines(r) == []
    assert "points outside the tileset folder" in r.stdout


def test_cycle_of_external_tilesets_exits_1_and_0_with_lenient(tmp_path: Path) -> None:
    link = {"boundingVolume": BOX, "geometricError": 1, "content": {"uri": "b.json"}}
    write_tileset(tmp_path, link)
    write_tileset(tmp_path, {**link, "content": {"uri": "tileset.json"}}, "b.json")
    r, _ = run_info(str(tmp_path), "--json")
    assert r.returncode == 1
    (err,) = json.loads(r.stdout)["errors"]
    assert "cycle of external tilesets: tileset.json -> b.json -> tileset.json" in err
    r, _ = run_info(str(tmp_path), "--json", "--lenient")
    assert r.returncode == 0 and json.loads(r.stdout)["errors"] == [err]


def test_warnings_alone_exit_0(tmp_path: Path) -> None:
    one_content(tmp_path)
    (tmp_path / "a.glb").write_bytes(triangles_glb(3))
    r, _ = run_info(str(tmp_path), "--json")
    info = json.loads(r.stdout)
    assert r.returncode == 0, r.stderr
    assert info["errors"] == [] and any("earth's centre" in p for p in info["problems"])


# ---------------------------------------------------------------- .3dtiles packages
def pack_3dtiles(folder: Path, package: Path, compress: bool = False) -> None:
    """A 3D Tiles package: every file of `folder` in media(key, content), keys relative."""
    db = sqlite3.connect(package)
    try:
        db.execute("CREATE TABLE media (key TEXT PRIMARY KEY, content BLOB)")
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                data = f.read_bytes()
                db.execute(
                    "INSERT INTO media VALUES (?, ?)",
                    (f.relative_to(folder).as_posix(), gzip.compress(data) if compress else data),
                )
        db.commit()
    finally:
        db.close()


SUMMARY = ("tiles", "depth", "contents", "triangles", "points", "features", "textures", "region")


@pytest.mark.parametrize("compress", [False, True])
def test_3dtiles_package_reads_like_its_folder(tmp_path: Path, compress: bool) -> None:
    sample = SAMPLES / "TilesetWithTreeBillboards"
    if not sample.exists():
        pytest.skip(f"3D Tiles samples not found at {SAMPLES} (../shared/data absent)")
    package = tmp_path / "trees.3dtiles"
    pack_3dtiles(sample, package, compress)
    folder, packed = tileset_info(sample), tileset_info(package)
    assert {k: packed[k] for k in SUMMARY} == {k: folder[k] for k in SUMMARY}
    assert packed["triangles"] > 0 and packed["errors"] == folder["errors"] == []
    assert packed["path"] == f"{package}!tileset.json"
    r, _ = run_info(str(package))
    assert r.returncode == 0, r.stderr


def test_broken_3dtiles_packages_say_what_is_wrong(tmp_path: Path) -> None:
    not_sqlite = tmp_path / "text.3dtiles"
    not_sqlite.write_text("{}", encoding="utf-8")
    with pytest.raises(DataError, match=r"text\.3dtiles: not a readable 3D Tiles package"):
        open_tileset(not_sqlite)
    other = tmp_path / "other.3dtiles"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE things (a)")
    db.commit()
    db.close()
    with pytest.raises(DataError, match=r"table media\(key, content\)\): no such table: media"):
        open_tileset(other)
    empty = tmp_path / "empty.3dtiles"
    pack_3dtiles(tmp_path / "nothing", empty)
    with pytest.raises(DataError, match="package has no tileset.json in its media table"):
        open_tileset(empty)
    # a package's content is capped and refused by its size like a file's
    src = tmp_path / "src"
    one_content(src, "a.b3dm")
    gzip_zeros(src / "a.b3dm", 16 * 1024**2)
    pack_3dtiles(src, tmp_path / "bomb.3dtiles")
    info = tileset_info(tmp_path / "bomb.3dtiles", max_file_bytes=1024**2)
    (err,) = info["errors"]
    assert "bomb.3dtiles!a.b3dm: gzip data inflates to more than 1048576 bytes" in err


def test_3tz_members_are_capped(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.3tz"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("tileset.json", one_content(tmp_path).read_bytes())
        z.writestr("a.glb", bytes(16 * 1024**2))
    assert archive.stat().st_size < 1024**2
    info = tileset_info(archive, max_file_bytes=1024**2)
    (err,) = info["errors"]
    assert f"bomb.3tz!a.glb: {16 * 1024**2} bytes is more than 1048576 bytes" in err
