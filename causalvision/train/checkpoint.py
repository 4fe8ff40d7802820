"""Checkpoints of a training run: state pytree, data-iterator state and JSON metadata.

One small module over orbax's `CheckpointManager` (V0 API, see REFERENCE §11), so moving to
orbax V1 later touches only this file. Saves are asynchronous; each step is written to a
temporary directory and renamed when complete, so a killed run leaves either a whole
checkpoint or a `*.orbax-checkpoint-tmp` directory that readers ignore. A step directory
that exists but cannot be read (corrupted, truncated, copied half-way) is skipped with a
warning and the next older step is used; if none can be read, restoring fails loudly rather
than letting a run start again from scratch.

Integrity: orbax keeps no checksum of the data, so flipped bits in a step's files can
restore as wrong values without an error. Every save therefore records, in the step's own
JSON metadata, the sha256 of each state leaf's bytes and of each process's data position
(`DIGESTS`). They are hashed from a host copy of the state while it is at hand, before the
asynchronous write starts: no waiting for the write, no second read of the files (the cost
is one more device-to-host copy and a sha256 pass per save), and the digests are committed
by the same atomic rename as the data they describe. Restoring hashes
what was read, and a step that does not match is skipped like an unreadable one. Steps
written before digests existed (causalvision 0.1) have none; they load unverified, without
a warning (there is nothing to check them against), and never count as verified.

A save that fails in the background (a full disk, say) is reported as one
`CheckpointSaveError` by `raise_if_failed` (cheap; the trainer calls it every step), by the
next `save`, or by `wait`. The failed step never becomes a checkpoint and older steps are
left as they were: orbax deletes steps beyond `max_to_keep` only after a save commits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import warnings
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from causalvision.train import distributed

DIGESTS = "sha256"  # the key of a step's digests in its metadata

_log = logging.getLogger(__name__)


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (a full disk, a read-only directory): training
    stops, older checkpoints are untouched. The OSError behind it is its `__cause__`."""


