"""``dbx tune``: hyperparameter search where every trial is a dbx experiment.

The study file's ``[tune]`` table picks a stage (its command and fixed params), a search
space (``[tune.space]``; by default the stage's rotated params, each a choice among its
listed values; rotated params outside the space keep their first value), the objective (an event pattern and a field, e.g.
``"train/epoch/:epoch/eval val_acc"``), the sampler (TPE, random, grid) and the pruner
(median, successive halving, none). Optuna does the searching; dbx does the rest:

* each trial is planned as an experiment (``<tune.experiment>`` with ``{trial}``), started
  with ``$DBX_EXPERIMENT`` like the study runner starts experiments, so the program needs no
  Optuna code at all;
* its intermediate values come from a live log listener (:func:`squeezr.dbx.query.follow`)
  on that experiment's log, reported to Optuna step by step; a trial the pruner stops is
  sent SIGTERM (its run ends as ``terminated``) and told as pruned;
* the Optuna study is stored with the dbx study, in
  ``<repo>/.dbx/studies/<study>/optuna.journal`` (Optuna's JournalStorage, an append-only
  file that survives crashes). Running ``dbx tune`` again resumes: finished trials count,
  trials a killed tuner left running are marked failed and their params tried again.

Each trial's experiment gets ``results.tune`` (trial number, state, value) when it ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.adopt import ENV
from squeezr.dbx.errors import UserError
from squeezr.dbx.store import Experiment, Repository
from squeezr.dbx.study.expand import combinations, fill, nest, render_command
from squeezr.dbx.study.plan import study_dir
from squeezr.dbx.study.spec import Item, Stage, Study

__all__ = ["search_space", "tune"]

_VAR = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UserError("dbx tune needs Optuna: pip install 'squeezr[study]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def search_space(study: Study) -> dict[str, dict[str, Any]]:
    """The ``[tune.space]`` table, or else the tuned stage's rotated params as choices."""
    assert study.tune is not None
    if study.tune.space:
        return study.tune.space
    stage = study.stage(study.tune.stage)
    space: dict[str, dict[str, Any]] = {}
    for key, values in {**stage.grid, **stage.zip}.items():
        space[key] = {"choices": list(values)}
    for case in stage.cases:
        for key, value in case.items():
            choices = space.setdefault(key, {"choices": []})["choices"]
            if value not in choices:
                choices.append(value)
    if not space:
        raise UserError(
            f"study {study.name!r}: [tune] has no space and stage {stage.name!r} rotates no "
            "params; add [tune.space] (e.g. lr = {low = 1e-4, high = 0.1, log = true})"
        )
    return space


def _suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    values = {}
    for key, spec in space.items():
        if "choices" in spec:
            values[key] = trial.suggest_categorical(key, list(spec["choices"]))
        elif (
            all(type(spec[b]) is int for b in ("low", "high")) and type(spec.get("step", 1)) is int
        ):
            values[key] = trial.suggest_int(
                key, spec["low"], spec["high"], step=spec.get("step", 1), log=bool(spec.get("log"))
            )
        else:
            values[key] = trial.suggest_float(
                key,
                float(spec["low"]),
                float(spec["high"]),
                step=spec.get("step"),
                log=bool(spec.get("log")),
            )
    return values


def _sampler(optuna: Any, study: Study, space: dict[str, dict[str, Any]], done: int) -> Any:
    """The configured sampler. Its seed is offset by the ``done`` trials so far, so a resumed
    search draws new points instead of repeating the first run's."""
    tune = study.tune
    assert tune is not None
    seed = None if tune.seed is None else tune.seed + done
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if tune.sampler == "grid":
        grid = {}
        for key, spec in space.items():
            if "choices" in spec:
                grid[key] = list(spec["choices"])
            elif "step" in spec:
                count = round((spec["high"] - spec["low"]) / spec["step"]) + 1
                grid[key] = [spec["low"] + i * spec["step"] for i in range(count)]
            else:
                raise UserError(f'sampler = "grid" needs choices or a step for {key!r}')
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(optuna: Any, study: Study) -> Any:
    tune = study.tune
    assert tune is not None
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=tune.startup, n_warmup_steps=tune.warmup
        )
    if tune.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


@dataclass
class _Trial:
    trial: Any
    exp: Experiment
    popen: subprocess.Popen[bytes]
    listener: Iterator[Any]
    reported: dict[int, float]
    pruned: bool = False


