"""Training runs as dbx experiments: what they record, and the one code path that runs them.

``squeezr train`` (the baselines of spec §6), ``squeezr demo`` and the scratch comparisons of
spec §7 (``squeezr scratch``) all train through :func:`training_params` and
:func:`train_experiment`. So every experiment of kind ``train`` has one params layout, which
``squeezr prune --from`` reads, and ``squeezr train --resume`` continues any of them from the
experiment alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from squeezr import dbx, distributed
from squeezr.blocknet import build, from_spec, output_size
from squeezr.dbx.errors import UserError
from squeezr.dbx.store import validate_name
from squeezr.dbx.views import thaw
from squeezr.models import MODEL_ATTACHMENT, ResNet, load_model
from squeezr.prune.records import (
    TRAIN_TOP_LEVEL,
    dataset_of,
    dataset_record,
    open_splits,
    source_label,
)
from squeezr.tasks import LanguageModelling, task_of
from squeezr.textdata import fit_language_model
from squeezr.torchfiles import load_torch_file
from squeezr.train import TrainConfig, resolve_device, seed_everything


def training_params(
    *,
    arch: str,
    config: Sequence[int],
    dataset: Mapping[str, Any],
    cfg: TrainConfig,
    spec: dict[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The params of a training experiment, as ``--resume``, the pruner and queries read them.

    ``{arch, config, dataset, data_dir, pruning_set, train_images, train}``: ``dataset`` is
    the normalised name, ``data_dir`` an absolute path (or None = the default folder) so the
    run resumes from any working directory, ``pruning_set`` whether the second 10% of the
    training data was held out, ``train_images`` a training-set limit (None = all) and
    ``train`` the whole :class:`squeezr.train.TrainConfig` (``cfg``). ``dataset`` is given
    as a mapping (``name`` and the options of :data:`squeezr.prune.records.DATASET_OPTIONS`);
    options ``squeezr train`` has no flags for (synthetic data's size, classes, seed) are
    recorded as ``dataset_options``. ``spec`` (a :meth:`ResNet.spec`, e.g. a pruned shape)
    is recorded when the network is not the plain ``ResNet(config)``. ``model``
    (``{"source": "torchvision:resnet50", "weights": path or None}``) is recorded for a network
    of another family, built by :func:`squeezr.blocknet.build` (then ``config`` is empty).
    """
    options = dataset_record(dataset)
    params: dict[str, Any] = {"arch": arch, "config": list(config), "dataset": options.pop("name")}
    params.update({k: options.pop(k, None) for k in TRAIN_TOP_LEVEL})
    params["pruning_set"] = bool(params["pruning_set"])
    params["train"] = cfg.to_dict()
    if options:
        params["dataset_options"] = options
    if spec is not None:
        params["spec"] = spec
    if model is not None:
        params["model"] = dict(model)
    return params


def _prepare(params: dict[str, Any], download: bool):
    """Everything that can be wrong with a run, checked before an experiment exists:
    the training options, the device, the dataset (present or downloadable) and the shape.
    Returns (TrainConfig, splits, freshly initialised model)."""
    if not isinstance(params.get("train"), dict) or not ({"config", "spec", "model"} & set(params)):
        raise UserError("this experiment was not made by `squeezr train` (no training params)")
    cfg = TrainConfig.from_dict(params["train"])
    resolve_device(cfg.device)
    dataset = dataset_of(params)
    if dataset is None:
        raise UserError("the training params name no dataset; it was not made by squeezr")
    splits = open_splits(dataset, download=download)
    seed_everything(cfg.seed)
    if isinstance(params.get("model"), dict):
        source = params["model"]
        model = build(
            source["source"], weights=source.get("weights"), num_classes=splits.num_classes
        )
        if isinstance(task_of(splits), LanguageModelling):
            fit_language_model(model, splits)  # sequence length, vocabulary
        return cfg, splits, model
    spec = params.get("spec")
    if spec is None:
        return cfg, splits, ResNet(params["config"], num_classes=splits.num_classes)
    model = from_spec(spec)
    if isinstance(task_of(splits), LanguageModelling):
        fit_language_model(model, splits)  # a vocabulary covering the data's token ids
    elif output_size(model) != splits.num_classes:
        raise UserError(
            f"the recorded network has {output_size(model)} outputs but dataset "
            f"{dataset['name']!r} has {splits.num_classes} classes"
        )
    return cfg, splits, model