class Checkpointer:
    """Saves and restores `(state, data iterator, metadata)` under `directory`.

    Args:
      directory: where step directories `<step>/` live; created if missing.
      max_to_keep: how many finished checkpoints to keep (older ones are deleted).
      read_only: only read (`steps`, `restore`): nothing is created, and the directory need
        not exist.
    """

    def __init__(
        self, directory: str | pathlib.Path, max_to_keep: int = 2, *, read_only: bool = False
    ):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep: expected >= 1, got {max_to_keep}")
        self.directory = pathlib.Path(directory).absolute()
        # A reader creates nothing and, never saving, deletes nothing. (orbax's own read_only
        # option would warn on every restore.)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else max_to_keep, create=not read_only
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._pending: int | None = None  # the step being written in the background
        self._failed = False
        _quiet_orbax_tracebacks()

    def steps(self) -> list[int]:
        """Finished steps, oldest first (temporary directories of unfinished saves excluded)."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, iterator: Any = None, meta: dict | None = None) -> None:
        """Starts an asynchronous save of `state` (a pytree of arrays) at `step`.

        Raises:
          CheckpointSaveError: this save could not start, or the previous one failed.
        """
        self.wait()  # the previous save's failure is reported under its own step
        digests: dict[str, Any] = {"state": tree_digests(state)}
        items = {"state": ocp.args.StandardSave(state)}
        if iterator is not None:
            digests["data"] = distributed.gather_strings(_position_digest(iterator))
            items["data"] = grain.checkpoint.CheckpointSave(iterator)
        items["meta"] = ocp.args.JsonSave({**(meta or {}), DIGESTS: digests})
        try:
            if step in self._manager.all_steps():
                # A damaged step that `restore` skipped, reached again: only now, with its
                # replacement at hand, is it deleted (orbax will not overwrite a step).
                self._manager.delete(step)
            self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        except Exception as error:
            self._failed = True
            raise _save_error(self.directory, step, error) from error
        self._pending = step

    def raise_if_failed(self) -> None:
        """Raises `CheckpointSaveError` if the save in flight failed; never waits for one.

        Each process reports its own failure (in a multi-host run the others stop at their
        next barrier, or when the coordinator sees this one exit).
        """
        if self._pending is not None and not self._manager.is_saving_in_progress():
            self.wait()

    def wait(self) -> None:
        """Blocks until the save in flight is on disk.

        Raises:
          CheckpointSaveError: it failed.
        """
        step, self._pending = self._pending, None
        try:
            self._manager.wait_until_finished()
        except Exception as error:
            self._failed = True
            raise _save_error(self.directory, step, error) from error

    def restore(
        self,
        abstract_state: Any,
        iterator: Any = None,
        step: int | None = None,
        *,
        partial: bool = False,
    ) -> tuple[int, Any, dict] | None:
        """The newest readable, verified checkpoint (or `step`) as `(step, state, meta)`.

        Returns None if there is no checkpoint. `abstract_state` gives the structure, dtypes
        and shardings to restore into (e.g. `abstract_like(state)`); with `partial`, it may
        be a sub-tree of what was saved (say, the model without its optimiser state) and
        only its leaves are read and verified. `iterator`, if given, is set to the saved
        data position in place.

        Raises:
          ValueError: `step` is unreadable or fails verification, or checkpoints exist and
            none is readable.
        """
        state_args = _state_args(abstract_state, partial=partial)
        candidates = [step] if step is not None else self.steps()[::-1]
        newest_problem, newest_error = None, None
        for candidate in candidates:
            read, problem, error = self._read_verified(candidate, state_args, iterator)
            if read is not None:
                state, meta = read
                if partial:  # orbax hands back plain containers: restore the target's types
                    state = jax.tree.unflatten(
                        jax.tree.structure(abstract_state), jax.tree.leaves(state)
                    )
                return candidate, state, meta
            if step is not None:
                raise ValueError(
                    f"step: checkpoint {candidate} in {self.directory} is unreadable: {problem}"
                ) from error
            warnings.warn(
                f"skipping unreadable checkpoint {self.directory / str(candidate)}: {problem}",
                stacklevel=2,
            )
            if newest_problem is None:
                newest_problem, newest_error = problem, error
        if candidates:
            raise ValueError(
                f"no checkpoint in {self.directory} (steps {candidates}) can be read into this "
                f"state; was it written by another model or optimiser, or damaged? Newest "
                f"error: {newest_problem}"
            ) from newest_error
        return None

    def newest_verified(self, abstract_state: Any) -> int | None:
        """The newest step whose whole state reads back equal to its digests, or None.

        Reads into host memory, so it can run next to a live training state. Steps without
        digests (written before they existed) do not count.
        """
        host = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract_state)
        state_args = ocp.args.PyTreeRestore(abstract_state, restore_args=host)
        # A reader of its own: orbax ties an item to the handler it first saw (StandardSave
        # here), and the host read needs PyTreeRestore.
        with Checkpointer(self.directory, read_only=True) as reader:
            for candidate in reader.steps()[::-1]:
                read, _, _ = reader._read_verified(
                    candidate, state_args, None, require_digests=True
                )
                if read is not None:
                    return candidate
        return None

    def _read_verified(
        self, step: int, state_args: Any, iterator: Any, *, require_digests: bool = False
    ) -> tuple[tuple[Any, dict] | None, str | None, Exception | None]:
        """`((state, meta), None, None)` if `step` reads and matches its digests on every
        process, else `(None, what is wrong, the exception if one was raised)`."""
        items = {"state": state_args, "meta": ocp.args.JsonRestore()}
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(iterator)
        read, problem, error = None, None, None
        try:
            out = self._manager.restore(step, args=ocp.args.Composite(**items))
            meta = dict(out.meta or {})
            digests = meta.pop(DIGESTS, None)
            if digests is None and require_digests:
                problem = "it has no digests"
            elif digests is None:
                _log.info("checkpoint %s predates digests; loaded unverified", step)
            else:
                problem = _mismatch(digests, out.state, iterator)
            read = (out.state, meta)
        except Exception as caught:  # orbax raises many types for unreadable data
            problem, error = f"{type(caught).__name__}: {str(caught)[:300]}", caught
        # Every process must settle on the same step, or the run would continue from two.
        if not distributed.everywhere(problem is None):
            return None, problem or "another process could not read or verify it", error
        return read, None, None

    def close(self) -> None:
        """Waits for the save in flight (see `wait`) and releases orbax's resources."""
        self.wait()
        # After a failed save, other writers of that step may still be running: closing
        # would cut them off and print their errors. They end by themselves, in the step's
        # temporary directory, which readers ignore.
        if not self._failed:
            self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, kind: Any, *exc_info: Any) -> None:
        try:
            self.close()
        except CheckpointSaveError:
            if kind is None:  # else keep the error already on its way out
                raise


