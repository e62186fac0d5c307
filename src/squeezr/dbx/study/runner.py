"""``dbx study run``: run a study's pending experiments on this machine's GPUs or CPU slots.

Each slot runs one experiment at a time; a GPU may carry several slots (``--per-gpu``), and
a GPU slot's process sees only its GPU (``CUDA_VISIBLE_DEVICES``). An experiment starts once
the experiment it depends on is done, with ``$DBX_EXPERIMENT`` set to its planned id.

The repository is the runner's memory: what is done is skipped, a failed experiment is
started again until it has failed ``1 + retries`` times (failed runs are counted in its run
records, so the bound holds across restarts), and an interrupted one (Ctrl-C, SIGTERM, a
killed runner) is simply started again. The runner also keeps a journal of the processes it
started (``.dbx/studies/<study>/runner.json``): if it is killed, its children keep running,
and a restarted runner waits for them instead of starting their experiments a second time.
One runner per study at a time (a lock file says so). Each process's output goes to
``.dbx/studies/<study>/logs/<id>.out``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.adopt import ENV
from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import atomic_path
from squeezr.dbx.runs import experiment_status
from squeezr.dbx.store import Experiment, Repository
from squeezr.dbx.study.plan import prefixes, study_dir
from squeezr.dbx.study.spec import Item, Study

__all__ = ["Runner", "Slot", "make_slots"]

_STOP_GRACE = 10.0  # seconds a stopped experiment gets to record its end before SIGKILL


@dataclass(frozen=True)
class Slot:
    index: int
    gpu: str | None = None

    def describe(self) -> str:
        return f"slot {self.index}" + (f" (GPU {self.gpu})" if self.gpu is not None else "")


def make_slots(slots: int | None, gpus: str | None, per_gpu: int = 1) -> list[Slot]:
    """CPU slots (``slots``), or ``per_gpu`` slots on each of ``gpus`` (``0,1``, or
    ``all`` for every GPU ``nvidia-smi -L`` lists)."""
    if gpus is None:
        count = 1 if slots is None else slots
        if count < 1:
            raise UserError(f"--slots must be 1 or more (got {count})")
        return [Slot(i) for i in range(count)]
    if slots is not None:
        raise UserError("give --slots (CPU) or --gpus, not both")
    if per_gpu < 1:
        raise UserError(f"--per-gpu must be 1 or more (got {per_gpu})")
    names = _all_gpus() if gpus == "all" else [g.strip() for g in gpus.split(",") if g.strip()]
    if not names:
        raise UserError("--gpus names no GPU; give indices such as 0,1 or 'all'")
    return [
        Slot(i, gpu) for i, (gpu, _) in enumerate((g, k) for g in names for k in range(per_gpu))
    ]


def _all_gpus() -> list[str]:
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise UserError("--gpus all: nvidia-smi cannot list GPUs here; give --slots N") from None
    return [str(i) for i, line in enumerate(listing.stdout.splitlines()) if line.startswith("GPU")]


@dataclass
class _Process:
    item: Item
    slot: Slot
    pid: int
    popen: subprocess.Popen[bytes] | None  # None: started by an earlier runner
    runs_before: int

    def exited(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is not None
        return not _alive(self.pid, None)


class Runner:
    """Runs ``items`` (planned, with ids and commands) of ``study`` in ``repo``."""

    def __init__(
        self,
        repo: Repository,
        study: Study,
        items: Sequence[Item],
        slots: Sequence[Slot],
        retries: int = 1,
        poll: float = 0.5,
        say: Callable[[str], None] | None = None,
    ) -> None:
        if retries < 0:
            raise UserError(f"--retries must be 0 or more (got {retries})")
        self.repo, self.study, self.items, self.slots = repo, study, list(items), list(slots)
        self.retries, self.poll = retries, poll
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.folder = study_dir(repo, study)
        self.journal_path = self.folder / "runner.json"
        self.by_key = {item.key: item for item in self.items}
        self.running: dict[str, _Process] = {}
        self.gave_up: set[str] = set()
        self.unrecorded: dict[str, int] = {}  # launches that ended without a run recorded
        self.folders = {  # found once: Repository.get would walk the whole repository
            exp.id: exp.path
            for prefix in prefixes(study)
            for exp in repo.experiments(prefix or None)
        }

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        """Run until every experiment is done or given up; 0 if all are done, else 1."""
        lock = self._lock()
        previous = signal.getsignal(signal.SIGTERM)
        with contextlib.suppress(ValueError):  # not the main thread: Ctrl-C only
            signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._adopt_journal()
            return self._loop()
        except KeyboardInterrupt:
            self._stop_all()
            self.say("dbx study run: stopped; run it again to continue where it left off")
            raise
        finally:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, previous)
            os.close(lock)

    def _loop(self) -> int:
        statuses = {item.id: self._status(item) for item in self.items}
        total = len(self.items)
        self._progress(statuses, "start")
        while True:
            for exp_id, process in list(self.running.items()):
                if process.exited():
                    statuses[exp_id] = self._finished(process)
                    self._progress(statuses, f"{statuses[exp_id]:>8}  {process.item.name}")
            for item in self.items:  # runs started by someone else may have ended
                if statuses[item.id] == "running" and item.id not in self.running:
                    statuses[item.id] = self._status(item)
            free = [s for s in self.slots if all(p.slot != s for p in self.running.values())]
            for item in self.items:
                if not free:
                    break
                if self._ready(item, statuses):
                    slot = free.pop(0)
                    self._launch(item, slot)
                    statuses[item.id] = "running"
                    self._progress(statuses, f" started  {item.name} on {slot.describe()}")
            waiting = [
                item
                for item in self.items
                if statuses[item.id] == "running" or self._ready(item, statuses)
            ]
            if not waiting:
                break
            time.sleep(self.poll)
        done = sum(1 for item in self.items if statuses[item.id] == "done")
        blocked = [item.name for item in self.items if statuses[item.id] != "done"]
        self.say(
            f"dbx study run: {done}/{total} done"
            + (f", not done: {len(blocked)}" if blocked else "")
        )
        return 0 if done == total else 1

    def _ready(self, item: Item, statuses: dict[str | None, str]) -> bool:
        """Whether ``item`` may start now: not done, running or given up, its dependency done."""
        status = statuses[item.id]
        if status in ("done", "running") or item.id in self.gave_up:
            return False
        if item.depends is not None:
            dep = self.by_key[item.depends]
            if statuses[dep.id] != "done":
                return False
        if status == "failed" or self.unrecorded.get(item.id or "", 0):
            failures = self._failures(item)
            if failures > self.retries:
                self.gave_up.add(item.id or "")
                self.say(f"dbx study run: giving up on {item.name}: failed {failures} times")
                return False
        return True

    def _failures(self, item: Item) -> int:
        exp = self._experiment(item)
        recorded = sum(1 for record in exp.runs() if record.get("status") == "failed")
        return recorded + self.unrecorded.get(item.id or "", 0)

    def _status(self, item: Item) -> str:
        return experiment_status(self._experiment(item))

    def _experiment(self, item: Item) -> Experiment:
        folder = self.folders.get(item.id or "")
        return Experiment(self.repo, folder) if folder else self.repo.get(item.id or "")

    def _progress(self, statuses: dict[str | None, str], what: str) -> None:
        counts = {s: 0 for s in ("done", "running", "failed")}
        for status in statuses.values():
            if status in counts:
                counts[status] += 1
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        self.say(f"[{counts['done']}/{len(self.items)} done] {what}  ({summary})")

    # --- processes -------------------------------------------------------------------------
    def _launch(self, item: Item, slot: Slot) -> None:
        env = {**os.environ, **self.study.env, "DBX_REPO": str(self.repo.path), ENV: item.id or ""}
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        logs = self.folder / "logs"
        logs.mkdir(exist_ok=True)
        runs_before = len(self._experiment(item).run_numbers())
        with open(logs / f"{item.id}.out", "ab") as out:
            popen = subprocess.Popen(
                ["bash", "-c", item.command or ""],
                cwd=self.study.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped as a group; survives the runner's death
            )
        self.running[item.id or ""] = _Process(item, slot, popen.pid, popen, runs_before)
        self._write_journal()

    def _finished(self, process: _Process) -> str:
        """Forget a process that ended; the experiment's status now."""
        item = process.item
        del self.running[item.id or ""]
        self._write_journal()
        exp = self._experiment(item)
        status = experiment_status(exp)
        code = process.popen.returncode if process.popen is not None else None
        if len(exp.run_numbers()) == process.runs_before:
            self.unrecorded[item.id or ""] = self.unrecorded.get(item.id or "", 0) + 1
            self.say(
                f"dbx study run: {item.name} ended (exit {code}) without recording a run; "
                f"does its command call dbx.create? Output: {self.folder / 'logs' / (str(item.id) + '.out')}"
            )
            return "failed"
        if status == "done" and code not in (0, None):
            self.unrecorded[item.id or ""] = self.unrecorded.get(item.id or "", 0) + 1
            return "failed"
        return status

    def _stop_all(self) -> None:
        """SIGTERM every running experiment's process group, SIGKILL after a grace period."""
        for process in self.running.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE
        while time.monotonic() < deadline and any(not p.exited() for p in self.running.values()):
            time.sleep(0.1)
        for process in self.running.values():
            if not process.exited():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                if process.popen is not None:
                    process.popen.wait()
        self.running.clear()
        self._write_journal()

    # --- the journal and the lock -----------------------------------------------------------
    def _lock(self) -> int:
        fd = os.open(self.folder / "runner.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(
                f"another `dbx study run` is running study {self.study.name!r} in this "
                "repository; wait for it or stop it first"
            ) from None
        return fd

    def _write_journal(self) -> None:
        entries = {
            exp_id: {
                "pid": p.pid,
                "start": _start_time(p.pid),
                "slot": p.slot.index,
                "runs_before": p.runs_before,
            }
            for exp_id, p in self.running.items()
        }
        with atomic_path(self.journal_path, durable=False) as tmp:
            tmp.write_text(jsonx.encode(entries, indent=2) + "\n", encoding="utf-8")

    def _adopt_journal(self) -> None:
        """Take over the processes a killed runner left running (they hold their slots)."""
        try:
            entries: dict[str, Any] = jsonx.loads(self.journal_path.read_bytes())
        except (FileNotFoundError, ValueError):
            entries = {}
        by_id = {item.id: item for item in self.items}
        for exp_id, entry in entries.items():
            item = by_id.get(exp_id)
            pid = entry.get("pid")
            if item is None or type(pid) is not int or not _alive(pid, entry.get("start")):
                continue
            slot = next((s for s in self.slots if s.index == entry.get("slot")), None)
            taken = {p.slot for p in self.running.values()}
            if slot is None or slot in taken:
                slot = next((s for s in self.slots if s not in taken), Slot(-1))
            self.running[exp_id] = _Process(item, slot, pid, None, int(entry.get("runs_before", 0)))
            self.say(
                f"dbx study run: waiting for {item.name} (pid {pid}, started by an earlier runner)"
            )
        self._write_journal()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _zombie(pid):
        return False
    return start is None or _start_time(pid) in (None, start)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
