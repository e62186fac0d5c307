"""Datasets: CIFAR files (folder, tarball, checksum, download), digits, synthetic, the split."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from squeezr import data
from squeezr.data import (
    CIFAR_SOURCES,
    Split,
    channel_stats,
    default_data_dir,
    load_dataset,
    split_dataset,
)
from squeezr.dbx.errors import UserError

PER_BATCH = 10  # images per fake batch file: CIFAR-10 gets 5 training batches, CIFAR-100 one


def _batch(n: int, label_key: str, num_classes: int, seed: int) -> dict:
    """A batch in the official format (python-2 pickles load with bytes keys)."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"fake",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key.encode(): [int(v) for v in rng.integers(0, num_classes, n)],
    }


def _write_folder(root: Path, key: str) -> dict[str, dict]:
    source = CIFAR_SOURCES[key]
    folder = root / source.folder
    folder.mkdir(parents=True)
    files = {}
    for seed, name in enumerate((*source.train_files, source.test_file)):
        files[name] = _batch(PER_BATCH, source.label_key, source.num_classes, seed)
        (folder / name).write_bytes(pickle.dumps(files[name]))
    return files


def _write_tarball(root: Path, key: str) -> Path:
    """The fake dataset packed like the official tarball; returns its path."""
    staging = root / "staging"
    _write_folder(staging, key)
    source = CIFAR_SOURCES[key]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(staging / source.folder, arcname=source.folder)
    path = root / source.tarball
    path.write_bytes(buffer.getvalue())
    return path


def _trust(monkeypatch, key: str, path: Path) -> None:
    """Make ``path``'s MD5 the expected one (the real checksums fit only the real files)."""
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(CIFAR_SOURCES, key, dataclasses.replace(CIFAR_SOURCES[key], md5=md5))


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(url, dest, timeout=None):
        raise AssertionError(f"test tried to download {url}")

    monkeypatch.setattr(data, "_download", refuse)


def _all_training_images(files: dict[str, dict], key: str) -> tuple[torch.Tensor, list[int]]:
    """The fake training set in file order: images (N, 3, 32, 32) and labels."""
    source = CIFAR_SOURCES[key]
    data = np.concatenate([files[name][b"data"] for name in source.train_files])
    labels = [v for name in source.train_files for v in files[name][source.label_key.encode()]]
    return torch.from_numpy(data.reshape(-1, 3, 32, 32)), labels


def test_cifar10_folder_loads_in_official_layout_and_splits(tmp_path):
    files = _write_folder(tmp_path, "cifar10")
    splits = load_dataset("cifar10", data_dir=tmp_path)
    first = files["data_batch_1"]
    assert splits.name == "cifar10" and splits.num_classes == 10
    assert (len(splits.val), len(splits.train), len(splits.test)) == (5, 45, 10)
    assert splits.prune is None
    # validation = the FIRST 10% of the training set; rows are R, G, B planes of 32x32
    expected = torch.from_numpy(first[b"data"][:5].reshape(5, 3, 32, 32))
    assert torch.equal(splits.val.x, expected)
    assert splits.val.y.tolist() == first[b"labels"][:5]
    assert torch.equal(splits.val.x[0, 1].flatten(), torch.from_numpy(first[b"data"][0, 1024:2048]))
    assert splits.test.y.tolist() == files["test_batch"][b"labels"]
    assert splits.train.x.dtype == torch.uint8 and splits.train.y.dtype == torch.int64
    assert splits.mean == pytest.approx(channel_stats(splits.train.x)[0])


def test_split_is_by_position_first_10_percent_val_next_10_percent_pruning_set(tmp_path):
    """Spec §6 exactly: images 0..4 of 50 are validation, 5..9 the pruning set, the rest
    (in file order) training; without a pruning set, training starts at image 5."""
    files = _write_folder(tmp_path, "cifar10")
    x, labels = _all_training_images(files, "cifar10")
    assert len(x) == 50
    plain = load_dataset("cifar10", data_dir=tmp_path)
    held = load_dataset("cifar10", data_dir=tmp_path, pruning_set=True)
    assert torch.equal(plain.val.x, x[:5]) and plain.val.y.tolist() == labels[:5]
    assert torch.equal(plain.train.x, x[5:]) and plain.train.y.tolist() == labels[5:]
    assert plain.prune is None
    assert torch.equal(held.val.x, x[:5]) and held.val.y.tolist() == labels[:5]
    assert torch.equal(held.prune.x, x[5:10]) and held.prune.y.tolist() == labels[5:10]
    assert torch.equal(held.train.x, x[10:]) and held.train.y.tolist() == labels[10:]
    assert held.mean == pytest.approx(channel_stats(x[10:])[0])  # training part only