def tune(
    repo: Repository,
    study: Study,
    trials: int | None = None,
    slots: int = 1,
    poll: float = 0.5,
    say: Callable[[str], None] | None = None,
) -> Any:
    """Run trials until ``trials`` (default: the file's) have completed or been pruned;
    returns the ``optuna.Study``."""
    if study.tune is None:
        raise UserError(f"study file {study.path} has no [tune] table; see docs/studies.md")
    if slots < 1:
        raise UserError(f"--slots must be 1 or more (got {slots})")
    optuna = _optuna()
    from squeezr.dbx.query import parse  # pandas: only here

    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    config = study.tune
    stage = study.stage(config.stage)
    space = search_space(study)
    pattern, field = config.objective.split()
    captured = _VAR.findall(pattern)
    step = config.step or (captured[0] if captured else None)
    query = parse(f"{pattern} | select {step + ', ' if step else ''}{field}")
    folder = study_dir(repo, study)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal"))
    )
    search = optuna.create_study(
        study_name=study.name,
        storage=storage,
        pruner=_pruner(optuna, study),
        direction=config.direction,
        load_if_exists=True,
    )
    search.sampler = _sampler(optuna, study, space, len(search.get_trials(deepcopy=False)))
    _recover(optuna, storage, search, say)
    wanted = trials if trials is not None else config.trials
    running: list[_Trial] = []
    states = optuna.trial.TrialState

    def counted() -> int:
        return len(search.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED)))

    def failed() -> int:
        return len(search.get_trials(deepcopy=False, states=(states.FAIL,)))

    try:
        while True:
            while len(running) < slots and counted() + len(running) < wanted:
                if failed() >= max(3, wanted):
                    raise UserError(f"{failed()} trials failed; see {folder / 'logs'}")
                running.append(_start(search, study, stage, repo, space, query, folder))
                say(
                    f"dbx tune: trial {running[-1].trial.number} started: {running[-1].trial.params}"
                )
            if not running:
                break
            time.sleep(poll)
            for item in list(running):
                ended = item.popen.poll() is not None  # before reading: no last lines lost
                _read(item, step, field)
                if ended:
                    running.remove(item)
                    _finish(search, item, config.final, say, states)
                elif not item.pruned and item.reported and item.trial.should_prune():
                    item.pruned = True  # told as pruned once the process has ended
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(item.popen.pid, signal.SIGTERM)
    except KeyboardInterrupt:
        for item in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(item.popen.pid, signal.SIGTERM)
            item.popen.wait()
            search.tell(item.trial, state=states.FAIL)
        raise
    complete = search.get_trials(deepcopy=False, states=(states.COMPLETE,))
    if complete:
        say(
            f"dbx tune: best trial {search.best_trial.number}: value {search.best_value} with {search.best_params}"
        )
    return search


def _recover(optuna: Any, storage: Any, search: Any, say: Callable[[str], None]) -> None:
    """Trials a killed tuner left running: failed, and their params tried again. (Optuna's
    own stale-trial handling needs heartbeats, which a journal file does not keep; a frozen
    trial's storage id is only available as ``_trial_id``.)"""
    for trial in search.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
        search.enqueue_trial(trial.params, skip_if_exists=False)
        say(
            f"dbx tune: trial {trial.number} was left running by an earlier tuner; trying its params again"
        )


def _start(
    search: Any,
    study: Study,
    stage: Stage,
    repo: Repository,
    space: dict[str, Any],
    query: Any,
    folder: Path,
) -> _Trial:
    from squeezr.dbx.query import follow

    assert study.tune is not None
    trial = search.ask()
    values = _suggest(trial, space)
    first = combinations(stage)[0]  # rotated params outside the space keep their first value
    flat = {**stage.params, **first, **values}
    fields = {**flat, "trial": trial.number, "stage": stage.name}
    name = fill(study.tune.experiment, fields, "[tune]: experiment", quote=False)
    item = Item(
        stage=stage.name,
        key=f"tune:{trial.number}",
        name=name,
        kind=stage.kind,
        params=nest(flat),
        values=values,
    )
    tag = {
        "name": study.name,
        "stage": "tune",
        "key": item.key,
        "params": item.params,
        "depends": None,
        "trial": trial.number,
    }
    path = repo.create_experiment(
        name, stage.kind, item.params, extra={"study": tag}, durable=False
    )
    item.id = path.name
    trial.set_user_attr("dbx_id", item.id)
    command = render_command(study, item, {})
    env = {**os.environ, **study.env, "DBX_REPO": str(repo.path), ENV: item.id}
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{item.id}.out", "ab") as out:
        popen = subprocess.Popen(
            ["bash", "-c", command],
            cwd=study.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    exp = repo.get(item.id)
    where = f"id == {jsonx.encode(item.id)}"
    listener = follow(query, repo, prefix=name, where=where, interval=0)
    return _Trial(trial, exp, popen, listener, {})


def _read(item: _Trial, step: str | None, field: str) -> None:
    """Report the objective values logged since the last poll (one per step)."""
    rows = next(item.listener)
    if not len(rows) or field not in rows.columns:
        return
    steps = rows[step].tolist() if step else [None] * len(rows)
    for at, value in zip(steps, rows[field].tolist(), strict=True):
        if not isinstance(value, (int, float)) or value != value:
            continue
        number = int(at) if at is not None else len(item.reported)
        if number not in item.reported:
            item.reported[number] = float(value)
            item.trial.report(float(value), number)


def _finish(
    search: Any, item: _Trial, final: str | None, say: Callable[[str], None], states: Any
) -> None:
    number = item.trial.number
    value: float | None = None
    if final:
        got = item.exp.value("results." + final.removeprefix("results."))
        value = float(got) if isinstance(got, (int, float)) else None
    elif item.reported:
        value = item.reported[max(item.reported)]
    if item.pruned:
        search.tell(item.trial, state=states.PRUNED)
        state = "pruned"
    elif item.popen.returncode == 0 and value is not None:
        search.tell(item.trial, value)
        state = "complete"
    else:
        search.tell(item.trial, state=states.FAIL)
        state = "failed"
    item.listener.close()
    with contextlib.suppress(UserError, OSError):
        item.exp.results["tune"] = {"trial": number, "state": state, "value": value}
    shown = "" if value is None else f" at {value:.6g}"
    say(
        f"dbx tune: trial {number} {state}{shown} after {len(item.reported)} steps ({item.exp.id[:8]} {item.exp.name})"
    )
