"""Image-folder datasets on tiny generated folders: decoding, cache, splits, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from squeezr import imagefolder
from squeezr.data import load_dataset
from squeezr.dbx.errors import UserError

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def make_folder(root, train_per_class=12, val_per_class=2, classes=("cat", "dog", "emu")):
    """Images of random sizes and formats, each class a noisy solid colour."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                w, h = int(rng.integers(20, 60)), int(rng.integers(20, 60))
                pixels = np.clip(rng.normal(COLOURS[c], 10, (h, w, 3)), 0, 255).astype(np.uint8)
                ext = ".png" if k % 2 else ".JPEG"
                Image.fromarray(pixels).save(folder / f"img{k:03d}{ext}")
    return root


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZR_DATA", str(tmp_path / "cache"))
    return make_folder(tmp_path / "images")


def test_loads_splits_like_cifar(folder):
    splits = load_dataset("imagefolder", data_dir=folder, resolution=16)
    assert splits.num_classes == 3
    assert splits.train.x.shape == (33, 3, 16, 16) and splits.train.x.dtype == torch.uint8
    assert len(splits.val) == 3 and len(splits.test) == 6 and splits.prune is None
    assert sorted(splits.test.y.tolist()) == [0, 0, 1, 1, 2, 2]
    # Every image is its class's colour: labels and pixels stay together.
    for split in (splits.train, splits.val, splits.test):
        means = split.x.float().mean(dim=(2, 3))
        assert (means.argmax(1) == split.y).all()
    # The hold-outs mix the classes (files are ordered by a hash of their path).
    assert len(set(splits.train.y[:12].tolist())) == 3
    with_prune = load_dataset("imagefolder", data_dir=folder, resolution=16, pruning_set=True)
    assert torch.equal(with_prune.val.x, splits.val.x)
    assert len(with_prune.prune) == 3 and len(with_prune.train) == 30
    assert torch.equal(with_prune.prune.x, splits.train.x[:3])


def test_decoded_once_into_a_memory_mapped_cache(folder, tmp_path, monkeypatch):
    first = load_dataset("imagefolder", data_dir=folder, resolution=16)
    cached = sorted((tmp_path / "cache" / "imagefolder-cache").iterdir())
    assert [p.name.split("-")[:2] for p in cached] == [["train", "16"], ["val", "16"]]
    assert sum(p.stat().st_size for p in cached) > (36 + 6) * 3 * 16 * 16

    def no_decoding(path, resolution):
        raise AssertionError("decoded again")

    monkeypatch.setattr(imagefolder, "_decode", no_decoding)
    again = load_dataset("imagefolder", data_dir=folder, resolution=16)
    assert torch.equal(again.train.x, first.train.x) and torch.equal(again.test.y, first.test.y)
    assert again.mean == first.mean
    # A changed folder is decoded again (and another resolution has its own cache).
    os.utime(folder / "val" / "cat" / "img000.JPEG", ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset("imagefolder", data_dir=folder, resolution=16)


def test_resize_shorter_side_then_centre_crop(tmp_path):
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, :40] = (255, 0, 0)  # left half red, right half blue
    image[:, 40:] = (0, 0, 255)
    Image.fromarray(image).save(tmp_path / "wide.png")
    pixels = imagefolder._decode(tmp_path / "wide.png", 16)
    assert pixels.shape == (3, 16, 16)
    # 40 -> 18 pixels high, 80 -> 36 wide; the central 16 columns split at the middle.
    assert pixels[0, 8, 0] == 255 and pixels[2, 8, 0] == 0
    assert pixels[2, 8, 15] == 255 and pixels[0, 8, 15] == 0


def test_bad_folders_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZR_DATA", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="needs --data-dir"):
        load_dataset("imagefolder")
    with pytest.raises(UserError, match="has no train/ folder"):
        load_dataset("imagefolder", data_dir=tmp_path)
    root = make_folder(tmp_path / "a", train_per_class=10)
    (root / "val" / "yak").mkdir()
    with pytest.raises(UserError, match="classes that train/ lacks: yak"):
        load_dataset("imagefolder", data_dir=root)
    (root / "val" / "yak").rmdir()
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"cannot decode .*broken\.jpg"):
        load_dataset("imagefolder", data_dir=root, resolution=8)
    with pytest.raises(UserError, match="resolution must be a whole number >= 8"):
        load_dataset("imagefolder", data_dir=root, resolution=4)
