"""Where tileset files come from (a folder, a 3TZ archive or an http base), with every URI confined to it.

A tileset may only reach files below its own root: `../` escapes, absolute paths, foreign URLs and
symlinks pointing out of the root folder are refused with a DataError naming the file and the URI.
Gzip-compressed files (as served by many tilers) are recognised by their magic and inflated with a cap.
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

from twin.errors import DataError

# Largest file we inflate from gzip: guards against decompression bombs (a few KB inflating to GBs).
MAX_INFLATED_BYTES = 2 * 1024**3
# Largest single file read over http or out of a 3TZ archive.
MAX_FILE_BYTES = 4 * 1024**3

_GZIP_MAGIC = b"\x1f\x8b"


def inflate_if_gzip(data: bytes, name: str) -> bytes:
    """Return `data` inflated when it starts with the gzip magic, else unchanged (capped size)."""
    if not data.startswith(_GZIP_MAGIC):
        return data
    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = dec.decompress(data, MAX_INFLATED_BYTES + 1)
    except zlib.error as exc:
        raise DataError(f"{name}: gzip data is corrupt ({exc})") from exc
    if len(out) > MAX_INFLATED_BYTES or dec.unconsumed_tail:
        raise DataError(
            f"{name}: gzip data inflates to more than {MAX_INFLATED_BYTES} bytes; refused"
        )
    if not dec.eof:
        raise DataError(f"{name}: gzip data is truncated")
    return out


class Source:
    """Base for tileset file access: `resolve` a URI against a file, then `read` it by key.

    Keys are normalised POSIX paths relative to the root ("city/tileset.json").
    """

    root_name: str = ""

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

    def read(self, key: str) -> bytes:
        """Raw bytes of file `key` (gzip inflated)."""
        raise NotImplementedError

    def display(self, key: str) -> str:
        """A name for messages: the file's path or URL."""
        raise NotImplementedError


class FolderSource(Source):
    """Files below a local folder; symlinks resolving outside it are refused."""

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

    def read(self, key: str) -> bytes:
        """Bytes of file `key` (gzip inflated)."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise DataError(f"{self.display(key)}: file not found") from exc
        except IsADirectoryError as exc:
            raise DataError(f"{self.display(key)}: is a folder, expected a file") from exc
        except OSError as exc:
            raise DataError(f"{self.display(key)}: cannot be read ({exc.strerror})") from exc
        return inflate_if_gzip(data, self.display(key))

    def size(self, key: str) -> int:
        """Size in bytes on disk (not inflated)."""
        return self._path(key).stat().st_size


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

    def read(self, key: str) -> bytes:
        """Bytes of file `key` (gzip inflated)."""
        info = self.members.get(key)
        if info is None:
            raise DataError(f"{self.display(key)}: file not found in the archive")
        if info.file_size > MAX_FILE_BYTES:
            raise DataError(f"{self.display(key)}: {info.file_size} bytes is more than allowed")
        try:
            data = self.zip.read(info)
        except (zipfile.BadZipFile, zlib.error, OSError) as exc:
            raise DataError(
                f"{self.display(key)}: cannot be read from the archive ({exc})"
            ) from exc
        return inflate_if_gzip(data, self.display(key))


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

    def read(self, key: str) -> bytes:
        """Bytes of file `key` (gzip inflated)."""
        url = self.display(key)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:  # noqa: S310
                data = response.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise DataError(f"{url}: cannot be fetched ({exc})") from exc
        if len(data) > MAX_FILE_BYTES:
            raise DataError(f"{url}: more than {MAX_FILE_BYTES} bytes; refused")
        return inflate_if_gzip(data, url)


def open_source(location: str | os.PathLike) -> tuple[Source, str]:
    """The source holding a tileset and the key of its tileset JSON.

    `location` is a tileset JSON file, a folder holding tileset.json, a .3tz archive or an http(s) URL.
    """
    text = os.fspath(location)
    if text.startswith(("http://", "https://")):
        src = HttpSource(text)
        return src, urllib.parse.urlsplit(text).path.rsplit("/", 1)[-1] or "tileset.json"
    path = Path(text)
    if path.is_dir():
        path = path / "tileset.json"
    if not path.exists():
        raise DataError(f"{path}: tileset not found")
    if path.suffix.lower() == ".3tz" or (path.is_file() and zipfile.is_zipfile(path)):
        src = ArchiveSource(path)
        if "tileset.json" not in src.members:
            raise DataError(f"{path}: 3TZ archive has no tileset.json at its top")
        return src, "tileset.json"
    return FolderSource(path.parent), path.name