def test_train_images_keeps_the_first_n_training_images_only(tmp_path):
    files = _write_folder(tmp_path, "cifar10")
    x, _ = _all_training_images(files, "cifar10")
    full = load_dataset("cifar10", data_dir=tmp_path, pruning_set=True)
    few = load_dataset("cifar10", data_dir=tmp_path, pruning_set=True, train_images=7)
    assert torch.equal(few.train.x, x[10:17])
    assert torch.equal(few.val.x, full.val.x) and torch.equal(few.prune.x, full.prune.x)
    assert few.mean == full.mean
    for bad in (0, -3, True):
        with pytest.raises(UserError, match="train_images must be at least 1"):
            load_dataset("synthetic", synthetic_size=100, train_images=bad)


REAL_CIFAR = os.environ.get("SQUEEZR_CIFAR_DIR")


@pytest.mark.skipif(not REAL_CIFAR, reason="set SQUEEZR_CIFAR_DIR to a folder with real CIFAR-10")
def test_real_cifar10_validation_split_has_the_published_class_counts():
    splits = load_dataset("cifar10", data_dir=REAL_CIFAR, download=False, pruning_set=True)
    assert (len(splits.val), len(splits.prune), len(splits.train)) == (5000, 5000, 40000)
    counts = torch.bincount(splits.val.y, minlength=10).tolist()
    assert counts == [505, 460, 519, 486, 519, 488, 519, 486, 520, 498]
    assert len(splits.test) == 10000


def test_data_dir_may_name_the_extracted_cifar_folder_itself(tmp_path):
    _write_folder(tmp_path, "cifar10")
    inside = load_dataset("cifar10", data_dir=tmp_path / "cifar-10-batches-py", download=False)
    beside = load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert torch.equal(inside.train.x, beside.train.x) and torch.equal(inside.test.y, beside.test.y)


def test_cifar100_uses_fine_labels(tmp_path):
    files = _write_folder(tmp_path, "cifar100")
    splits = load_dataset("cifar100", data_dir=tmp_path)
    assert splits.num_classes == 100
    assert splits.test.y.tolist() == files["test"][b"fine_labels"]


def test_tarball_is_verified_and_unpacked_once(tmp_path, monkeypatch):
    tarball = _write_tarball(tmp_path, "cifar10")
    _trust(monkeypatch, "cifar10", tarball)
    first = load_dataset("cifar10", data_dir=tmp_path)
    assert (tmp_path / "cifar-10-batches-py" / "test_batch").is_file()
    tarball.unlink()  # the unpacked folder is used from now on
    assert torch.equal(load_dataset("cifar10", data_dir=tmp_path).train.x, first.train.x)


