"""Shared fixtures for the squeezr (torch) tests: one thread, tiny seeded models and data."""

from __future__ import annotations

import pytest
import torch

# The test machines have few cores shared by several test runs; one thread is fastest overall.
torch.set_num_threads(1)

TINY_CONFIG = (2, 2, 2)
"""A 6-block ResNet-14 shape: every kind of block (plain, downsampling) in every group."""


@pytest.fixture
def tiny_model():
    """A freshly initialised, seeded ResNet of shape :data:`TINY_CONFIG` (10 classes)."""
    from squeezr.models import ResNet

    torch.manual_seed(0)
    return ResNet(TINY_CONFIG, num_classes=10)


@pytest.fixture
def tiny_splits():
    """A small seeded synthetic dataset (4 classes, 256 images) split like CIFAR (§6)."""
    from squeezr.data import load_dataset

    return load_dataset("synthetic", synthetic_size=256, synthetic_classes=4, seed=0)


@pytest.fixture
def tiny_splits_with_prune_set():
    """:func:`tiny_splits` with the optional pruning set (the second 10% of training data)."""
    from squeezr.data import load_dataset

    return load_dataset(
        "synthetic", synthetic_size=256, synthetic_classes=4, seed=0, pruning_set=True
    )
