"""What a network is trained and scored on: how stored inputs become model inputs, the
training loss, the accuracy the trainer records and the score the oracle minimises.

The pruning loop, the trainer and every data-driven saliency method reach the data only
through a :class:`Task`, so that "error on the selection set with block i removed" (image
classification) and "mean token NLL with layer i removed" (language modelling) are the same
code. A task scores *per sample* (:meth:`Task.score` returns a sum and a count for each
sample), because the oracle stacks the candidate networks' outputs along the batch
dimension and needs to take them apart again.

A dataset carries its task as ``DataSplits.task``; :func:`task_of` falls back to image
classification with the dataset's ``mean``/``std`` (every dataset before tasks existed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from squeezr.augment import normalize, pad_crop_flip


class Task:
    """Base class of tasks; subclasses implement every method.

    * ``prepare(x, device, dtype)``: stored inputs (a slice of ``split.x``) → model inputs on
      ``device`` (``dtype`` is the float type of image inputs; token ids stay integers);
    * ``targets(y, device)``: stored labels → what :meth:`loss`/:meth:`score` compare with;
    * ``augment(x, generator)``: training augmentation of stored inputs (before ``prepare``);
    * ``loss(outputs, targets)``: the scalar training loss (mean over the batch);
    * ``score(outputs, targets) -> (sums, counts)``: per-sample badness and its weight, both
      shape ``(N,)``; the task's score on a set is ``Σ sums / Σ counts`` (lower is better);
    * ``hits(outputs, targets) -> (correct, total)``: the accuracy the trainer records.
    """

    name = "task"
    score_name = "score"
    """What :meth:`score` measures, for messages and records (``error``, ``nll``)."""
    max_batch: int | None = None
    """Most samples evaluated (or stacked by the oracle) at once, when their outputs are
    large (a language model's logits: sequence length × vocabulary per sample); None: no
    limit beyond the caller's batch size. Set by :func:`squeezr.textdata.fit_language_model`."""

    def prepare(
        self, x: Tensor, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        raise NotImplementedError

    def targets(self, y: Tensor, device: torch.device) -> Tensor:
        return y.to(device, non_blocking=True)

    def augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return x

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def score(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def hits(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, int]:
        raise NotImplementedError


class ImageClassification(Task):
    """uint8 images ``(N, C, H, W)`` normalised per channel; class labels; error rate.

    ``mean``/``std`` are per channel on the 0–1 scale (``DataSplits.mean``/``std``);
    augmentation is the CIFAR recipe (:func:`squeezr.augment.pad_crop_flip`).
    """

    name = "image-classification"
    score_name = "error"

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def prepare(
        self, x: Tensor, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        return normalize(x.to(device, non_blocking=True), self.mean, self.std, dtype=dtype)

    def augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return pad_crop_flip(x, generator)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets)

    def score(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        wrong = (outputs.argmax(-1) != targets).to(torch.float64)
        return wrong, torch.ones_like(wrong)

    def hits(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, int]:
        return (outputs.argmax(1) == targets).sum(), len(targets)


class LanguageModelling(Task):
    """Token ids ``(N, T)`` (int64); next-token prediction; mean token NLL (→ perplexity).

    ``x`` holds the token ids and ``y`` the same ids (or -100 where a position is padding):
    the output at position t predicts token t + 1. The model returns logits ``(N, T, V)``.
    Perplexity is ``exp`` of the score; ranking blocks by either gives the same order.
    """

    name = "language-modelling"
    score_name = "nll"
    ignore_index = -100

    def prepare(
        self, x: Tensor, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        return x.to(device, non_blocking=True)

    def _shifted(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        return outputs[:, :-1].float(), targets[:, 1:]

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        logits, labels = self._shifted(outputs, targets)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

    def score(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        logits, labels = self._shifted(outputs, targets)
        nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
        counts = (labels != self.ignore_index).sum(1)
        return nll.to(torch.float64).sum(1), counts.to(torch.float64)

    def hits(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, int]:
        logits, labels = self._shifted(outputs, targets)
        valid = labels != self.ignore_index
        return ((logits.argmax(-1) == labels) & valid).sum(), int(valid.sum())


def task_of(splits: Any) -> Task:
    """The task of a dataset: ``splits.task``, else image classification with its mean/std."""
    task = getattr(splits, "task", None)
    if task is not None:
        return task
    return ImageClassification(splits.mean, splits.std)
