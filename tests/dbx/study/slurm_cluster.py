"""A real single-node SLURM for tests: munged, slurmctld and slurmd started in a temp folder.

Needs root (slurmd runs jobs as their user; munged runs as the ``munge`` user) and Debian's
``slurm-wlm`` and ``munge`` packages (.ci/run installs them). The configuration is the
smallest that runs job arrays: one node with this machine's CPUs, process tracking by
``/proc`` (no cgroups), no task binding, ``cons_tres`` selection, no accounting. Clients
(``sbatch``, ``squeue``, ``scontrol``) find it through ``$SLURM_CONF``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def missing() -> str | None:
    """Why a cluster cannot be started here (None if it can)."""
    if os.geteuid() != 0:
        return "starting slurmd and munged needs root"
    absent = [
        name
        for name in DAEMONS
        if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()
    ]
    if absent:
        return f"not installed: {', '.join(absent)} (apt-get install slurm-wlm munge)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no munge user"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise RuntimeError(f"SLURM test cluster: {what} did not come up in {timeout:.0f} s")


@contextlib.contextmanager
def cluster(folder: Path) -> Iterator[dict[str, str]]:
    """Start munged, slurmctld and slurmd under ``folder``; yields the environment clients
    need (``SLURM_CONF``); stops everything (and cancels leftover jobs) on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    munge_user = pwd.getpwnam("munge")
    # munged runs as the munge user, which must reach its folder: pytest's temp folders are
    # private to root, so munge gets one of its own in the system temp folder
    munge = Path(tempfile.mkdtemp(prefix="dbx-test-munge-"))
    munge.chmod(0o755)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    for path in (munge, key):
        os.chown(path, munge_user.pw_uid, munge_user.pw_gid)
    sock = munge / "munge.socket"
    processes: list[subprocess.Popen[bytes]] = []
    log = (folder / "daemons.log").open("ab")
    try:
        processes.append(
            subprocess.Popen(
                [
                    "runuser",
                    "-u",
                    "munge",
                    "--",
                    "/usr/sbin/munged",
                    "--foreground",
                    f"--key-file={key}",
                    f"--socket={sock}",
                    f"--pid-file={munge / 'munged.pid'}",
                    f"--log-file={munge / 'munged.log'}",
                    f"--seed-file={munge / 'munged.seed'}",
                ],
                stdout=log,
                stderr=log,
            )
        )
        _wait(sock.exists, "munged")
        host = socket.gethostname()
        state, spool = folder / "state", folder / "spool"
        state.mkdir()
        spool.mkdir()
        conf = folder / "slurm.conf"
        conf.write_text(
            f"""ClusterName=dbxtest
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={folder / "slurmctld.pid"}
SlurmdPidFile={folder / "slurmd.pid"}
SlurmctldLogFile={folder / "slurmctld.log"}
SlurmdLogFile={folder / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SchedulerType=sched/backfill
MinJobAge=2
NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )
        env = {**os.environ, "SLURM_CONF": str(conf)}
        processes.append(
            subprocess.Popen(
                ["slurmctld", "-D", "-i", "-f", str(conf)], env=env, stdout=log, stderr=log
            )
        )
        processes.append(
            subprocess.Popen(
                ["slurmd", "-D", "-f", str(conf), "-N", host], env=env, stdout=log, stderr=log
            )
        )

        def idle() -> bool:
            out = subprocess.run(
                ["sinfo", "--noheader", "--format=%T"], env=env, capture_output=True, text=True
            )
            return out.returncode == 0 and out.stdout.strip() in ("idle", "mixed")

        _wait(idle, "the node")
        yield {"SLURM_CONF": str(conf)}
    finally:
        with contextlib.suppress(OSError):
            subprocess.run(
                ["scancel", "--full", "--user=root"],
                env={**os.environ, "SLURM_CONF": str(folder / "slurm.conf")},
                capture_output=True,
                timeout=10,
            )
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        shutil.rmtree(munge, ignore_errors=True)
