"""Running third-party numerics under causalvision's strict promotion settings."""

import contextlib
from collections.abc import Iterator

import jax


@contextlib.contextmanager
def lenient_promotion() -> Iterator[None]:
    """Standard dtype promotion and implicit rank broadcasting for third-party numerics.

    causalvision's own code is written for `jax_numpy_dtype_promotion="strict"` and
    `jax_numpy_rank_promotion="raise"`. optax's Adam and numpyro's samplers mix int step
    counters with floats, and numpyro distributions broadcast parameters of lower rank
    against sample shapes, so calls into them run under this context.
    """
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        yield