def abstract_like(state: Any) -> Any:
    """The restore target for a state shaped (and sharded) like `state`."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def tree_digests(tree: Any) -> dict[str, str]:
    """The sha256 of every leaf of `tree`, keyed by its path ("model_opt/0/w/value").

    The dtype and shape are hashed with the bytes, so reading them back as another type
    cannot match either.
    """
    return {
        "/".join(_key_name(k) for k in path): _sha256(_host_array(leaf))
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _mismatch(digests: dict, state: Any, iterator: Any) -> str | None:
    """What of `state` (and the iterator's position) differs from `digests`; None if nothing."""
    recorded = digests.get("state", {})
    for name, digest in tree_digests(state).items():
        if recorded.get(name) != digest:
            return f"{name} does not match the sha256 recorded when it was saved"
    positions = digests.get("data")
    if iterator is not None and positions is not None and len(positions) == jax.process_count():
        if _position_digest(iterator) != positions[jax.process_index()]:
            return "its data position does not match the sha256 recorded when it was saved"
    return None


def _state_args(abstract_state: Any, *, partial: bool) -> Any:
    if not partial:
        return ocp.args.StandardRestore(abstract_state)
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
    return ocp.args.PyTreeRestore(abstract_state, restore_args=restore_args, partial_restore=True)


def _key_name(key: Any) -> str:
    for field in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey
        if hasattr(key, field):
            return str(getattr(key, field))
    return str(key)


def _host_array(leaf: Any) -> np.ndarray:
    """The whole value of `leaf` on this host (from the local copy when it is replicated)."""
    if isinstance(leaf, jax.Array):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if not leaf.is_fully_addressable:
            if leaf.is_fully_replicated:
                leaf = leaf.addressable_data(0)
            else:  # sharded across processes: every process assembles it (a collective)
                from jax.experimental import multihost_utils

                leaf = multihost_utils.process_allgather(leaf, tiled=True)
    return np.asarray(leaf)


def _sha256(array: np.ndarray) -> str:
    digest = hashlib.sha256(f"{array.dtype.name}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return digest.hexdigest()


def _position_digest(iterator: Any) -> str:
    """The sha256 of a grain iterator's position (a dict, or bytes for a `DataLoader`)."""
    state = iterator.get_state()
    data = state if isinstance(state, bytes) else json.dumps(state, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


class _NoTraceback(logging.Filter):
    """Keeps the message of an orbax error record and drops its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and f"{os.sep}orbax{os.sep}" in record.pathname:
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_orbax_tracebacks() -> None:
    """A failed background save makes orbax log the same traceback from three threads
    (~130 frames) before `wait` raises it: the one-line `CheckpointSaveError`, which keeps
    the exception as its cause, would be buried under them."""
    logger = logging.getLogger("absl")  # orbax logs through absl.logging
    if not any(isinstance(f, _NoTraceback) for f in logger.filters):
        logger.addFilter(_NoTraceback())


def _save_error(directory: pathlib.Path, step: int | None, error: Exception) -> CheckpointSaveError:
    which = "the last checkpoint" if step is None else f"checkpoint {step}"
    return CheckpointSaveError(f"could not save {which} in {directory}: {_root_cause(error)}")


def _root_cause(error: BaseException) -> BaseException:
    """The innermost OSError behind `error` (a full disk, a read-only directory), or `error`."""
    found, seen = error, set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError):
            found = error
        error = error.__cause__ or error.__context__
    return found
