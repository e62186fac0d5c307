"""How squeezr runs record their data and models in dbx, and read them back.

Training, pruning and scratch runs all name their dataset in their params and keep networks
as ``squeezr.models.attach_model`` attachments; these helpers write the dataset record and
read both back, so that training (and its resume), pruning and the scratch comparisons share
one reading of a record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from squeezr.data import dataset_key, load_dataset
from squeezr.dbx.errors import UserError
from squeezr.dbx.views import thaw
from squeezr.models import MODEL_ATTACHMENT

# What identifies a dataset: squeezr.data.load_dataset's arguments that change the data
# (``train_images``: only the first N training images, for quick runs such as the demo;
# ``pruning_set``: the second 10% of the training data held out, as ``squeezr train
# --pruning-set`` records it; ``seq_len``: the text dataset's sequence length).
DATASET_OPTIONS = (
    "name",
    "data_dir",
    "synthetic_size",
    "synthetic_classes",
    "seed",
    "train_images",
    "pruning_set",
    "resolution",
    "seq_len",
)

# The dataset options training runs record next to ``dataset`` (a name) in their params; the
# rest (synthetic data's size, classes and seed, which ``squeezr train`` has no flags for)
# go into ``dataset_options`` when there are any.
TRAIN_TOP_LEVEL = ("data_dir", "pruning_set", "train_images")

# Checkpoints that ``train.fit`` attaches to a training experiment (epoch 0 = initialisation).
_CHECKPOINT = re.compile(r"checkpoints/epoch-(\d+)\.pt")


def dataset_record(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """``dataset`` (``name`` and :data:`DATASET_OPTIONS`) as runs record it: the name
    normalised, ``data_dir`` absolute (so a run resumes from any working directory), options
    given as None left out; an unknown option is a UserError."""
    unknown = sorted(set(dataset) - set(DATASET_OPTIONS))
    if unknown:
        raise UserError(f"unknown dataset options {unknown}; known: {list(DATASET_OPTIONS)}")
    record = {k: v for k, v in dataset.items() if v is not None}
    if "name" not in record:
        raise UserError("the dataset has no name; pass --dataset (e.g. cifar10)")
    record["name"] = dataset_key(record["name"])
    if "data_dir" in record:
        record["data_dir"] = str(Path(record["data_dir"]).expanduser().resolve())
    return record


def dataset_of(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The dataset an experiment used, from its params: ``dataset`` as a name with the other
    options beside it (as training runs record it) or as a mapping with ``name`` (as pruning
    runs record it); None when the params do not say."""
    params = thaw(params)
    value = params.get("dataset")
    if isinstance(value, str):
        options = params.get("dataset_options")
        value = {
            "name": value,
            **{k: params.get(k) for k in TRAIN_TOP_LEVEL},
            **(options if isinstance(options, dict) else {}),
        }
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return {k: v for k, v in value.items() if k in DATASET_OPTIONS and v is not None}
    return None


def open_splits(dataset: dict[str, Any], selection: str = "val", download: bool = True):
    """Load the dataset described by ``dataset``. The pruning set is held out when selection
    uses it (``selection="prune"``) or when the starting network was trained with it held out, so
    fine-tuning never sees data the recorded training kept apart."""
    options = {k: v for k, v in dataset.items() if k in DATASET_OPTIONS and v is not None}
    name = options.pop("name")
    held_out = bool(options.pop("pruning_set", False))
    pruning_set = held_out or selection == "prune"
    return load_dataset(name, pruning_set=pruning_set, download=download, **options)


def checkpoint_epochs(exp) -> list[int]:
    """Epochs of the training checkpoints attached to ``exp`` (``squeezr train
    --checkpoint-every K``), ascending."""
    found = (_CHECKPOINT.fullmatch(name) for name in exp.attachments)
    return sorted(int(m.group(1)) for m in found if m)


def model_attachment(exp, checkpoint: int | None = None) -> str:
    """The attachment holding ``exp``'s network: :data:`MODEL_ATTACHMENT`, or the training checkpoint of
    epoch ``checkpoint``; UserError naming what is there when it is missing."""
    if checkpoint is None:
        return MODEL_ATTACHMENT
    epochs = checkpoint_epochs(exp)
    if checkpoint not in epochs:
        have = ", ".join(map(str, epochs)) or "none (train with --checkpoint-every K)"
        raise UserError(
            f"experiment {exp.name} ({exp.id}) has no checkpoint of epoch {checkpoint}; "
            f"its checkpoints: {have}"
        )
    return f"checkpoints/epoch-{checkpoint:04d}.pt"


def recorded_source(source: str) -> str:
    """A model source as runs record it: a NAME that is a file or folder
    (``hf:./models/Qwen2.5-0.5B``) made absolute, so a resumed run finds it from anywhere."""
    family, _, name = str(source).partition(":")
    path = Path(name).expanduser()
    return f"{family}:{path.resolve()}" if name and path.exists() else str(source)


def source_label(source: str) -> str:
    """A model source as a part of an experiment name: ``torchvision:resnet50`` →
    ``torchvision-resnet50``; a file or folder by its folder's name (``hf:/m/Qwen2.5-0.5B`` →
    ``hf-Qwen2.5-0.5B``, ``hf:/m/tiny/config.json`` → ``hf-tiny``); anything else as it is
    (``resnet110``)."""
    family, colon, name = str(source).partition(":")
    if not colon:
        return family
    path = Path(name).expanduser()
    if "/" in name or path.exists():
        path = path.resolve()
        name = (path.parent if path.is_file() else path).name
    return f"{family}-{name}"
