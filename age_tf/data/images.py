"""Checks that face images decode and computes the fingerprints used to find duplicates."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import stat
import time
import warnings

import numpy as np
from absl import logging
from PIL import Image

from age_tf import parallel, progress

# Side of the grayscale thumbnail kept per image: the near-duplicate check compares these.
THUMB_SIZE = 16

# Fewer images than this are checked in-process (see check_images).
PARALLEL_MIN_IMAGES = 5000

# Decompression-bomb guard: the release's largest crops are a few thousand pixels a side.
Image.MAX_IMAGE_PIXELS = 50_000_000

# A face image, even a large photo's JPEG, is a few MB; a bigger "image" is not one, and is
# refused before a byte is read (a 50 GB sparse file, a link to /dev/zero).
MAX_IMAGE_FILE_BYTES = 128 << 20


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def file_problem(path: str, root: str | None = None,
                 max_bytes: int = MAX_IMAGE_FILE_BYTES) -> str:
    """Why `path` must not be opened as an image ('' when it may): missing, a link to
    nothing, resolving outside `root` (a release's folder), not a regular file (a FIFO
    would block the reader forever, a device never ends), or larger than max_bytes.
    Looks at the file system only; never opens the file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing file"
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        return f"unreadable file name or entry ({getattr(e, 'strerror', None) or e})"
    real = os.path.realpath(path)
    if stat.S_ISLNK(st.st_mode) and not os.path.exists(real):
        return "a link to nothing (a dangling symbolic link)"
    if root is not None and not _inside(real, os.path.realpath(root)):
        return f"resolves outside the images folder (to {real}): not read"
    try:
        st = os.stat(path)
    except OSError as e:
        return f"unreadable file ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, device or folder): not read"
    if st.st_size > max_bytes:
        return (f"too large for an image file ({st.st_size / 2**20:,.0f} MB > "
                f"{max_bytes >> 20} MB): not read")
    return ""


@dataclasses.dataclass
class ImageInfo:
    """What one image check found.

    Attributes:
      ok: the image is usable for training.
      reason: why it is not usable ('' when ok).
      width, height: decoded size in pixels (0 when it did not decode).
      image_format: 'jpeg', 'png', ... as detected from the bytes, not the file name.
      mode: PIL mode of the stored image ('RGB', 'L', 'CMYK', ...).
      sha256: hex digest of the file bytes ('' when unreadable).
      dhash: 64-bit difference hash of the grayscale image (0 when it did not decode).
      thumb: THUMB_SIZE**2 uint8 grayscale thumbnail (None when it did not decode).
    """

    ok: bool
    reason: str = ""
    width: int = 0
    height: int = 0
    image_format: str = ""
    mode: str = ""
    sha256: str = ""
    dhash: int = 0
    thumb: np.ndarray | None = None

    @property
    def conversion(self) -> str:
        """What the training pipeline must convert, '' for plain RGB JPEG."""
        notes = []
        if self.image_format and self.image_format != "jpeg":
            notes.append(f"{self.image_format}-bytes")
        if self.mode and self.mode != "RGB":
            notes.append({"L": "grayscale", "CMYK": "cmyk"}.get(self.mode, self.mode.lower()))
        return "+".join(notes)


def dhash_from_gray(gray: Image.Image) -> int:
    """64-bit difference hash: sign of horizontal gradients on a 9x8 grayscale copy."""
    small = np.asarray(gray.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(np.packbits(bits).view(">u8")[0])


def check_image(path: str, min_size: int, root: str | None = None) -> ImageInfo:
    """Opens, fully decodes and fingerprints one image file.

    Args:
      path: absolute path of the file.
      min_size: smallest acceptable width and height in pixels.
      root: the folder the file must resolve inside (file_problem).

    Returns:
      An ImageInfo; never raises for a bad file (the reason says what is wrong).
    """
    problem = file_problem(path, root)
    if problem:
        return ImageInfo(ok=False, reason=problem)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_IMAGE_FILE_BYTES + 1)
    except FileNotFoundError:
        return ImageInfo(ok=False, reason="missing file")
    except OSError as e:
        return ImageInfo(ok=False, reason=f"unreadable file ({e.strerror or e})")
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return ImageInfo(ok=False, reason="empty file", sha256=digest)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = (img.format or "").lower()
            mode = img.mode
            # load() decodes every byte: a truncated JPEG fails here ("image file is truncated").
            img.load()
    except Exception as e:  # PIL raises many types; every one means "does not decode".
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        reason = "truncated file" if "truncated" in text.lower() else f"does not decode ({text})"
        return ImageInfo(ok=False, reason=reason, sha256=digest)
    width, height = img.size
    info = ImageInfo(
        ok=True, width=width, height=height, image_format=fmt, mode=mode, sha256=digest
    )
    if fmt not in ("jpeg", "png"):
        # The training pipeline decodes JPEG and PNG only.
        info.ok, info.reason = False, f"unsupported format ({fmt or 'unknown'})"
        return info
    if width < min_size or height < min_size:
        info.ok, info.reason = False, f"too small ({width}x{height} < {min_size}px)"
        return info
    gray = img.convert("L")
    info.dhash = dhash_from_gray(gray)
    info.thumb = np.asarray(
        gray.resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX), dtype=np.uint8
    ).reshape(-1)
    return info


