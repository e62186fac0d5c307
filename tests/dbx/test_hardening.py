"""Adversarial input and failures (issue 11): every one is refused with a one-line error or
read around with a one-line warning, and nothing written before is lost."""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx import fileio, logger, store
from squeezr.dbx.cli import main
from squeezr.dbx.errors import UserError
from squeezr.dbx.logger import LogWriter

DEEP = "[" * 5000 + "]" * 5000


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.startswith("dbx: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository that `dbx` finds through $DBX_REPO; runs outside any git tree."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "experiments"
    dbx.Repository.init(root)
    monkeypatch.setenv("DBX_REPO", str(root))
    return root


# --- values JSON cannot hold ---------------------------------------------------------------


def test_an_unencodable_value_is_refused_at_log_and_nothing_else_is_lost(env: Path) -> None:
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with dbx.create("a", repo=env) as exp:
        exp.log("before", v=1)
        with pytest.raises(UserError, match=r"event 'b' cannot be logged.*4300 digits"):
            exp.log("b", v=10**5000)
        with pytest.raises(UserError, match=r"event 'd' cannot be logged.*nested more than"):
            exp.log("d", v=deep)
        exp.log("after", v=2)
    events = exp.events()
    assert [e["name"] for e in events] == ["before", "after"]
    assert [e["id"] for e in events] == ["1-1", "1-2"]  # no gap in the ids either


def test_an_unencodable_result_is_a_user_error(env: Path) -> None:
    with dbx.create("a", repo=env) as exp:
        exp.results["ok"] = 1
        with pytest.raises(UserError, match=r"cannot store results.*4300 digits"):
            exp.results["big"] = 10**5000
        nested: dict = {}
        for _ in range(3000):
            nested = {"x": nested}
        with pytest.raises(UserError, match="nested more than"):
            exp.results["deep"] = nested
    assert dict(exp.results) == {"ok": 1}


# --- the writer under load ----------------------------------------------------------------


def test_a_burst_is_written_in_bounded_batches(tmp_path: Path, monkeypatch) -> None:
    writes: list[tuple[int, int]] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        writes.append((fd, data.count(b"\n")))
        return real_write(fd, data)

    monkeypatch.setattr(logger.os, "write", counting_write)
    writer = LogWriter(tmp_path / "log-1.jsonl", 1, interval=60, batch=100)
    for i in range(2_000):  # far faster than one write per event
        writer.log("step", {"i": i})
    assert writer.flush(timeout=30)
    log_fd = writer._fd
    writer.close()
    sizes = [lines for fd, lines in writes if fd == log_fd]  # (not the columnar copy's)
    assert sum(sizes) == 2_000 and max(sizes) <= 100


def test_a_producer_faster_than_the_disk_waits_for_room(tmp_path: Path, monkeypatch) -> None:
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(0.002)
        real_fsync(fd)

    monkeypatch.setattr(logger.os, "fsync", slow_fsync)
    writer = LogWriter(tmp_path / "log-1.jsonl", 1, interval=0.01, batch=10, max_queue=50)
    longest = 0
    for i in range(1_000):
        writer.log("step", {"i": i})
        longest = max(longest, len(writer._queue))
    writer.close()
    assert longest <= 50
    lines = (tmp_path / "log-1.jsonl").read_text().splitlines()
    assert [json.loads(line)["data"]["i"] for line in lines] == list(range(1_000))


def test_a_full_queue_on_a_failing_disk_raises_instead_of_hanging(
    tmp_path: Path, monkeypatch
) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = LogWriter(tmp_path / "log-1.jsonl", 1, interval=0.01, batch=10, max_queue=20)
    monkeypatch.setattr(logger.os, "write", full)
    with pytest.raises(UserError, match="20 events wait and the log cannot be written"):
        for i in range(10_000):
            writer.log("step", {"i": i})
    monkeypatch.undo()
    writer.close()
    assert len((tmp_path / "log-1.jsonl").read_text().splitlines()) >= 20


def test_new_folders_and_logs_are_made_durable(env: Path, monkeypatch) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(fileio, "fsync_dir", lambda folder: synced.append(Path(folder)))
    monkeypatch.setattr(logger, "fsync_dir", lambda folder: synced.append(Path(folder)))
    exp = dbx.create("group/sub/a", repo=env)
    exp.close()
    for folder in (env, env / "group", env / "group" / "sub", exp.path):
        assert folder in synced, folder  # each new entry's parent, and the log's folder


# --- deeply nested JSON in files ----------------------------------------------------------


def test_deeply_nested_files_give_one_line_errors_or_warnings(env: Path, capsys) -> None:
    with dbx.create("a", repo=env) as exp:
        exp.log("e", x=1)
    with dbx.create("b", repo=env) as other:
        pass
    (exp.path / "results.json").write_text(f'{{"x": {DEEP}}}')
    assert "nested more than" in one_line_error(capsys, "show", "a")
    (exp.path / "results.json").unlink()
    with (exp.path / "log-1.jsonl").open("a") as log:
        log.write(json.dumps({"name": "e", "id": "1-2", "ts": 1.0, "run": 1, "data": {}})[:-1])
        log.write(f', "deep": {DEEP}}}\n{{}}\n')
    assert "line 2 is corrupt" in one_line_error(capsys, "show", "a")
    (other.path / "meta.json").write_text(f'{{"id": {DEEP}}}')
    code, out, err = run(capsys, "ls", "--columns", "name")
    assert code == 0 and out.split()[-1] == "a" and "b" not in out.split()
    assert err.startswith("dbx: warning: skipping an experiment: ") and err.count("\n") == 1
    assert "nested more than" in one_line_error(capsys, "log", "a", "e", f"v={DEEP}")


def test_a_damaged_results_file_does_not_stop_a_listing(env: Path, capsys) -> None:
    for name, acc in (("a", 0.5), ("b", 0.7)):
        with dbx.create(name, repo=env) as exp:
            exp.results["acc"] = acc
    (exp.path / "results.json").write_text("{")
    code, out, err = run(capsys, "ls", "--columns", "name,results.acc", "--sort", "name")
    assert code == 0 and "0.5" in out and out.strip().splitlines()[-1].split() == ["b"]
    assert err.startswith("dbx: warning: results file") and err.count("\n") == 1


# --- warnings are one line -----------------------------------------------------------------


@pytest.mark.parametrize("argv", [["show", "a"], ["missing", "--event", "x"]])
def test_torn_lines_are_reported_in_one_line(env: Path, capsys, argv: list[str]) -> None:
    with dbx.create("a", repo=env) as exp:
        exp.log("e", x=1)
    with (exp.path / "log-1.jsonl").open("a") as log:
        log.write('{"name": "e", "id"')
    code, _, err = run(capsys, *argv)
    assert code == 0 and err.count("\n") == 1
    assert err.startswith("dbx: warning: ") and "skipping a torn last line" in err


def test_verify_repair_cuts_a_torn_line_and_keeps_a_backup(env: Path, capsys) -> None:
    with dbx.create("a", repo=env) as exp:
        exp.log("e", x=1)
    log = exp.path / "log-1.jsonl"
    sound = log.read_bytes()
    log.write_bytes(sound + b'{"name": "e", "id"')
    assert run(capsys, "verify")[0] == 1
    code, out, _ = run(capsys, "verify", "--repair")
    assert code == 0 and "removed a torn last line" in out and "no problems" in out
    assert log.read_bytes() == sound
    assert (exp.path / "log-1.jsonl.bak").read_bytes() == sound + b'{"name": "e", "id"'
    log.write_bytes(sound + b'{"not": "an event"}\n')  # a complete but corrupt last line
    assert "removed a torn last line" in run(capsys, "verify", "--repair")[1]
    assert log.read_bytes() == sound and (exp.path / "log-1.jsonl.bak2").exists()


def test_verify_repair_leaves_a_live_run_alone(env: Path, capsys) -> None:
    exp = dbx.create("a", repo=env)
    exp.log("e", x=1)
    exp.flush()
    with (exp.path / "log-1.jsonl").open("a") as log:
        log.write('{"name": "e"')
    assert "still writing it" in one_line_error(capsys, "verify", "--repair")
    exp.close()


# --- OS errors -----------------------------------------------------------------------------


def test_symlinks_inside_a_repository_are_not_followed(env: Path, capsys) -> None:
    with dbx.create("real", repo=env):
        pass
    (env / "loop").symlink_to(env)
    (env / "root").symlink_to("/")
    (env / "real" / "self").symlink_to(env / "real")
    code, out, _ = run(capsys, "ls", "--columns", "name")
    assert code == 0 and out.split()[2:] == ["real"]
    assert run(capsys, "verify")[0] == 0


def test_an_unreadable_folder_is_skipped_with_a_warning(env: Path, capsys, monkeypatch) -> None:
    with dbx.create("a/x", repo=env), dbx.create("b/y", repo=env):
        pass
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == env / "a":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(store.os, "scandir", scandir)
    code, out, err = run(capsys, "ls", "--columns", "name")
    assert code == 0 and out.split()[-1] == "b/y"
    assert err == f"dbx: warning: skipping folder {env / 'a'}: Permission denied\n"


@pytest.mark.parametrize("under", ["file", "/proc/x"])
def test_a_repository_cannot_be_made_under_a_file_or_an_impossible_path(
    tmp_path: Path, capsys, under: str
) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "repo" if under == "file" else Path(under) / "repo"
    err = one_line_error(capsys, "init", str(target))
    assert "cannot create a repository at" in err
    with pytest.raises(UserError, match="cannot create a repository"):
        dbx.create("a", repo=target)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * 256, "256 bytes; each part may be at most 255"),
        ("a/" + "é" * 128, "256 bytes"),
        ("bad\udc80name", "not valid Unicode"),
    ],
)
def test_names_that_cannot_be_file_names(env: Path, capsys, name: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        dbx.create(name, repo=env)
    with dbx.create("a", repo=env) as exp:
        source = env.parent / "f.bin"
        source.write_bytes(b"x")
        with pytest.raises(UserError, match=message):
            exp.attach(source, name=name)
    assert sorted(p.name for p in env.iterdir()) == [".dbx", "a"]


def test_notes_with_surrogates_are_refused(env: Path) -> None:
    with dbx.create("a", repo=env) as exp:
        with pytest.raises(UserError, match="not valid Unicode"):
            exp.notes = "bad \udc80"
        with pytest.raises(UserError, match="not valid Unicode"):
            exp.append_notes("bad \udc80")
    assert exp.notes == ""


def test_writes_to_a_read_only_repository_are_one_line_errors(
    env: Path, capsys, monkeypatch
) -> None:
    with dbx.create("a", repo=env):
        pass
    real_open = os.open

    def read_only(path, flags, *args):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    for argv in (["notes", "a", "x"], ["log", "a", "e", "x=1"], ["init", str(env / "sub")]):
        assert "Read-only file system" in one_line_error(capsys, *argv)
    assert run(capsys, "ls")[0] == 0  # reading still works


# --- permissions and attachments -------------------------------------------------------------


def test_attaching_keeps_the_permission_bits(env: Path) -> None:
    source = env.parent / "secret.key"
    source.write_bytes(b"k")
    source.chmod(0o600)
    with dbx.create("a", repo=env) as exp:
        exp.attach(source)
    assert stat.S_IMODE(exp.attachment_path("secret.key").stat().st_mode) == 0o600


def test_lock_files_are_group_writable_under_umask_002(env: Path) -> None:
    old = os.umask(0o002)
    try:
        with dbx.create("a", repo=env) as exp:
            exp.results["x"] = 1
    finally:
        os.umask(old)
    assert stat.S_IMODE((exp.path / ".lock").stat().st_mode) == 0o664


def test_a_lock_file_that_cannot_be_written_is_locked_read_only(tmp_path: Path, monkeypatch):
    lock = tmp_path / ".lock"
    lock.write_text("")
    real_open = os.open

    def no_write(path, flags, *args):
        if flags & os.O_RDWR:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_write)
    with fileio.locked(lock):
        pass


