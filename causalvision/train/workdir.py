"""One run per workdir: an advisory lock that a crashed run cannot leave behind.

A run holds `workdir/run.lock` with `fcntl.flock` for as long as it trains. The kernel drops
the lock when the holding process exits however it exits (`kill -9` included), so a lock is
never stale; the file itself stays and only says who held it last (pid, host, start time),
for the message a second run gets. Reading a run (`load_run`, `restore`) takes no lock.

Multi-host runs take the lock once, on process 0: orbax already needs the workdir on a
filesystem every process shares, so one lock there covers the run, and every process learns
from process 0 whether it got it (so none trains alone or waits forever at a barrier). On
filesystems that do not share locks between clients (some FUSE mounts such as gcsfuse; NFS
without lockd), the lock only excludes runs on the same host. `fcntl` is POSIX-only; on
Windows this module would need `msvcrt.locking` instead.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import pathlib
import socket
from collections.abc import Iterator

import jax

from causalvision.train import distributed
from causalvision.validation import check_directory

LOCK_NAME = "run.lock"


class WorkdirBusyError(ValueError):
    """Another run holds the workdir; wait for it or choose another workdir."""


@contextlib.contextmanager
def owned(workdir: str | pathlib.Path) -> Iterator[pathlib.Path]:
    """Holds `workdir` (created if missing) for this run; yields it as a path.

    Raises:
      WorkdirBusyError: another live run holds it.
      ValueError: it is a file, cannot be created or is not writable.
    """
    workdir = pathlib.Path(workdir)
    fd, error = None, None
    if jax.process_index() == 0:
        try:
            fd = acquire(workdir)
        except Exception as caught:  # raised below, once every process knows
            error = caught
    try:
        if not distributed.from_primary(error is None):
            raise error or WorkdirBusyError(
                f"workdir: process 0 could not take {str(workdir)!r}; see its error"
            )
        yield workdir
    finally:
        if fd is not None:
            release(fd)


def acquire(workdir: pathlib.Path) -> int:
    """Creates `workdir` if needed and locks it; returns the lock's file descriptor."""
    check_directory(workdir, "workdir")
    path = workdir / LOCK_NAME
    try:
        # Python's fds are close-on-exec; forked workers would share the lock until they exit.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise ValueError(f"workdir: {str(workdir)!r} is not writable ({error.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe(_read_holder(fd))
        os.close(fd)
        raise WorkdirBusyError(
            f"workdir: {workdir} is in use by another run ({holder}); "
            "wait for it or choose another workdir"
        ) from None
    except OSError as error:  # e.g. ENOLCK: a filesystem without locking
        os.close(fd)
        raise ValueError(f"workdir: {str(workdir)!r} cannot be locked ({error.strerror})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(_holder()).encode(), 0)
    return fd


def release(fd: int) -> None:
    """Empties the lock file (so it names no one) and unlocks it."""
    os.ftruncate(fd, 0)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _holder() -> dict:
    since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": since}


def _read_holder(fd: int) -> dict | None:
    """What the holder wrote, or None (it may not have written it yet)."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "its details are not written yet"
    return (
        f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
        f"since {holder.get('since', '?')}"
    )
