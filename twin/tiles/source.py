"""Where tileset files come from (a folder, a 3TZ archive, a .3dtiles package or an http base), with
every URI confined to it and every read capped.

A tileset may only reach files below its own root: `../` escapes, absolute paths, foreign URLs and
symlinks pointing out of the root folder are refused with a DataError naming the file and the URI.
Only regular files are read (FIFOs, devices and sockets are refused before they are read from).
Each file is read in chunks with two caps checked while streaming: the bytes read and, for gzip
(recognised by its magic, as served by many tilers), the bytes it inflates to.
"""

from __future__ import annotations

import os
import posixpath
import sqlite3
import stat
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from twin.errors import DataError

# Largest single file read (tileset JSON, content, subtree, buffer, image) before inflating.
MAX_FILE_BYTES = 512 * 1024**2
# Largest file after gzip inflation: guards against decompression bombs (KBs inflating to GBs).
MAX_INFLATED_BYTES = 512 * 1024**2
_CHUNK = 1024**2  # bytes read, and at most inflated, per step

_GZIP_MAGIC = b"\x1f\x8b"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _chunks(stream: BinaryIO, name: str, max_read: int) -> Iterator[bytes]:
    """Chunks of `stream` until its end; DataError once more than `max_read` bytes came."""
    total = 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
        if total > max_read:
            raise DataError(f"{name}: more than {max_read} bytes (the limit for one file); refused")
        yield chunk


def _inflate(chunks: Iterator[bytes], name: str, max_inflated: int) -> bytearray:
    """Gzip data (one or more members) inflated, refused as soon as it passes `max_inflated`."""
    out = bytearray()
    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in chunks:
        data = chunk
        while data:
            if dec.eof:  # the next member of a multi-member file, or padding
                if not data.strip(b"\x00"):
                    break
                dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out += dec.decompress(data, min(max_inflated + 1 - len(out), _CHUNK))
            except zlib.error as exc:
                raise DataError(f"{name}: gzip data is corrupt ({exc})") from exc
            if len(out) > max_inflated:
                raise DataError(
                    f"{name}: gzip data inflates to more than {max_inflated} bytes "
                    "(the limit for one file); refused"
                )
            data = dec.unconsumed_tail or (dec.unused_data if dec.eof else b"")
    if not dec.eof:
        raise DataError(f"{name}: gzip data is truncated")
    return out


def read_capped(
    stream: BinaryIO,
    name: str,
    max_read: int = MAX_FILE_BYTES,
    max_inflated: int = MAX_INFLATED_BYTES,
) -> bytes | bytearray:
    """All bytes of `stream`, gzip inflated, with both caps checked while reading (no file is
    held whole before it is known to fit)."""
    chunks = _chunks(stream, name, max_read)
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= len(_GZIP_MAGIC):
            break
    if head.startswith(_GZIP_MAGIC):
        return _inflate(_prepend(head, chunks), name, max_inflated)
    out = bytearray(head)
    for chunk in chunks:
        out += chunk
    return out


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def inflate_if_gzip(
    data: bytes | bytearray, name: str, max_inflated: int = MAX_INFLATED_BYTES
) -> bytes | bytearray:
    """Return `data` inflated when it starts with the gzip magic, else unchanged (capped size)."""
    if not data.startswith(_GZIP_MAGIC):
        return data
    mv = memoryview(data)
    return _inflate(
        (bytes(mv[k : k + _CHUNK]) for k in range(0, len(mv), _CHUNK)), name, max_inflated
    )


def require_regular(path: Path, shown: str | None = None) -> os.stat_result:
    """The stat of `path` if it is a regular file; DataError naming what it is otherwise."""
    shown = shown or str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise DataError(f"{shown}: file not found") from exc
    except OSError as exc:
        raise DataError(f"{shown}: cannot be read ({exc.strerror})") from exc
    _check_kind(st, shown)
    return st


def _check_kind(st: os.stat_result, shown: str) -> None:
    if stat.S_ISREG(st.st_mode):
        return
    for test, kind in _FILE_KINDS:
        if test(st.st_mode):
            expected = "expected a file" if kind == "a folder" else "only regular files are read"
            raise DataError(f"{shown}: is {kind}, {expected}; refused")
    raise DataError(f"{shown}: is not a regular file; refused")


