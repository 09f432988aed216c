"""Putting a converted dataset and its split in place together, and cleaning up after runs that were killed.

A run builds everything in hidden work folders, one beside each target:

* ``$nnUNet_raw/.DatasetXXX_Name.converting-<run>/``: ``new/`` (the dataset, with its ``splits_final.json``),
  ``old/`` (the dataset it replaces, once retired), ``.lock`` and ``owner.json`` (who is writing), ``commit.json``
  (written once the new dataset is complete and the old one retired: from then on the run is rolled forward).
* ``$nnUNet_preprocessed/.DatasetXXX_Name.converting-<run>/``: ``new/`` (the new preprocessed folder, holding only the
  split) and ``old/`` (the retired preprocessed folder: the old split and everything nnU-Net derived from the old
  dataset).

The names start with a dot, so nnU-Net, which finds datasets by the prefix ``DatasetXXX``, never sees them. The run
holds a shared ``fcntl`` lock on ``.lock`` for its whole life (its worker processes too); the kernel drops the lock
when a process dies, even by SIGKILL. A later run recovers a work folder only when it can take that lock
exclusively: a folder that is still being written is never touched. Recovery finishes a run that had reached
``commit.json`` and undoes one that had not, so the dataset and its split are always the old pair or the new pair.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

try:
    import fcntl
except ImportError:  # not on POSIX: no locks, and leftovers are only reported, never removed
    fcntl = None  # type: ignore[assignment]

WORK_FOLDER = re.compile(r"\.(Dataset\d{3}_[A-Za-z0-9-]+)\.converting-([0-9a-f]{8,32})")
#: Hidden folders the converters of earlier versions left (no lock: they can only be reported).
LEGACY_FOLDER = re.compile(r"\.(Dataset\d{3}_[A-Za-z0-9-]+)\.(?:converting|replaced)-[0-9a-f]{8}")
LOCK_FILE = ".lock"
OWNER_FILE = "owner.json"
COMMIT_FILE = "commit.json"
NEW, OLD = "new", "old"


class TransactionError(OSError):
    """A work folder could not be created or moved; the message names the path and the reason."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``completed`` tells whether the dataset had already been put in place."""

    def __init__(self, signum: int, completed: bool = False):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.completed = completed


def _describe(error: OSError) -> str:
    return error.strerror or str(error)


def write_json_atomically(content: object, path: Path) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(content, indent=4) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_work_folder(folder: Path) -> None:
    """Remove a work folder, its lock file last: a half-removed folder still carries its lock and stays ours."""
    if not folder.exists():
        return
    for child in folder.iterdir():
        if child.name == LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    (folder / LOCK_FILE).unlink(missing_ok=True)
    folder.rmdir()


def _lock(fd: int, exclusive: bool, blocking: bool) -> bool:
    """Take an fcntl lock on ``fd``; False if another process holds a conflicting one (only when not blocking)."""
    if fcntl is None:
        return True
    flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
    try:
        fcntl.lockf(fd, flags)
    except (BlockingIOError, PermissionError):
        return False
    return True


# ----------------------------------------------------------------------------------------------------------------------
# Signals
# ----------------------------------------------------------------------------------------------------------------------

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _signals_handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM go to ``handler`` (only in the main thread, where Python runs handlers);
    the previous handlers come back after it."""
    if not _in_main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within the block, SIGTERM (a cluster job's time limit, ``kill``) raises :class:`Interrupted` like Ctrl-C."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    with _signals_handled_by(handler):
        yield


@contextmanager
def interrupts_deferred(pending: list[int]) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM are only recorded in ``pending`` (the caller acts on them after it)."""
    with _signals_handled_by(lambda signum, frame: pending.append(signum)):
        yield


# ----------------------------------------------------------------------------------------------------------------------
# Worker processes
# ----------------------------------------------------------------------------------------------------------------------

_worker_lock_fd: int | None = None


def init_worker(lock_path: str | None, parent_pid: int) -> None:
    """Pool initializer: share the run's lock, leave Ctrl-C to the parent, and die with the parent.

    A worker whose parent was killed (SIGKILL) would otherwise go on writing into a work folder that the next run
    considers abandoned; the shared lock keeps that run away until the worker is gone, and the watchdog makes sure it
    goes within a fraction of a second.
    """
    global _worker_lock_fd
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if lock_path is not None:
        _worker_lock_fd = os.open(lock_path, os.O_RDWR)
        _lock(_worker_lock_fd, exclusive=False, blocking=True)

    def watchdog() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.2)
        os._exit(1)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()