def test_attachment_names_resolve_exactly(env: Path) -> None:
    a, b = env.parent / "a.bin", env.parent / "b.bin"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    with dbx.create("x", repo=env) as exp:
        exp.attach(a, name="model.pt")
        exp.attach(b, name="files/model.pt")
    assert exp.attachment_path("model.pt").read_bytes() == b"a"
    assert exp.attachment_path("files/model.pt").read_bytes() == b"b"
    with pytest.raises(UserError, match="no attachment 'other'"):
        exp.attachment_path("other")


def test_a_reattach_killed_before_its_record_keeps_the_old_attachment(
    env: Path, monkeypatch
) -> None:
    old, new = env.parent / "old.bin", env.parent / "new.bin"
    old.write_bytes(b"old content")
    new.write_bytes(b"new content, longer")
    with dbx.create("x", repo=env) as exp:
        exp.attach(old, name="m.bin")

    real = store.atomic_write

    def crash(path, data):
        if Path(path).name == "attachments.json":
            raise KeyboardInterrupt  # the process dies between the content and its record
        real(path, data)

    monkeypatch.setattr(store, "atomic_write", crash)
    with pytest.raises(KeyboardInterrupt):
        exp.attach(new, name="m.bin")
    monkeypatch.undo()
    assert exp.attachment_path("m.bin").read_bytes() == b"old content"
    assert env.joinpath("..").resolve() and exp.repo.verify() == []
    exp.attach(new, name="m.bin")  # and the next attach completes
    assert exp.attachment_path("m.bin").read_bytes() == b"new content, longer"
    exp.attach(old, name="m.bin")
    assert exp.attachment_path("m.bin").read_bytes() == b"old content"
    assert exp.repo.verify() == []


