"""How squeezr runs record their data and models in dbx, read back by pruning and analysis.

Training, pruning and scratch runs all name their dataset in their params and keep networks
as ``squeezr.models.attach_model`` attachments; these helpers read both back, so that the
pruning loop's experiment wrapper and the analyses share one reading of a record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from squeezr.data import load_dataset
from squeezr.dbx.views import thaw
from squeezr.errors import UserError

# What identifies a dataset: squeezr.data.load_dataset's arguments that change the data
# (``train_images``: only the first N training images, for quick runs such as the demo;
# ``pruning_set``: the second 10% of the training data held out, as ``squeezr train
# --pruning-set`` records it).
DATASET_OPTIONS = (
    "name",
    "data_dir",
    "synthetic_size",
    "synthetic_classes",
    "seed",
    "train_images",
    "pruning_set",
)

# The dataset options ``squeezr train`` records next to ``dataset`` (a name) in its params.
_TRAIN_TOP_LEVEL = ("data_dir", "train_images", "pruning_set")

# Checkpoints that ``train.fit`` attaches to a training experiment (epoch 0 = initialisation).
_CHECKPOINT = re.compile(r"checkpoints/epoch-(\d+)\.pt")


def dataset_of(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The dataset an experiment used, from its params: ``dataset`` as a name with the other
    options at the top level (as ``squeezr train`` records it) or as a mapping with ``name``
    (as pruning runs record it); None when the params do not say."""
    params = thaw(params)
    value = params.get("dataset")
    if isinstance(value, str):
        value = {"name": value, **{k: params.get(k) for k in _TRAIN_TOP_LEVEL}}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return {k: v for k, v in value.items() if k in DATASET_OPTIONS and v is not None}
    return None


def open_splits(dataset: dict[str, Any], selection: str = "val"):
    """Load the dataset described by ``dataset``. The pruning set is held out when selection
    uses it (``selection="prune"``) or when the starting network was trained with it held out, so
    fine-tuning never sees data the recorded training kept apart."""
    options = {k: v for k, v in dataset.items() if k in DATASET_OPTIONS and v is not None}
    name = options.pop("name")
    held_out = bool(options.pop("pruning_set", False))
    return load_dataset(name, pruning_set=held_out or selection == "prune", **options)


def checkpoint_epochs(exp) -> list[int]:
    """Epochs of the training checkpoints attached to ``exp`` (``squeezr train
    --checkpoint-every K``), ascending."""
    found = (_CHECKPOINT.fullmatch(name) for name in exp.attachments)
    return sorted(int(m.group(1)) for m in found if m)


def model_attachment(exp, checkpoint: int | None = None) -> str:
    """The attachment holding ``exp``'s network: ``model.pt``, or the training checkpoint of
    epoch ``checkpoint``; UserError naming what is there when it is missing."""
    if checkpoint is None:
        return "model.pt"
    epochs = checkpoint_epochs(exp)
    if checkpoint not in epochs:
        have = ", ".join(map(str, epochs)) or "none (train with --checkpoint-every K)"
        raise UserError(
            f"experiment {exp.name} ({exp.id}) has no checkpoint of epoch {checkpoint}; "
            f"its checkpoints: {have}"
        )
    return f"checkpoints/epoch-{checkpoint:04d}.pt"