def train_experiment(
    params: dict[str, Any],
    *,
    repo: Any = None,
    name: str | None = None,
    resume: str | None = None,
    download: bool = True,
    progress: bool = True,
    announce: Callable[[Any], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Run (or, with ``resume`` = an experiment ref, continue) a training experiment.

    Everything is validated before the experiment is created or resumed; ``announce(exp)``
    runs once it exists (e.g. to print where it went). A resumed experiment that already
    has results trains nothing and gets no new run. Under torchrun every rank calls this
    alike; rank 0 alone creates the experiment (the others get (None, {})). ``repo=None`` is the repository dbx finds (``$DBX_REPO`` or
    the enclosing one), for a new experiment else ``./experiments``. Returns (experiment,
    its results).
    """
    from squeezr.train import fit  # at call time, so that it can be swapped (e.g. in tests)

    if resume is not None:
        finished = dbx.open(resume, repo=repo)
        if has_finished(finished):  # as a finished pruning run: nothing to do, no new run
            return finished, thaw(finished.results)
    else:
        seed = params.get("train", {}).get("seed", 0)
        arch = source_label(str(params.get("arch")))  # torchvision:resnet50
        name = validate_name(name or f"baselines/{arch}/{seed}")
    cfg, splits, model = _prepare(params, download)
    if not distributed.is_main():  # torchrun: rank 0 records, the other ranks train alongside
        fit(model, splits, cfg, progress=False)
        return None, {}
    if resume is not None:
        exp = dbx.resume(resume, repo=repo)
    else:
        exp = dbx.create(name, kind="train", params=params, repo=repo)
    with exp:
        if announce is not None:
            announce(exp)
        fit(model, splits, cfg, exp=exp, progress=progress)
        return exp, thaw(exp.results)


def has_finished(exp) -> bool:
    """Whether training experiment ``exp`` got to the end (its results are written, which
    happens after its ``model.pt`` is attached)."""
    return "test_acc" in exp.results


def resume_point(exp) -> str:
    """Where ``squeezr train --resume`` continues ``exp``, in words: ``resuming at epoch 8
    of 20`` (from the resume state the trainer writes after every epoch)."""
    total = thaw(exp.value("params")).get("train", {}).get("epochs")
    path = exp.path / "resume-train.pt"
    if not path.is_file():
        return f"starting at epoch 1 of {total}: no epoch had finished"
    epoch = load_torch_file(path, "training resume state", "delete it to start over")["epoch"]
    return f"resuming at epoch {epoch + 1} of {total}"


# --------------------------------------------------------------------------- scratch baselines


def pruned_spec(exp) -> dict[str, Any]:
    """The shape (``ResNet.spec()``) of an experiment's network, e.g. a pruned one: removed
    blocks included, so leftover downsampling shortcuts are part of the shape."""
    return load_model(exp.attachment_path(MODEL_ATTACHMENT)).spec()


def source_training(exp, repo: Any = None) -> dict[str, Any]:
    """The training settings (``params.train``) behind an experiment's network: its own, or
    those of the experiment a pruning run started from; {} when neither records any."""
    params = thaw(exp.value("params"))
    train = params.get("train")
    source = params.get("source") or {}
    if train is None and source.get("kind") == "experiment":
        train = thaw(dbx.open(source["id"], repo=repo).value("params")).get("train")
    return dict(train) if isinstance(train, dict) else {}


def equal_config(blocks: int) -> tuple[int, int, int]:
    """The standard equal-groups shape (n, n, n) closest to ``blocks`` blocks in all."""
    n = max(round(blocks / 3), 1)
    return (n, n, n)


def scratch_spec(spec: dict[str, Any], equal: bool) -> dict[str, Any]:
    """The shape a scratch comparison trains: exactly ``spec`` (shortcuts of removed
    downsampling blocks kept), or with ``equal`` the standard (n, n, n) ResNet with about as
    many blocks."""
    if not equal:
        return spec
    if spec.get("format") != ResNet.SPEC_FORMAT:
        raise UserError(
            "--equal compares with a standard CIFAR ResNet; this network is another family"
        )
    config = equal_config(sum(spec["remaining_config"]))
    return ResNet(config, num_classes=spec["num_classes"]).spec()


def train_scratch(
    like: str,
    *,
    repo: Any = None,
    equal: bool = False,
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    name: str | None = None,
    progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Train the shape of experiment ``like``'s network from a random init (spec section 7).

    ``equal`` trains the standard (n, n, n) shape with about as many blocks instead. The
    recipe is that of the training behind ``like`` (learning rate and milestones, batch size,
    fast path, stochastic depth, ...) with only ``epochs`` (default: that training's
    budget, so both arms of the comparison get the same number of epochs), ``seed`` and
    ``device`` replaced. The run is a training experiment like any other (``squeezr train
    --resume`` continues it). Returns (experiment, its results).
    """
    source = dbx.open(like, repo=repo)
    spec = scratch_spec(pruned_spec(source), equal)
    recipe = source_training(source, repo)
    if epochs is None:
        epochs = recipe.get("epochs")
        if epochs is None:
            raise UserError(f"{source.name} records no training budget; pass --epochs")
    dataset = dataset_of(source.params)
    if dataset is None:
        raise UserError(f"{source.name} records no dataset; it is not a squeezr run")
    cfg = TrainConfig.from_dict({**recipe, "epochs": epochs, "seed": seed, "device": device})
    arch = "equal" if equal else "pruned-shape"
    config = spec.get("remaining_config", [])
    params = training_params(arch=arch, config=config, dataset=dataset, cfg=cfg, spec=spec)
    params["like"] = {"id": source.id, "name": source.name}
    shape = "-".join(map(str, config))
    return train_experiment(
        params, repo=repo, name=name or f"scratch/{arch}/{shape}/{seed}", progress=progress
    )
