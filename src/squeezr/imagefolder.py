"""ImageNet-style image folders (``train/<class>/*``, ``val/<class>/*``) as squeezr datasets.

The trainer, the pruning loop and the saliency methods read images as ``uint8 (N, 3, R, R)``
tensors (:class:`squeezr.data.Split`). ImageNet does not fit in memory as one such tensor
(1.28 M images at 224² are 193 GB), so each split is decoded **once** into a cache file of
raw uint8 pixels and used as a tensor over a *memory map* of that file: indexing a batch
reads only its pages, the operating system keeps what fits in its page cache, and every run
after the first starts at once. The cache costs ``N × 3 × R × R`` bytes of disk (ImageNet at
R = 224: 193 GB train, 7.5 GB val; at R = 128: 63 GB + 2.5 GB) and lives under
``$SQUEEZR_DATA/imagefolder-cache`` (or ``cache_dir``), keyed by the file list (names, sizes,
modification times) and the resolution, so a changed folder is decoded again and the image
folder itself may be read-only. Decoding runs on a thread pool (Pillow releases the GIL).

Every image is decoded to RGB with Pillow, its shorter side resized to ``round(R · 8/7)``
(256 for R = 224) and centre-cropped to R × R: torchvision's evaluation transform, for every
split (training augmentation is the trainer's: pad, crop and flip on the tensors).

Splits follow spec §6 as for CIFAR: the training images are put in a fixed order that mixes
the classes (by SHA-256 of each image's path relative to ``train/``, the same on every
machine and for every seed), then validation = the first 10%, the optional pruning set = the
next 10%, train = the rest; ``val/`` is the test set. ``mean``/``std`` come from at most the
first :data:`STATS_IMAGES` training images.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import atomic_path, make_dirs

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp", ".gif")
DEFAULT_RESOLUTION = 224
STATS_IMAGES = 10_000
CACHE_FORMAT = 1


def _files(folder: Path, classes: Sequence[str] | None) -> tuple[list[str], list[Path], list[int]]:
    """(classes, image files, labels) of ``folder/<class>/*``; ``classes`` fixes the labels
    (the validation folder uses the training folder's)."""
    if not folder.is_dir():
        raise UserError(
            f"{folder} is not a folder; an image folder dataset needs train/ and val/ "
            "folders with one subfolder of images per class"
        )
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise UserError(f"{folder} has classes that train/ lacks: {', '.join(unknown[:5])}")
    files, labels = [], []
    for label, name in enumerate(classes):
        if not (folder / name).is_dir():
            continue
        for path in sorted((folder / name).rglob("*")):
            if path.suffix.lower() in EXTENSIONS and path.is_file():
                files.append(path)
                labels.append(label)
    if not files:
        raise UserError(f"{folder} holds no images ({', '.join(EXTENSIONS[:3])}, ...)")
    return list(classes), files, labels


def _cache_key(root: Path, files: Sequence[Path], resolution: int) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{resolution}:{root.resolve()}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"\n{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _decode(path: Path, resolution: int) -> np.ndarray:
    """One image as uint8 (3, R, R): RGB, shorter side to round(R·8/7), centre crop R×R."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            w, h = image.size
            short = round(resolution * 8 / 7)
            scale = short / min(w, h)
            size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
            image = image.resize(size, Image.Resampling.BILINEAR)
            left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
            image = image.crop((left, top, left + resolution, top + resolution))
            return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UserError(f"cannot decode {path}: {exc}; remove or replace the file") from None


def _cached_pixels(
    root: Path, files: Sequence[Path], resolution: int, cache_dir: Path, workers: int
) -> torch.Tensor:
    """uint8 (N, 3, R, R) of ``files``, as a tensor over a memory-mapped cache file (decoded
    and written atomically on first use)."""
    shape = (len(files), 3, resolution, resolution)
    path = cache_dir / f"{root.name}-{resolution}-{_cache_key(root, files, resolution)}.u8"
    if not path.is_file():
        make_dirs(cache_dir)
        with atomic_path(path, durable=False) as tmp:  # a cache: rebuilt if lost
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for i, pixels in enumerate(pool.map(lambda p: _decode(p, resolution), files)):
                    out[i] = pixels
            out.flush()
            del out
    try:
        pixels = np.load(path, mmap_mode="c")  # copy-on-write: writable, the file never changes
    except (OSError, ValueError) as exc:
        raise UserError(f"image cache {path} is damaged ({exc}); delete it") from None
    if pixels.shape != shape or pixels.dtype != np.uint8:
        raise UserError(f"image cache {path} does not hold {shape} uint8 pixels; delete it")
    return torch.from_numpy(pixels)


def mixed_order(root: Path, files: Sequence[Path]) -> list[int]:
    """Positions of ``files`` sorted by SHA-256 of their path relative to ``root``: a fixed
    order that mixes the classes, the same on every machine."""
    keys = [hashlib.sha256(str(p.relative_to(root).as_posix()).encode()).hexdigest() for p in files]
    return sorted(range(len(files)), key=keys.__getitem__)


def load_imagefolder(
    data_dir: str | os.PathLike[str],
    *,
    resolution: int = DEFAULT_RESOLUTION,
    pruning_set: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
):
    """``data_dir/train`` and ``data_dir/val`` as :class:`squeezr.data.DataSplits` (see the
    module docstring: decoding, cache, splits)."""
    from squeezr.data import Split, default_data_dir, split_dataset

    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise UserError(f"image folder resolution must be a whole number >= 8, got {resolution!r}")
    root = Path(data_dir).expanduser()
    if not (root / "train").is_dir():
        raise UserError(
            f"{root} has no train/ folder; an image folder dataset needs {root}/train/<class>/* "
            f"and {root}/val/<class>/* (ImageNet layout)"
        )
    classes, train_files, train_labels = _files(root / "train", None)
    _, val_files, val_labels = _files(root / "val", classes)
    order = mixed_order(root / "train", train_files)
    train_files = [train_files[i] for i in order]
    train_labels = [train_labels[i] for i in order]
    cache = Path(cache_dir) if cache_dir is not None else default_data_dir() / "imagefolder-cache"
    workers = workers or min(32, os.cpu_count() or 1)
    train = Split(
        _cached_pixels(root / "train", train_files, resolution, cache, workers),
        torch.tensor(train_labels, dtype=torch.int64),
    )
    test = Split(
        _cached_pixels(root / "val", val_files, resolution, cache, workers),
        torch.tensor(val_labels, dtype=torch.int64),
    )
    return split_dataset(
        "imagefolder", len(classes), train, test, pruning_set, stats_images=STATS_IMAGES
    )