def test_stored_text_that_is_not_valid_unicode_prints_escaped(env: Path, capfd) -> None:
    with dbx.create("a", repo=env) as exp:
        exp.log("odd\udc80name", note="\udcff")
    assert main(["show", "a"]) == 0  # not a UnicodeEncodeError
    out = capfd.readouterr().out
    assert "odd" in out and "name" in out


def test_show_prints_events_with_one_precision_and_a_bounded_width(env: Path, capsys) -> None:
    with dbx.create("a", repo=env) as exp:
        exp.log("e", loss=0.123456789, lr=1e-05, step=3, tag="x" * 300)
        exp.log("e", loss=2.0, lr=0.1, step=4, tag="y")
    code, out, _ = run(capsys, "show", "a")
    assert code == 0
    rows = out.split("last 2 of 2 events:")[1].strip().splitlines()[2:]
    first, second = (row.split(None, 3)[3] for row in rows)
    assert first.startswith("loss=0.123457 lr=1e-05 step=3 tag=xxx") and first.endswith("…")
    assert len(first) == 100 and second == "loss=2 lr=0.1 step=4 tag=y"


def test_verify_lists_an_unreadable_experiment_folder(env: Path, capsys, monkeypatch) -> None:
    with dbx.create("a", repo=env) as exp:
        pass
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == exp.path:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, out, _ = run(capsys, "verify")
    assert code == 1 and f"{exp.path}: cannot be read (Permission denied)" in out


def test_a_full_queue_is_drained_by_the_caller_when_the_writer_thread_is_gone(
    tmp_path: Path,
) -> None:
    writer = LogWriter(tmp_path / "log-1.jsonl", 1, interval=60, batch=10, max_queue=20)
    writer._stopping = True  # the thread ends at its next wake-up
    writer._wake.set()
    writer._thread.join(10)
    for i in range(100):
        writer.log("step", {"i": i})
    writer.close()
    assert len((tmp_path / "log-1.jsonl").read_text().splitlines()) == 100