def read_regular_file(
    path: Path, shown: str, max_read: int = MAX_FILE_BYTES, max_inflated: int = MAX_INFLATED_BYTES
) -> bytes | bytearray:
    """Bytes of the regular file at `path` (gzip inflated), capped. The type is checked before
    opening and again on the open descriptor (opened non-blocking, so a FIFO swapped in between
    cannot block), and a size over the cap is refused before reading."""
    require_regular(path, shown)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DataError(f"{shown}: cannot be read ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        _check_kind(st, shown)
        if st.st_size > max_read:
            raise DataError(
                f"{shown}: {st.st_size} bytes is more than {max_read} bytes (the limit for one "
                "file); refused"
            )
        try:
            return read_capped(f, shown, max_read, max_inflated)
        except OSError as exc:
            raise DataError(f"{shown}: cannot be read ({exc.strerror})") from exc


class Source:
    """Base for tileset file access: `resolve` a URI against a file, then `read` it by key.

    Keys are normalised POSIX paths relative to the root ("city/tileset.json"). Every read is
    capped at `max_read` bytes read and `max_inflated` bytes after gzip inflation.
    """

    root_name: str = ""
    max_read: int = MAX_FILE_BYTES
    max_inflated: int = MAX_INFLATED_BYTES

    def resolve(self, base_key: str, uri: object, what: str = "uri") -> str:
        """The key of `uri` seen from file `base_key`; DataError if it leaves the root."""
        if not isinstance(uri, str) or not uri.strip():
            raise DataError(
                f"{self.display(base_key)}: {what} must be a non-empty string, got {uri!r}"
            )
        parts = urllib.parse.urlsplit(uri)
        if parts.scheme and len(parts.scheme) > 1:
            return self._resolve_absolute_url(base_key, uri, parts, what)
        if parts.scheme:  # a drive letter such as C:\...
            raise DataError(
                f"{self.display(base_key)}: {what} {uri!r} is an absolute path; URIs must be relative "
                f"to the tileset folder {self.root_name}"
            )
        path = urllib.parse.unquote(parts.path).replace("\\", "/")
        if path.startswith("/"):
            raise DataError(
                f"{self.display(base_key)}: {what} {uri!r} is an absolute path; URIs must be relative "
                f"to the tileset folder {self.root_name}"
            )
        if "\x00" in path:
            raise DataError(f"{self.display(base_key)}: {what} {uri!r} contains a NUL character")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(base_key), path))
        if joined in (".", "") or joined == ".." or joined.startswith("../"):
            raise DataError(
                f"{self.display(base_key)}: {what} {uri!r} points outside the tileset folder "
                f"{self.root_name}; refused"
            )
        return self._with_query(joined, parts.query)

    def _with_query(self, key: str, query: str) -> str:
        return key

    def _resolve_absolute_url(self, base_key: str, uri: str, parts, what: str) -> str:
        raise DataError(
            f"{self.display(base_key)}: {what} {uri!r} is an absolute URL; a local tileset may only "
            f"refer to files below its folder {self.root_name}"
        )

    def read(self, key: str) -> bytes | bytearray:
        """Raw bytes of file `key` (gzip inflated)."""
        raise NotImplementedError

    def display(self, key: str) -> str:
        """A name for messages: the file's path or URL."""
        raise NotImplementedError

    def _too_big(self, key: str, size: int) -> DataError:
        return DataError(
            f"{self.display(key)}: {size} bytes is more than {self.max_read} bytes (the limit for "
            "one file); refused"
        )


