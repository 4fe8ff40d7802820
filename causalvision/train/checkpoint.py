"""Checkpoints of a training run: state pytree, data-iterator state and JSON metadata.

One small module over orbax's `CheckpointManager` (V0 API, see REFERENCE §11), so moving to
orbax V1 later touches only this file. Saves are asynchronous; each step is written to a
temporary directory and renamed when complete, so a killed run leaves either a whole
checkpoint or a `*.orbax-checkpoint-tmp` directory that readers ignore. A step directory
that exists but cannot be read (corrupted, truncated, copied half-way) is skipped with a
warning and the next older step is used; if none can be read, restoring fails loudly rather
than letting a run start again from scratch.
"""

from __future__ import annotations

import pathlib
import warnings
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores `(state, data iterator, metadata)` under `directory`.

    Args:
      directory: where step directories `<step>/` live; created if missing.
      max_to_keep: how many finished checkpoints to keep (older ones are deleted).
    """

    def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 2):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep: expected >= 1, got {max_to_keep}")
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """Finished steps, oldest first (temporary directories of unfinished saves excluded)."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, iterator: Any = None, meta: dict | None = None) -> None:
        """Starts an asynchronous save of `state` (a pytree of arrays) at `step`."""
        items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta or {})}
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(iterator)
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore(
        self,
        abstract_state: Any,
        iterator: Any = None,
        step: int | None = None,
        *,
        partial: bool = False,
    ) -> tuple[int, Any, dict] | None:
        """The newest readable checkpoint (or `step`) as `(step, state, meta)`; None if none.

        `abstract_state` gives the structure, dtypes and shardings to restore into (e.g.
        `jax.tree.map(ocp.utils.to_shape_dtype_struct, state)`); with `partial`, it may be a
        sub-tree of what was saved (say, the model without its optimiser state) and only
        its leaves are read. `iterator`, if given, is set to the saved data position in place.

        Raises:
          ValueError: `step` is unreadable, or checkpoints exist and none is readable.
        """
        if partial:
            restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
            state_args = ocp.args.PyTreeRestore(
                abstract_state, restore_args=restore_args, partial_restore=True
            )
        else:
            state_args = ocp.args.StandardRestore(abstract_state)
        candidates = [step] if step is not None else self.steps()[::-1]
        first_error = None
        for candidate in candidates:
            items = {"state": state_args, "meta": ocp.args.JsonRestore()}
            if iterator is not None:
                items["data"] = grain.checkpoint.CheckpointRestore(iterator)
            try:
                out = self._manager.restore(candidate, args=ocp.args.Composite(**items))
            except Exception as error:  # orbax raises many types for unreadable data
                if step is not None:
                    raise ValueError(
                        f"step: checkpoint {candidate} in {self.directory} is unreadable: {error}"
                    ) from error
                warnings.warn(
                    f"skipping unreadable checkpoint {self.directory / str(candidate)}: "
                    f"{type(error).__name__}: {str(error)[:200]}",
                    stacklevel=2,
                )
                first_error = first_error or error
                continue
            if partial:  # orbax hands back plain containers: restore the target's types
                leaves = jax.tree.leaves(out.state)
                return (
                    candidate,
                    jax.tree.unflatten(jax.tree.structure(abstract_state), leaves),
                    dict(out.meta or {}),
                )
            return candidate, out.state, dict(out.meta or {})
        if candidates:
            raise ValueError(
                f"no checkpoint in {self.directory} (steps {candidates}) can be read into this "
                f"state; was it written by another model or optimiser? Newest error: "
                f"{type(first_error).__name__}: {str(first_error)[:300]}"
            ) from first_error
        return None

    def wait(self) -> None:
        """Blocks until every pending asynchronous save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def abstract_like(state: Any) -> Any:
    """The restore target for a state shaped (and sharded) like `state`."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