def test_tarball_with_wrong_checksum_is_rejected(tmp_path):
    _write_tarball(tmp_path, "cifar10")
    with pytest.raises(UserError, match=r"MD5 .* expected c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_corrupt_pickle_is_a_clear_error(tmp_path):
    _write_folder(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(UserError, match=r"cannot read .*data_batch_3.*unpack cifar-10-python"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_wrong_batch_contents_are_rejected(tmp_path):
    _write_folder(tmp_path, "cifar100")
    bad = _batch(PER_BATCH, "fine_labels", 100, 0)
    bad[b"data"] = bad[b"data"][:, :100]
    (tmp_path / "cifar-100-python" / "test").write_bytes(pickle.dumps(bad))
    with pytest.raises(UserError, match="not uint8 N×3072"):
        load_dataset("cifar100", data_dir=tmp_path)


def test_missing_data_without_download_says_where_to_put_what(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("cifar100", data_dir=tmp_path, download=False)
    message = str(err.value)
    assert "cifar-100-python.tar.gz" in message and str(tmp_path) in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in message
    assert "\n" not in message


def test_failed_download_is_a_user_error_and_leaves_nothing(tmp_path, monkeypatch):
    def offline(url, dest, timeout=None):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(UserError, match=r"downloading failed .*network unreachable"):
        load_dataset("cifar10", data_dir=tmp_path / "new" / "data")
    assert list(tmp_path.iterdir()) == []  # the folders it made for the download are gone
    (tmp_path / "mine").mkdir()
    with pytest.raises(UserError, match="downloading failed"):
        load_dataset("cifar10", data_dir=tmp_path / "mine")
    assert (tmp_path / "mine").is_dir()  # a folder that was already there stays


def test_no_download_creates_nothing(tmp_path):
    with pytest.raises(UserError, match="downloading is off"):
        load_dataset("cifar10", data_dir=tmp_path / "absent", download=False)
    assert not (tmp_path / "absent").exists()


def _hostile_tarball(root: Path, member: tarfile.TarInfo, payload: bytes = b"") -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        archive.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    path = root / "cifar-10-python.tar.gz"
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("cifar-10-batches-py/../../evil", tarfile.REGTYPE),
        ("/tmp/evil", tarfile.REGTYPE),
        ("elsewhere/evil", tarfile.REGTYPE),
        ("cifar-10-batches-py/link", tarfile.SYMTYPE),
        ("cifar-10-batches-py/dev", tarfile.CHRTYPE),
    ],
)
def test_tarball_members_outside_the_folder_or_not_plain_files_are_refused(
    tmp_path, monkeypatch, name, kind
):
    member = tarfile.TarInfo(name)
    member.type = kind
    payload = b"boom"
    if kind == tarfile.REGTYPE:
        member.size = len(payload)
    else:
        member.linkname = "/etc/passwd"
    tarball = _hostile_tarball(tmp_path, member, payload)
    _trust(monkeypatch, "cifar10", tarball)
    with pytest.raises(UserError, match="not the official archive"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz"]
    assert not (tmp_path.parent / "evil").exists()


def test_download_fetches_the_official_url_and_checks_it(tmp_path, monkeypatch):
    fake = _write_tarball(tmp_path / "server", "cifar10")
    _trust(monkeypatch, "cifar10", fake)
    urls = []

    def serve(url, dest, timeout=None):
        urls.append(url)
        Path(dest).write_bytes(fake.read_bytes())

    monkeypatch.setattr(data, "_download", serve)
    checked = []
    real_check = data._check_md5
    monkeypatch.setattr(
        data, "_check_md5", lambda path, *a: checked.append(path) or real_check(path, *a)
    )
    splits = load_dataset("cifar10", data_dir=tmp_path / "cache")
    assert urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert len(checked) == 1  # the download is checked once, not again before unpacking
    assert len(splits.test) == PER_BATCH
    assert (tmp_path / "cache" / "cifar-10-python.tar.gz").is_file()


def test_downloaded_file_with_wrong_checksum_is_discarded(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", lambda url, dest, timeout=None: dest.write_bytes(b"x"))
    with pytest.raises(UserError, match="MD5"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_default_data_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SQUEEZR_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("SQUEEZR_DATA")
    assert default_data_dir() == Path.home() / ".cache" / "squeezr" / "data"


def test_digits_are_upscaled_and_split_deterministically():
    splits = load_dataset("digits")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1294, 143, 360)
    assert splits.train.x.shape[1:] == (3, 32, 32) and splits.train.x.dtype == torch.uint8
    assert torch.equal(splits.train.x[:, 0], splits.train.x[:, 2])  # grey as RGB
    assert {35, 36, 37} >= set(torch.bincount(splits.test.y).tolist())  # stratified
    again = load_dataset("digits", pruning_set=True)
    assert torch.equal(again.val.x, splits.val.x) and len(again.prune) == 143
    (x, _), _, _ = data._digits()  # the training part before the split, in order
    assert torch.equal(splits.val.x, x[:143]) and torch.equal(splits.train.x, x[143:])
    assert torch.equal(again.prune.x, x[143:286]) and torch.equal(again.train.x, x[286:])


def test_synthetic_is_seeded_and_learnable(tiny_splits):
    assert tiny_splits.num_classes == 4 and tiny_splits.name == "synthetic"
    assert (len(tiny_splits.train), len(tiny_splits.val), len(tiny_splits.test)) == (231, 25, 51)
    same = load_dataset("synthetic", synthetic_size=256, synthetic_classes=4, seed=0)
    other = load_dataset("synthetic", synthetic_size=256, synthetic_classes=4, seed=1)
    assert torch.equal(same.train.x, tiny_splits.train.x)
    assert not torch.equal(other.train.x, tiny_splits.train.x)
    # a nearest-class-mean classifier fitted on train already separates the test set
    x, y = tiny_splits.train.x.float().flatten(1), tiny_splits.train.y
    means = torch.stack([x[y == c].mean(0) for c in range(4)])
    predicted = torch.cdist(tiny_splits.test.x.float().flatten(1), means).argmin(1)
    assert (predicted == tiny_splits.test.y).float().mean() > 0.9


def test_pruning_set_fixture(tiny_splits_with_prune_set):
    assert len(tiny_splits_with_prune_set.prune) == 25
    assert len(tiny_splits_with_prune_set.train) == 206


def test_channel_stats_match_numpy():
    x = torch.randint(0, 256, (7, 3, 5, 4), dtype=torch.uint8, generator=torch.Generator())
    mean, std = channel_stats(x, chunk=3)
    as_float = x.numpy().astype(np.float64) / 255
    assert mean == pytest.approx(as_float.mean(axis=(0, 2, 3)).tolist())
    assert std == pytest.approx(as_float.std(axis=(0, 2, 3)).tolist())


def test_bad_requests_are_user_errors():
    with pytest.raises(UserError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(UserError, match="at least 2 classes"):
        load_dataset("synthetic", synthetic_size=5, synthetic_classes=10)
    with pytest.raises(UserError, match="too small to split"):
        load_dataset("synthetic", synthetic_size=9, synthetic_classes=3)
    tiny = Split(torch.zeros(9, 3, 32, 32, dtype=torch.uint8), torch.zeros(9, dtype=torch.int64))
    with pytest.raises(UserError, match="too small"):
        split_dataset("x", 2, tiny, tiny)
    with pytest.raises(UserError, match="uint8"):
        Split(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(UserError, match="int64"):
        Split(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