class FolderSource(Source):
    """Files below a local folder; symlinks resolving outside it and non-regular files are
    refused."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.root_name = str(self.root)

    def display(self, key: str) -> str:
        """A name for messages: the file path or URL of `key`."""
        return str(self.root / key)

    def _path(self, key: str) -> Path:
        path = self.root / key
        real = os.path.realpath(path)
        if os.path.commonpath([real, str(self.root)]) != str(self.root):
            raise DataError(
                f"{path}: resolves (through a symlink) to {real}, outside the tileset folder "
                f"{self.root}; refused"
            )
        return Path(real)

    def read(self, key: str) -> bytes | bytearray:
        """Bytes of file `key` (gzip inflated)."""
        return read_regular_file(
            self._path(key), self.display(key), self.max_read, self.max_inflated
        )

    def size(self, key: str) -> int:
        """Size in bytes on disk (not inflated)."""
        return require_regular(self._path(key), self.display(key)).st_size


class ArchiveSource(Source):
    """Files inside a 3TZ archive (a ZIP with tileset.json at its top)."""

    def __init__(self, archive: Path) -> None:
        self.archive = Path(archive)
        self.root_name = str(self.archive)
        try:
            self.zip = zipfile.ZipFile(self.archive)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{self.archive}: not a readable 3TZ (ZIP) archive ({exc})") from exc
        self.members = {info.filename: info for info in self.zip.infolist()}

    def display(self, key: str) -> str:
        """A name for messages: the file path or URL of `key`."""
        return f"{self.archive}!{key}"

    def read(self, key: str) -> bytes | bytearray:
        """Bytes of file `key` (gzip inflated); the archive's size claims are not trusted, the
        bytes really inflated are counted."""
        info = self.members.get(key)
        if info is None:
            raise DataError(f"{self.display(key)}: file not found in the archive")
        if info.file_size > self.max_read:
            raise self._too_big(key, info.file_size)
        try:
            with self.zip.open(info) as f:
                return read_capped(f, self.display(key), self.max_read, self.max_inflated)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise DataError(
                f"{self.display(key)}: cannot be read from the archive ({exc})"
            ) from exc


class PackageSource(Source):
    """Files inside a 3D Tiles package (.3dtiles): an SQLite database whose table
    `media(key TEXT, content BLOB)` holds each file by its relative path (content possibly
    gzip-compressed), `tileset.json` among them. Opened read-only; blobs are streamed."""

    def __init__(self, package: Path) -> None:
        self.package = Path(package)
        self.root_name = str(self.package)
        uri = Path(os.path.abspath(self.package)).as_uri() + "?mode=ro&immutable=1"
        try:
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self.db.execute("SELECT key, content FROM media LIMIT 0")
        except sqlite3.Error as exc:
            raise DataError(
                f"{self.package}: not a readable 3D Tiles package (.3dtiles: an SQLite database "
                f"with a table media(key, content)): {exc}"
            ) from exc

    def display(self, key: str) -> str:
        """A name for messages: the package path and the key."""
        return f"{self.package}!{key}"

    def has(self, key: str) -> bool:
        """True when the package holds `key`."""
        return self._row(key) is not None

    def _row(self, key: str) -> tuple | None:
        try:
            return self.db.execute(
                "SELECT rowid, typeof(content), length(content) FROM media WHERE key = ? LIMIT 1",
                (key,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise DataError(
                f"{self.display(key)}: cannot be read from the package ({exc})"
            ) from exc

    def read(self, key: str) -> bytes | bytearray:
        """Bytes of file `key` (gzip inflated), streamed out of the database."""
        shown = self.display(key)
        row = self._row(key)
        if row is None:
            raise DataError(f"{shown}: file not found in the package")
        rowid, kind, size = row
        if kind not in ("blob", "text"):
            raise DataError(f"{shown}: media.content is {kind}, expected a BLOB")
        if size > self.max_read:
            raise self._too_big(key, size)
        try:
            if kind == "blob":
                with self.db.blobopen("media", "content", rowid, readonly=True) as blob:
                    return read_capped(blob, shown, self.max_read, self.max_inflated)
            (text,) = self.db.execute(
                "SELECT content FROM media WHERE rowid = ?", (rowid,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise DataError(f"{shown}: cannot be read from the package ({exc})") from exc
        data = text.encode("utf-8")
        if len(data) > self.max_read:
            raise self._too_big(key, len(data))
        return data


class HttpSource(Source):
    """Files below an http(s) base URL (the folder of the tileset.json URL)."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url)
        base_path = parts.path.rsplit("/", 1)[0] + "/"
        self.base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, base_path, "", ""))
        self.root_name = self.base
        self.timeout_s = timeout_s

    def display(self, key: str) -> str:
        """A name for messages: the file path or URL of `key`."""
        return self.base + key

    def _with_query(self, key: str, query: str) -> str:
        return f"{key}?{query}" if query else key

    def _resolve_absolute_url(self, base_key: str, uri: str, parts, what: str) -> str:
        if parts.scheme not in ("http", "https") or not uri.startswith(self.base):
            raise DataError(
                f"{self.display(base_key)}: {what} {uri!r} is outside the tileset base {self.base}; "
                "refused"
            )
        return self.resolve("", uri[len(self.base) :], what)

    def read(self, key: str) -> bytes | bytearray:
        """Bytes of file `key` (gzip inflated), streamed with both caps."""
        url = self.display(key)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:  # noqa: S310
                return read_capped(response, url, self.max_read, self.max_inflated)
        except OSError as exc:
            raise DataError(f"{url}: cannot be fetched ({exc})") from exc


def open_source(
    location: str | os.PathLike, *, max_file_bytes: int | None = None
) -> tuple[Source, str]:
    """The source holding a tileset and the key of its tileset JSON.

    `location` is a tileset JSON file, a folder holding tileset.json, a .3tz archive, a .3dtiles
    package or an http(s) URL. `max_file_bytes` replaces both per-file caps (MAX_FILE_BYTES read,
    MAX_INFLATED_BYTES inflated).
    """
    src, key = _open_source(location)
    if max_file_bytes is not None:
        src.max_read = src.max_inflated = int(max_file_bytes)
    return src, key


def _open_source(location: str | os.PathLike) -> tuple[Source, str]:
    text = os.fspath(location)
    if text.startswith(("http://", "https://")):
        src = HttpSource(text)
        return src, urllib.parse.urlsplit(text).path.rsplit("/", 1)[-1] or "tileset.json"
    path = Path(text)
    if path.is_dir():
        path = path / "tileset.json"
    if not os.path.lexists(path):
        raise DataError(f"{path}: tileset not found")
    if not path.exists():
        raise DataError(f"{path}: tileset not found (a broken symlink)")
    require_regular(path)
    suffix = path.suffix.lower()
    if suffix == ".3dtiles" or (suffix != ".3tz" and _starts_with(path, _SQLITE_MAGIC)):
        pkg = PackageSource(path)
        if not pkg.has("tileset.json"):
            raise DataError(f"{path}: 3D Tiles package has no tileset.json in its media table")
        return pkg, "tileset.json"
    if suffix == ".3tz" or zipfile.is_zipfile(path):
        src = ArchiveSource(path)
        if "tileset.json" not in src.members:
            raise DataError(f"{path}: 3TZ archive has no tileset.json at its top")
        return src, "tileset.json"
    return FolderSource(path.parent), path.name


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False
