"""A lock file beside a run's output, saying who runs it, so two invocations never train the same fold twice.

Why a lock *file* made with ``O_CREAT | O_EXCL`` and not ``flock``: the runs of a study live on the cluster's
shared file system (NFS, Lustre, GPFS), where ``flock``/``fcntl`` locks between nodes are unreliable or disabled,
while exclusive creation is atomic on NFSv3+ and on Lustre. A lock says who holds it (host, pid of our process and
of the nnU-Net process it started, start time) and is kept fresh by a heartbeat (its mtime, every
:data:`HEARTBEAT_S` seconds). It is stale, and may be taken over, when

* it was made on this host and none of its processes is alive (checked at once, no waiting), or
* it was made on another host and its heartbeat is older than :data:`STALE_AFTER_S` (a node that died; its pids
  cannot be checked from here).

A stale lock is renamed away (atomic; of two takers only one succeeds) and checked to be the one judged stale
before a new one is made. Clocks of different nodes only matter through the file system's mtimes, which the file
server sets.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


@dataclass(frozen=True)
class LockHolder:
    """What a lock file says, and how long ago its heartbeat was."""

    host: str
    pids: tuple[int, ...]
    started: str
    age_s: float
    content: str

    @property
    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        if self.on_this_host and self.pids:
            return any(_pid_alive(pid) for pid in self.pids)
        return self.age_s < STALE_AFTER_S  # another host, or a lock still being written: trust the heartbeat

    def describe(self) -> str:
        return f"{self.host} pid {'/'.join(map(str, self.pids)) or '?'} since {self.started}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    try:  # a zombie (killed, not yet reaped by its new parent) is not running anything
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):  # no /proc (macOS): trust kill(0)
        return True


def read_lock(path: Path) -> LockHolder | None:
    """The lock's holder, or None when there is no lock."""
    try:
        content = path.read_text(encoding="utf-8")
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        info = json.loads(content)
        return LockHolder(str(info["host"]), tuple(int(p) for p in info["pids"]), str(info["started"]), age, content)
    except (ValueError, KeyError, TypeError):  # being written right now, or damaged: only the heartbeat can tell
        return LockHolder("?", (), "?", age, content)


class RunLock:
    """Hold ``path`` while a run executes: ``acquire()`` (False when someone else holds it), ``set_child(pid)``,
    ``release()``; a thread refreshes the heartbeat meanwhile."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key
        self._pids: list[int] = [os.getpid()]
        self._started = datetime.now().isoformat(timespec="seconds")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _content(self) -> str:
        return json.dumps({"run": self.key, "host": socket.gethostname(), "pids": self._pids,
                           "started": self._started})

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_lock(self.path)
                if holder is not None and (holder.alive() or not self._break_stale(holder)):
                    return False
                continue
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(self._content())
            self._thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat {self.key}")
            self._thread.start()
            return True
        return False

    def _break_stale(self, holder: LockHolder) -> bool:
        """Move a stale lock away; False when another process got there first or the lock changed meanwhile."""
        aside = self.path.with_name(f"{self.path.name}.stale.{socket.gethostname()}.{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True  # someone else removed it; try to create ours
        if aside.read_text(encoding="utf-8") != holder.content:  # we moved a fresh lock: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink()
            return False
        aside.unlink()
        return True

    def set_child(self, pid: int) -> None:
        """Record the nnU-Net process too: it keeps the run alive even if ours is gone."""
        self._pids = [os.getpid(), pid]
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(self._content(), encoding="utf-8")
        os.replace(temporary, self.path)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self) -> None:
        self._stop.set()
        holder = read_lock(self.path)
        if holder is not None and holder.content == self._content():
            self.path.unlink(missing_ok=True)