# ----------------------------------------------------------------------------------------------------------------------
# A run
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class Transaction:
    """The work folders of one run and the steps that put their content in place.

    Attributes:
        raw_target: ``$nnUNet_raw/DatasetXXX_Name``.
        preprocessed_target: ``$nnUNet_preprocessed/DatasetXXX_Name``.
        run_id: Hex ID shared by both work folders.
    """

    raw_target: Path
    preprocessed_target: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    lock_fd: int | None = None
    committed: bool = False

    @property
    def raw_work(self) -> Path:
        return self.raw_target.parent / f".{self.raw_target.name}.converting-{self.run_id}"

    @property
    def preprocessed_work(self) -> Path:
        return self.preprocessed_target.parent / f".{self.preprocessed_target.name}.converting-{self.run_id}"

    @property
    def new_raw(self) -> Path:
        """Where the converted dataset is built."""
        return self.raw_work / NEW

    @property
    def new_preprocessed(self) -> Path:
        """Where the new preprocessed folder (only the split) is built."""
        return self.preprocessed_work / NEW

    @property
    def lock_path(self) -> Path:
        return self.raw_work / LOCK_FILE

    def begin(self) -> None:
        """Create both work folders, locked and labelled with this process, before any conversion work.

        Raises:
            TransactionError: If either root cannot be written (read-only, full, no permission).
        """
        try:
            self.raw_work.mkdir()
        except OSError as e:
            raise TransactionError(f"{self.raw_target.parent}: cannot write here ({_describe(e)})") from e
        try:
            self.lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            _lock(self.lock_fd, exclusive=False, blocking=True)
            write_json_atomically(
                {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")},
                self.raw_work / OWNER_FILE,
            )
            self.new_raw.mkdir()
        except OSError as e:
            self.abort()
            raise TransactionError(f"{self.raw_target.parent}: cannot write here ({_describe(e)})") from e
        try:
            self.preprocessed_work.mkdir()
            self.new_preprocessed.mkdir()
        except OSError as e:
            self.abort()
            raise TransactionError(f"{self.preprocessed_target.parent}: cannot write here ({_describe(e)})") from e

    def commit(self) -> list[int]:
        """Swap the new dataset and split in for the old ones; SIGINT/SIGTERM wait until the swap is done.

        Both old folders are first moved into the work folders (undone if that fails), then ``commit.json`` is
        written, then the new folders are moved into place. A run killed before ``commit.json`` is undone by the next
        run, one killed after it is finished by the next run.

        Returns:
            The signals that arrived during the swap.

        Raises:
            TransactionError: If an old folder cannot be moved aside (nothing has changed then).
        """
        pending: list[int] = []
        with interrupts_deferred(pending):
            retired: list[tuple[Path, Path]] = []
            try:
                pairs = ((self.preprocessed_target, self.preprocessed_work), (self.raw_target, self.raw_work))
                for target, work in pairs:
                    if target.exists() or target.is_symlink():
                        os.replace(target, work / OLD)
                        retired.append((work / OLD, target))
                write_json_atomically({"raw": str(self.raw_target), "preprocessed": str(self.preprocessed_target)},
                            self.raw_work / COMMIT_FILE)
            except OSError as e:
                for old, target in reversed(retired):
                    os.replace(old, target)
                where = e.filename or self.raw_target
                raise TransactionError(f"{where}: cannot replace it ({_describe(e)}); nothing was changed") from e
            _roll_forward(self.raw_work, self.preprocessed_work, self.raw_target, self.preprocessed_target)
            self.committed = True
        return pending

    def abort(self) -> None:
        """Undo a run that has not committed: put back anything retired and remove both work folders."""
        if not self.committed:
            _roll_back(self.raw_work, self.preprocessed_work, self.raw_target, self.preprocessed_target)
        self.finish()

    def finish(self) -> None:
        """Remove both work folders (with the retired old dataset) and release the lock."""
        try:
            shutil.rmtree(self.preprocessed_work, ignore_errors=True)
            _remove_work_folder(self.raw_work)
        except OSError:
            pass  # what is left keeps its lock file, so the next run recognises and removes it
        finally:
            if self.lock_fd is not None:
                os.close(self.lock_fd)
                self.lock_fd = None


def _roll_forward(raw_work: Path, preprocessed_work: Path, raw_target: Path, preprocessed_target: Path) -> None:
    for work, target in ((preprocessed_work, preprocessed_target), (raw_work, raw_target)):
        if (work / NEW).exists() and not target.exists():
            os.replace(work / NEW, target)


def _roll_back(raw_work: Path, preprocessed_work: Path, raw_target: Path, preprocessed_target: Path) -> None:
    for work, target in ((raw_work, raw_target), (preprocessed_work, preprocessed_target)):
        if (work / OLD).exists() and not target.exists():
            os.replace(work / OLD, target)


# ----------------------------------------------------------------------------------------------------------------------
# Leftovers of other runs
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class Leftovers:
    """What a scan of the nnU-Net folders found.

    Attributes:
        recovered: One line per abandoned work folder that was finished or undone and removed.
        running: Dataset folder name -> work folder, for runs that are still alive.
        unknown: Hidden folders of our naming scheme without a lock (earlier converter versions): not touched.
    """

    recovered: list[str] = field(default_factory=list)
    running: dict[str, Path] = field(default_factory=dict)
    unknown: list[Path] = field(default_factory=list)


def owner_description(work: Path) -> str:
    try:
        owner = json.loads((work / OWNER_FILE).read_text(encoding="utf-8"))
        return f"pid {owner['pid']} on {owner['host']}, started {owner['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"


def recover_leftovers(raw_root: Path, preprocessed_root: Path) -> Leftovers:
    """Find work folders of earlier runs; finish or undo and remove those whose run is gone.

    A run is gone when its lock can be taken exclusively: no process holds it any more. Folders whose lock is held
    are reported as running and left alone, as are hidden folders without a lock file.
    """
    found = Leftovers()
    for entry in sorted(raw_root.iterdir()) if raw_root.is_dir() else []:
        match = WORK_FOLDER.fullmatch(entry.name)
        if match is None or not entry.is_dir():
            if LEGACY_FOLDER.fullmatch(entry.name) and entry.is_dir():
                found.unknown.append(entry)
            continue
        lock_path = entry / LOCK_FILE
        if not lock_path.is_file() or fcntl is None:
            found.unknown.append(entry)
            continue
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except OSError:
            found.unknown.append(entry)
            continue
        try:
            if not _lock(fd, exclusive=True, blocking=False):
                found.running[match.group(1)] = entry
                continue
            dataset, owner = match.group(1), owner_description(entry)
            preprocessed_work = preprocessed_root / entry.name
            raw_target, preprocessed_target = raw_root / dataset, preprocessed_root / dataset
            if (entry / COMMIT_FILE).is_file():
                _roll_forward(entry, preprocessed_work, raw_target, preprocessed_target)
                what = "finished its last step"
            else:
                _roll_back(entry, preprocessed_work, raw_target, preprocessed_target)
                what = "undone"
            shutil.rmtree(preprocessed_work, ignore_errors=True)
            _remove_work_folder(entry)
            found.recovered.append(f"{entry}: an interrupted conversion ({owner}) was {what} and removed")
        finally:
            os.close(fd)
    for entry in sorted(preprocessed_root.iterdir()) if preprocessed_root.is_dir() else []:
        match = WORK_FOLDER.fullmatch(entry.name)
        if match is None or not entry.is_dir() or (raw_root / entry.name).exists():
            if match is None and LEGACY_FOLDER.fullmatch(entry.name) and entry.is_dir():
                found.unknown.append(entry)
            continue
        # its run's raw work folder is gone, so the run ended: only an old preprocessed folder may need restoring
        target = preprocessed_root / match.group(1)
        if (entry / OLD).exists() and not target.exists():
            os.replace(entry / OLD, target)
        shutil.rmtree(entry, ignore_errors=True)
        found.recovered.append(f"{entry}: the rest of an interrupted conversion was removed")
    return found


def report_leftovers(found: Leftovers) -> None:
    """Print what recovery did and what it left alone, one line each."""
    for line in found.recovered:
        print(f"note: {line}")
    for folder in found.unknown:
        legacy = LEGACY_FOLDER.fullmatch(folder.name)
        if legacy is not None and ".replaced-" in folder.name:
            # an earlier version moved the old dataset here just before renaming the new one into place: if it was
            # killed in between, this is the only copy of that dataset
            target = folder.parent / legacy.group(1)
            print(
                f"warning: {folder}: a hidden folder left by an earlier converter version; it holds the dataset it "
                f"was replacing. If you need that dataset and no {target.name} folder is there, put it back: "
                f"mv '{folder}' '{target}'; otherwise remove it: rm -rf '{folder}'",
                file=sys.stderr,
            )
            continue
        print(
            f"warning: {folder}: a hidden folder left by an earlier converter version; nothing tells whether a "
            f"conversion is still writing it. If none is running, remove it: rm -rf '{folder}'",
            file=sys.stderr,
        )
