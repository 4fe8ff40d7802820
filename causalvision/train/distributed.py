"""Devices, processes and shardings for data-parallel training.

One process per host drives its local devices; `jax.distributed.initialize` joins the
processes (on TPU pods and under Slurm/Open MPI it finds the coordinator by itself). The mesh
has one axis, "data": the batch is split along it and the state is replicated. Fully sharded
parameters are the next step along the same path: give `state_sharding` a second mesh axis
and per-parameter `PartitionSpec`s (e.g. from `nnx.with_partitioning`), nothing else changes.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins a multi-process run; a no-op for a single process with no cluster around it.

    With an explicit `coordinator_address` ("host:port") all three arguments are needed.
    Without one, a cluster environment (TPU pod, Slurm, Open MPI) is detected by JAX itself
    when `CAUSALVISION_DISTRIBUTED=1` or Slurm/OMPI variables are present.
    """
    if coordinator_address is not None:
        if num_processes is None or process_id is None:
            raise ValueError(
                "num_processes, process_id: both are required with coordinator_address"
            )
        if not 0 <= process_id < num_processes:
            raise ValueError(f"process_id: expected 0 <= id < {num_processes}, got {process_id}")
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
        return
    cluster = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "CAUSALVISION_DISTRIBUTED")
    if any(os.environ.get(name) for name in cluster):
        jax.distributed.initialize()


def data_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh over all devices of all processes, axis "data" (Auto sharding mode)."""
    devices = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devices.reshape(-1), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def state_sharding(state: Any, mesh: Mesh) -> Any:
    """The sharding of every leaf of the training state: replicated (pure data parallelism)."""
    return jax.tree.map(lambda _: replicated(mesh), state)


def put_state(state: Any, shardings: Any) -> Any:
    """Places a host state (identical on every process) onto the mesh with `shardings`.

    `make_array_from_callback` works with any number of processes: each fills only its own
    devices from its (identical) host copy.
    """

    def put(leaf, sharding):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(leaf), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        host = np.asarray(jax.device_get(leaf))
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, state, shardings)


def put_batch(local_batch: Any, mesh: Mesh) -> Any:
    """This process's slice of the global batch -> one global array sharded along "data"."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )


def from_primary(flag: bool) -> bool:
    """Process 0's `flag` on every process (a collective: every process must call it)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def everywhere(flag: bool) -> bool:
    """Whether `flag` holds on every process (a collective: every process must call it)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.int32(flag))))


def gather_strings(value: str) -> list[str]:
    """Every process's `value`, by process index (a collective: every process must call it).

    The strings must have the same length on every process (digests, say).
    """
    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils

    codes = np.frombuffer(value.encode(), np.uint8)
    gathered = multihost_utils.process_allgather(codes)
    return [bytes(row).decode() for row in np.asarray(gathered).reshape(jax.process_count(), -1)]
