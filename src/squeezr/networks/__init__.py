"""Adapters of network families to the block-sequence interface (:mod:`squeezr.blocknet`).

One module per family, named after it (``torchvision`` for torchvision-layout ResNets). A
module defines a :class:`squeezr.blocknet.BlockNet` subclass whose ``SPEC_FORMAT`` is
``"squeezr.<module name, '_' as '-'>/<version>"`` (so saved models find their module), and
optionally ``adapt(model) -> BlockNet | None`` (accept a foreign model object) and
``build(name, weights=None, **options) -> BlockNet`` (the ``--from FAMILY:NAME`` model
sources). The CIFAR ResNets live in :mod:`squeezr.models`.
"""