def _check_chunk(args):
    paths, min_size, root = args
    return [check_image(p, min_size, root) for p in paths]


def check_images(
    paths: list[str], min_size: int, workers: int | None = None, chunk_size: int = 128,
    root: str | None = None,
) -> list[ImageInfo]:
    """Checks many images in parallel worker processes, showing progress.

    Args:
      paths: absolute file paths.
      min_size: smallest acceptable width and height.
      workers: process count (default: all cores); 1 runs in this process.
      chunk_size: paths per task; large enough to amortise inter-process traffic.
      root: the folder every file must resolve inside (links out of it are not followed).

    Returns:
      One ImageInfo per path, in order.
    """
    workers = workers or os.cpu_count() or 1
    chunks = parallel.chunked(paths, chunk_size)
    # Starting a spawned worker costs ~0.8 s (imports); below a few thousand small crops one
    # process is faster.
    if len(paths) < PARALLEL_MIN_IMAGES:
        workers = 1
    with progress.Bar(len(paths), "checking images") as bar:
        results = parallel.map_in_processes(_check_chunk, [(c, min_size, root) for c in chunks],
                                            workers, on_done=lambda i: bar.update(len(chunks[i])))
    logging.info("checked %d images in %.1fs", len(paths), time.monotonic() - bar.start)
    return [info for chunk in results for info in chunk]


def file_stamp(path: str) -> tuple[int, int]:
    """(size, modification time in ns) of a file, a cheap stand-in for its bytes; (-1, -1)
    when it cannot be read."""
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def save_fingerprints(out: str, rel_paths: list[str], infos: list[ImageInfo], root: str) -> None:
    """Writes what check_images found for these images (dHash, thumbnail, file stamp), so
    that later stages (the audit) reuse it instead of reading every image again."""
    stamps = np.array([file_stamp(os.path.join(root, p)) for p in rel_paths], np.int64).reshape(-1, 2)
    thumbs = np.stack([i.thumb for i in infos]) if infos else np.zeros((0, THUMB_SIZE ** 2), np.uint8)
    with open(out, "wb") as f:
        np.savez(f, path=np.array(rel_paths, dtype=str), dhash=np.array([i.dhash for i in infos], np.uint64),
                 thumb=thumbs, stamp=stamps)


def fingerprints(rel_paths: list[str], root: str, stored: str | None = None,
                 workers: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ok, dhash, thumbs) for these images, from `stored` (save_fingerprints) where the file
    is unchanged (same size and modification time), from check_images for the rest.

    Returns:
      ok: bool [N], the image decoded; dhash: uint64 [N]; thumbs: uint8 [N, THUMB_SIZE**2].
    """
    n = len(rel_paths)
    ok = np.zeros(n, bool)
    dhash = np.zeros(n, np.uint64)
    thumbs = np.zeros((n, THUMB_SIZE ** 2), np.uint8)
    todo = np.arange(n)
    if stored and os.path.exists(stored):
        with np.load(stored) as f:
            index = {p: k for k, p in enumerate(f["path"].tolist())}
            s_hash, s_thumb, s_stamp = f["dhash"], f["thumb"], f["stamp"]
        k = np.array([index.get(p, -1) for p in rel_paths], np.int64)
        stamps = np.array([file_stamp(os.path.join(root, p)) for p in rel_paths], np.int64).reshape(-1, 2)
        hit = k >= 0
        hit[hit] = np.all(s_stamp[k[hit]] == stamps[hit], axis=1)
        ok[hit], dhash[hit], thumbs[hit] = True, s_hash[k[hit]], s_thumb[k[hit]]
        todo = np.flatnonzero(~hit)
        logging.info("fingerprints: %d of %d reused from %s", int(hit.sum()), n, stored)
    if len(todo):
        infos = check_images([os.path.join(root, rel_paths[i]) for i in todo], 1, workers, root=root)
        for i, info in zip(todo, infos):
            if info.ok:
                ok[i], dhash[i], thumbs[i] = True, info.dhash, info.thumb
    return ok, dhash, thumbs
