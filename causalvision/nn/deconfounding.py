"""Deconfounding layers: back-door and front-door adjustment for P(Y | do(X)) (REFERENCE §4).

- `BackdoorAdjustment`: VC R-CNN's layer. A dictionary Z [C, D] of confounder values (e.g.
  class-mean features) and a prior P(c) stand for the confounder; the layer feeds the head
  [x ; E_z[z]] with E_z[z] = Σ_c P(c) A_c(x) Z_c, the normalised weighted geometric mean
  (NWGM) approximation of Σ_c P(c) P(Y | x, Z_c). `exact` computes that sum itself, and
  `backdoor_adjust` is the sum over conditional logits a model computed for every c.
- `FeatureWiseAdjustment`, `ClassWiseAdjustment`: IFSL's chunked classifiers, averaged in
  log space.
- `FrontDoorAttention`: CATT, in-sample self-attention beside cross-sample attention over a
  global dictionary.
- `kmeans`, `assign_clusters`, `confounder_dictionary`, `label_prior`, `uniform_prior`:
  dictionaries and priors from data.

Frozen inputs (a given dictionary, a prior, IFSL's class means) are `Dictionary` / `Prior`
variables, not `nnx.Param`: an optimiser over `nnx.Param` (the trainer's default) leaves them
as they are, while they still travel with the model in `nnx.state` and in checkpoints.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from causalvision.validation import check_int, check_key, check_real_array, preview

Array = jax.Array

__all__ = [
    "BackdoorAdjustment",
    "ClassWiseAdjustment",
    "Dictionary",
    "FeatureWiseAdjustment",
    "FrontDoorAttention",
    "Prior",
    "assign_clusters",
    "backdoor_adjust",
    "confounder_dictionary",
    "kmeans",
    "label_prior",
    "uniform_prior",
]

PRIOR_TOLERANCE = 1e-4  # |Σ_c P(c) - 1| accepted in a prior


class Dictionary(nnx.Variable):
    """A frozen dictionary (confounder values, class means): model state, not an `nnx.Param`."""


class Prior(nnx.Variable):
    """A frozen prior P(c) over a dictionary's rows: model state, not an `nnx.Param`."""


# -- boundary checks (shapes are static, so the call-time checks also run under jit) ----------


def _check_matrix(
    value: Any, argument: str, width: int | None = None, what: str = "", rows: str = "C"
) -> Array:
    """`value` as a finite float32 [rows, D] array (rows >= 1), with D = `width` if given."""
    shape = tuple(np.shape(value))
    if len(shape) != 2 or shape[0] < 1:
        raise ValueError(
            f"{argument}: expected a 2-D array [{rows}, D] with {rows} >= 1, got shape {shape}"
        )
    if width is not None and shape[1] != width:
        raise ValueError(f"{argument}: expected rows of width {width} ({what}), got shape {shape}")
    if isinstance(value, jax.core.Tracer):
        return value.astype(jnp.float32)
    array = np.asarray(value)  # checked in place: no float64 copy of a large feature matrix
    if array.dtype.kind not in "iuf" or not np.isfinite(array).all():
        raise ValueError(f"{argument}: expected finite number(s), got {preview(value)}")
    return jnp.asarray(array, jnp.float32)


def _check_prior(value: Any, argument: str = "prior", size: int | None = None) -> Array:
    """`value` as a float32 [C] probability vector: finite, >= 0, summing to 1 (within 1e-4).

    Values are read only when concrete; under jit only the shape is checked.
    """
    shape = tuple(np.shape(value))
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(
            f"{argument}: expected a 1-D array [C] of probabilities, got shape {shape}"
        )
    if size is not None and shape[0] != size:
        raise ValueError(
            f"{argument}: expected C = {size} probabilities (one per dictionary row), "
            f"got shape {shape}"
        )
    values = check_real_array(value, argument, 0.0)
    if not isinstance(values, jax.core.Tracer):
        total = float(values.sum())
        if abs(total - 1.0) > PRIOR_TOLERANCE:
            raise ValueError(
                f"{argument}: expected probabilities summing to 1 (within {PRIOR_TOLERANCE}), "
                f"got {preview(value)} summing to {total:.6g}"
            )
    return jnp.asarray(values, jnp.float32)


def _check_last(x: Any, size: int, argument: str, what: str) -> None:
    shape = tuple(np.shape(x))
    if not shape or shape[-1] != size:
        raise ValueError(f"{argument}: expected shape (..., {size}) ({what}), got {shape}")


def _check_divisor(num_chunks: Any, features: int) -> int:
    num_chunks = check_int(num_chunks, "num_chunks", 1)
    if features % num_chunks:
        raise ValueError(
            f"num_chunks: expected a divisor of features = {features} (contiguous chunks of "
            f"equal width), got {num_chunks}"
        )
    return num_chunks


def _is_size(value: Any) -> bool:
    return isinstance(value, int | np.integer)  # bools included: check_int refuses them


def _lead(vector: Array, ndim: int) -> Array:
    """`vector` with leading unit axes up to `ndim` (explicit rank promotion)."""
    return vector.reshape((1,) * (ndim - vector.ndim) + vector.shape)


def _uniform_dictionary(key: Array, size: int, width: int) -> Array:
    """CATT's initialisation of a learned dictionary: uniform[0, 1) / 100, [size, width]."""
    return jax.random.uniform(key, (size, width), jnp.float32) / 100.0


def uniform_prior(num_entries: int) -> np.ndarray:
    """P(c) = 1 / C: float32 [C]."""
    num_entries = check_int(num_entries, "num_entries", 1)
    return np.full((num_entries,), 1.0 / num_entries, np.float32)


# -- back-door adjustment ---------------------------------------------------------------------


def backdoor_adjust(conditional_logits: Array, prior: Array) -> Array:
    """The back-door sum log Σ_c P(c) softmax(logits_c), computed stably.

    Args:
      conditional_logits: `[..., C, K]` logits of P(Y | x, c), one row per confounder value c
        (e.g. log P(y | x, z) of a model that sees the observed confounder).
      prior: `[C]` P(c), non-negative and summing to 1.

    Returns:
      `[..., K]` log P(Y | do(x)): log-probabilities of the prior-weighted mixture of the
      conditionals' probabilities (not of their logits).
    """
    prior = _check_prior(prior, "prior")
    shape = tuple(np.shape(conditional_logits))
    if len(shape) < 2 or shape[-2] != prior.shape[0]:
        raise ValueError(
            f"conditional_logits: expected shape (..., C={prior.shape[0]}, K), got {shape}"
        )
    return _backdoor_adjust(jnp.asarray(conditional_logits), prior)


def _backdoor_adjust(logits: Array, prior: Array) -> Array:
    log_p = jax.nn.log_softmax(logits, axis=-1)
    weights = jnp.broadcast_to(prior.astype(log_p.dtype)[:, None], log_p.shape)
    return jax.nn.logsumexp(log_p, axis=-2, b=weights)  # zero weights drop their terms


def _dictionary_attention(queries: Array, keys: Array) -> Array:
    """softmax_c(q · k_c / √E): queries `[..., E]`, keys `[C, E]` -> `[..., C]`."""
    scores = jnp.einsum("...e,ce->...c", queries, keys) / math.sqrt(queries.shape[-1])
    return jax.nn.softmax(scores, axis=-1)


def _confounder_weights(attention: Array, prior: Array, normalize: bool) -> Array:
    """P(c) A_c `[..., C]`, renormalised over c if `normalize`."""
    weights = attention * _lead(prior, attention.ndim)
    return weights / jnp.sum(weights, axis=-1, keepdims=True) if normalize else weights


_FUSIONS: dict[str, tuple[Callable[[int, int], int], Callable[[Array, Array], Array]]] = {
    # name: (output width from (D, D_z), fuse(x, z))
    "concat": (lambda d, dz: d + dz, lambda x, z: jnp.concatenate([x, z], axis=-1)),
    "add": (lambda d, dz: d, lambda x, z: x + z),
    "none": (lambda d, dz: dz, lambda x, z: z),
}


class BackdoorAdjustment(nnx.Module):
    """VC R-CNN's back-door layer: features fused with the expected confounder E_z[z].

    A = softmax_c((x W_y)(Z W_z)ᵀ / √E) and z = Σ_c P(c) A_c Z_c; the output is [x ; z]
    (`fusion="concat"`), x + z (`"add"`) or z (`"none"`), for x of any leading shape
    (`[N, D]` RoIs, `[N, T, D]` tokens). The dictionary's rows may live in another space than
    x (`dictionary_features` D_z, e.g. another modality's features, as DCIN's inter-modal
    dictionary): W_z then maps D_z to E, and z has width D_z. A head on the output approximates
    Σ_c P(c) P(Y | x, Z_c) by softmax(head(x, E_z[z])) (NWGM); `exact(x, head)` computes the
    sum itself.

    The weights P(c) A_c sum to less than 1 by default, as in the reference code: the
    confounder vector is scaled down by that sum, and heads trained on the reference rely on
    that scale. `normalize_weights=True` renormalises them over c, so z is a convex
    combination of the rows (and equals Z_j for a point-mass prior on j).

    Args:
      features: D, the width of x (and of the dictionary's rows unless
        `dictionary_features`).
      dictionary: Z `[C, D_z]`, kept frozen (a `Dictionary` variable) unless
        `learn_dictionary`; or an int C for a learned `[C, D_z]` dictionary (an `nnx.Param`,
        initialised uniform[0, 1) / 100 as in CATT's released code).
      prior: P(c) `[C]`, frozen (a `Prior` variable); uniform by default.
      embed_dim: E, the width of the attention's queries and keys (default D).
      fusion: "concat", "add" (needs D_z = D) or "none" (see above).
      normalize_weights: renormalise P(c) A_c over c (default: the reference's unnormalised
        weights).
      learn_dictionary: train a given dictionary as an `nnx.Param`.
      dictionary_features: D_z, the width of the dictionary's rows (default D).
      rngs: initialisation of W_y, W_z: normal(std 0.02) kernels, zero biases (the
        reference), and of a learned dictionary given by its size.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> class_means = jnp.array([[1.0, 0.0], [0.0, 1.0]], jnp.float32)  # Z: C = 2 rows
      >>> prior = jnp.array([0.75, 0.25], jnp.float32)  # P(c)
      >>> rngs = nnx.Rngs(0)
      >>> layer = BackdoorAdjustment(2, class_means, prior, normalize_weights=True, rngs=rngs)
      >>> out = layer(jnp.ones((5, 2), jnp.float32))  # [x ; z]: [5, 2] -> [5, 4], for a head
      >>> out.shape == (5, layer.out_features)
      True
      >>> out[0].round(2).tolist()  # untrained, A ≈ uniform: z ≈ Σ_c P(c) Z_c
      [1.0, 1.0, 0.75, 0.25]
    """

    def __init__(
        self,
        features: int,
        dictionary: Array | np.ndarray | int,
        prior: Array | np.ndarray | None = None,
        *,
        embed_dim: int | None = None,
        fusion: str = "concat",
        normalize_weights: bool = False,
        learn_dictionary: bool = False,
        dictionary_features: int | None = None,
        rngs: nnx.Rngs,
    ):
        self.features = check_int(features, "features", 1)
        width = self.features if dictionary_features is None else dictionary_features
        self.dictionary_features = check_int(width, "dictionary_features", 1)
        what = "features" if dictionary_features is None else "dictionary_features"
        if fusion not in _FUSIONS:
            raise ValueError(f"fusion: expected one of {', '.join(_FUSIONS)}, got {fusion!r}")
        if fusion == "add" and self.dictionary_features != self.features:
            raise ValueError(
                f"fusion: 'add' needs dictionary_features = features = {self.features}, got "
                f"dictionary_features = {self.dictionary_features} (use 'concat' or 'none')"
            )
        self.fusion = fusion
        self.normalize_weights = bool(normalize_weights)
        if _is_size(dictionary):
            size = check_int(dictionary, "dictionary", 1)
            self.dictionary = nnx.Param(
                _uniform_dictionary(rngs.params(), size, self.dictionary_features)
            )
        else:
            z = _check_matrix(dictionary, "dictionary", self.dictionary_features, what)
            self.dictionary = nnx.Param(z) if learn_dictionary else Dictionary(z)
        self.num_entries = int(self.dictionary[...].shape[0])
        self.prior = Prior(
            jnp.asarray(uniform_prior(self.num_entries))
            if prior is None
            else _check_prior(prior, "prior", self.num_entries)
        )
        embed = self.features if embed_dim is None else embed_dim
        self.embed_dim = check_int(embed, "embed_dim", 1)
        init = nnx.initializers.normal(stddev=0.02)
        self.w_y = nnx.Linear(self.features, self.embed_dim, kernel_init=init, rngs=rngs)
        self.w_z = nnx.Linear(self.dictionary_features, self.embed_dim, kernel_init=init, rngs=rngs)

    @property
    def out_features(self) -> int:
        """Width of `__call__`'s output: D + D_z for "concat", D for "add", D_z for "none"."""
        return _FUSIONS[self.fusion][0](self.features, self.dictionary_features)

    def _fuse(self, x: Array, z: Array) -> Array:
        return _FUSIONS[self.fusion][1](x, z.astype(x.dtype))

    def attention(self, x: Array) -> Array:
        """A = softmax_c((x W_y)(Z W_z)ᵀ / √E): `[..., D]` -> `[..., C]`, rows summing to 1."""
        _check_last(x, self.features, "x", "features")
        return _dictionary_attention(self.w_y(x), self.w_z(self.dictionary[...]))

    def weights(self, x: Array) -> Array:
        """P(c) A_c: `[..., D]` -> `[..., C]`, summing to < 1 (to 1 if `normalize_weights`)."""
        return _confounder_weights(self.attention(x), self.prior[...], self.normalize_weights)

    def confounder(self, x: Array) -> Array:
        """E_z[z] = Σ_c weights_c Z_c: `[..., D]` -> `[..., D_z]`."""
        return jnp.einsum("...c,cd->...d", self.weights(x), self.dictionary[...])

    def __call__(self, x: Array) -> Array:
        """x `[..., D]` fused with its confounder: `[..., out_features]`."""
        return self._fuse(x, self.confounder(x))

    def exact(self, x: Array, head: Callable[[Array], Array]) -> Array:
        """The exact back-door sum log Σ_c P(c) softmax(head(fuse(x, Z_c))), for small C.

        Args:
          x: `[..., D]` features.
          head: any callable from fused features `[..., C, out_features]` to logits
            `[..., C, K]` (e.g. the head trained on this layer's outputs).

        Returns:
          `[..., K]` log-probabilities of the prior-weighted mixture of the conditionals.
        """
        _check_last(x, self.features, "x", "features")
        z = self.dictionary[...]
        xs = jnp.broadcast_to(x[..., None, :], (*x.shape[:-1], z.shape[0], x.shape[-1]))
        zs = jnp.broadcast_to(z, (*x.shape[:-1], *z.shape))
        logits = head(self._fuse(xs, zs))
        shape = tuple(np.shape(logits))
        if shape[:-1] != xs.shape[:-1]:
            raise ValueError(f"head: expected logits {(*xs.shape[:-1], 'K')}, got shape {shape}")
        return _backdoor_adjust(logits, self.prior[...])


# -- IFSL -------------------------------------------------------------------------------------


def _chunks(x: Array, num_chunks: int) -> Array:
    """`[..., F]` -> `[..., n, F / n]`, contiguous chunks."""
    return x.reshape(*x.shape[:-1], num_chunks, x.shape[-1] // num_chunks)


def _mean_log_softmax(logits: Array, normalize: bool) -> Array:
    """mean_k log_softmax(logits_k): `[..., n, K]` -> `[..., K]`, renormalised if asked."""
    out = jnp.mean(jax.nn.log_softmax(logits, axis=-1), axis=-2)
    return jax.nn.log_softmax(out, axis=-1) if normalize else out


class _ChunkHeads(nnx.Module):
    """n linear classifiers, head k reading chunk k: `[..., n, W]` -> logits `[..., n, K]`.

    One `[n, W, K]` kernel (LeCun-normal per head, as `nnx.Linear`) and zero biases `[n, K]`.
    """

    def __init__(self, num_chunks: int, width: int, num_classes: int, *, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
        shape = (num_chunks, width, num_classes)
        self.kernel = nnx.Param(init(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_chunks, num_classes), jnp.float32))

    def __call__(self, chunks: Array) -> Array:
        logits = jnp.einsum("...nw,nwk->...nk", chunks, self.kernel[...])
        return logits + _lead(self.bias[...], logits.ndim)


class FeatureWiseAdjustment(nnx.Module):
    """IFSL's feature-wise adjustment: x split into n contiguous chunks, one linear
    classifier per chunk, log-probabilities averaged over the chunks (a geometric mean).

    `__call__(x [..., F]) -> [..., K]`: mean_k log_softmax(W_k x_k + b_k). As in the
    reference this is the log of an unnormalised geometric mean (its exp sums to <= 1);
    `normalize=True` applies log_softmax to it. A softmax cross-entropy on the output
    renormalises anyway, so both train alike.

    Args:
      features: F, divisible by `num_chunks`.
      num_classes: K.
      num_chunks: n (8 in the reference).
      normalize: return normalised log-probabilities.
      rngs: initialisation of the chunk classifiers.
    """

    def __init__(
        self,
        features: int,
        num_classes: int,
        num_chunks: int = 8,
        *,
        normalize: bool = False,
        rngs: nnx.Rngs,
    ):
        self.features = check_int(features, "features", 1)
        self.num_classes = check_int(num_classes, "num_classes", 1)
        self.num_chunks = _check_divisor(num_chunks, self.features)
        self.normalize = bool(normalize)
        width = self.features // self.num_chunks
        self.heads = _ChunkHeads(self.num_chunks, width, self.num_classes, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        _check_last(x, self.features, "x", "features")
        return _mean_log_softmax(self.heads(_chunks(x, self.num_chunks)), self.normalize)


class ClassWiseAdjustment(nnx.Module):
    """IFSL's class-wise adjustment: d = P(a | x) X̄ over the base-class means X̄ [A, F];
    chunk classifier k reads [x_k ; d_k]; log-probabilities averaged over the chunks.

    `__call__(x [..., F], class_probs [..., A]) -> [..., K]`. `class_probs` are P(a | x),
    probabilities over the A base classes from the caller's pre-trained classifier (e.g. the
    softmax of its logits). The output is the mean of log_softmax over chunks, as in the
    reference (`normalize=True` renormalises it, as in `FeatureWiseAdjustment`).

    Args:
      features: F, divisible by `num_chunks`.
      num_classes: K.
      class_means: X̄ `[A, F]`, frozen (a `Dictionary` variable).
      num_chunks: n (8 in the reference).
      normalize: return normalised log-probabilities.
      rngs: initialisation of the chunk classifiers.
    """

    def __init__(
        self,
        features: int,
        num_classes: int,
        class_means: Array | np.ndarray,
        num_chunks: int = 8,
        *,
        normalize: bool = False,
        rngs: nnx.Rngs,
    ):
        self.features = check_int(features, "features", 1)
        self.num_classes = check_int(num_classes, "num_classes", 1)
        self.num_chunks = _check_divisor(num_chunks, self.features)
        self.normalize = bool(normalize)
        means = _check_matrix(class_means, "class_means", self.features, "features")
        self.class_means = Dictionary(means)
        self.num_base_classes = int(means.shape[0])
        width = 2 * self.features // self.num_chunks
        self.heads = _ChunkHeads(self.num_chunks, width, self.num_classes, rngs=rngs)

    def adjustment(self, class_probs: Array) -> Array:
        """d = P(a | x) X̄: `[..., A]` -> `[..., F]`."""
        _check_last(class_probs, self.num_base_classes, "class_probs", "base classes")
        return jnp.einsum("...a,af->...f", class_probs, self.class_means[...])

    def __call__(self, x: Array, class_probs: Array) -> Array:
        _check_last(x, self.features, "x", "features")
        _check_last(class_probs, self.num_base_classes, "class_probs", "base classes")
        if tuple(np.shape(class_probs))[:-1] != tuple(np.shape(x))[:-1]:
            raise ValueError(
                f"class_probs: expected the leading shape of x {tuple(np.shape(x))[:-1]}, "
                f"got shape {tuple(np.shape(class_probs))}"
            )
        d = self.adjustment(class_probs).astype(x.dtype)
        n = self.num_chunks
        chunks = jnp.concatenate([_chunks(x, n), _chunks(d, n)], axis=-1)
        return _mean_log_softmax(self.heads(chunks), self.normalize)


# -- front-door adjustment (CATT) -------------------------------------------------------------


def _split_heads(x: Array, num_heads: int) -> Array:
    """`[..., S, H]` -> `[..., S, h, H / h]`."""
    return x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)


def _attention_weights(queries: Array, keys: Array, mask: Array | None) -> Array:
    """Scaled dot-product attention weights per head.

    queries `[N, T, h, d]`; keys `[N, S, h, d]` (per sample) or `[S, h, d]` (shared);
    mask `[N, S]` bool (True = may be attended to) or None. Returns `[N, h, T, S]`, rows
    summing to 1 over the unmasked keys.
    """
    spec = "nthd,nshd->nhts" if keys.ndim == 4 else "nthd,shd->nhts"
    scores = jnp.einsum(spec, queries, keys) / math.sqrt(queries.shape[-1])
    if mask is not None:
        scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(scores.dtype).min)
    return jax.nn.softmax(scores, axis=-1)


class _MultiHeadAttention(nnx.Module):
    """Multi-head attention with query, key, value and output projections H -> H."""

    def __init__(self, features: int, num_heads: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.query = nnx.Linear(features, features, rngs=rngs)
        self.key = nnx.Linear(features, features, rngs=rngs)
        self.value = nnx.Linear(features, features, rngs=rngs)
        self.out = nnx.Linear(features, features, rngs=rngs)

    def weights(self, queries: Array, keys: Array, mask: Array | None = None) -> Array:
        """queries `[N, T, H]`, keys `[N, S, H]` or `[S, H]` -> `[N, h, T, S]`."""
        q = _split_heads(self.query(queries), self.num_heads)
        return _attention_weights(q, _split_heads(self.key(keys), self.num_heads), mask)

    def __call__(self, queries: Array, keys: Array, mask: Array | None = None) -> Array:
        """queries `[N, T, H]`, keys (= values) `[N, S, H]` or `[S, H]` -> `[N, T, H]`."""
        weights = self.weights(queries, keys, mask)
        v = _split_heads(self.value(keys), self.num_heads)
        spec = "nhts,nshd->nthd" if v.ndim == 4 else "nhts,shd->nthd"
        out = jnp.einsum(spec, weights, v)
        return self.out(out.reshape(*out.shape[:2], -1))


class FrontDoorAttention(nnx.Module):
    """CATT's causal attention: in-sample and cross-sample attention, fused by Linear(2H -> H).

    In-sample attention (IS-ATT) is multi-head self-attention over a sample's tokens; padded
    tokens (`mask` False) are never attended to. Cross-sample attention (CS-ATT) takes its
    queries from the same tokens and its keys and values from a global dictionary M [K, H]
    shared by all samples, so every token also sees the other samples' typical contents
    (the front-door sum over x). The two `[N, T, H]` outputs are concatenated and projected
    back to H. No dropout; no positional encoding (the layer is permutation-equivariant over
    tokens).

    `__call__(tokens [N, T, H], mask [N, T] | None) -> [N, T, H]`; a CNN feature map
    `[N, Hh, Ww, H]` (mask `[N, Hh, Ww]`) is read as Hh·Ww tokens and returned in its layout.

    In a ViT, use it in place of a block's self-attention, pre-LayerNorm with a residual:
    `h = h + catt(norm(h)); h = h + mlp(norm2(h))`. `residual=True` does the first step
    inside (its own LayerNorm on the tokens; the dictionary is not normalised). CATT's
    released code also gives CS-ATT its own feed-forward layer; here the block's MLP follows.

    Args:
      features: H, the token width, divisible by `num_heads`.
      dictionary: K, for a `[K, H]` dictionary initialised uniform[0, 1) / 100 (the released
        code), always learned; or an array `[K, H]` (e.g. k-means centroids of features),
        stored as given and learned unless `learn_dictionary=False` (then a frozen
        `Dictionary` variable).
      num_heads: heads of both attentions.
      learn_dictionary: train a given dictionary (an `nnx.Param`).
      residual: return tokens + layer(LayerNorm(tokens)).
      rngs: initialisation.
    """

    def __init__(
        self,
        features: int,
        dictionary: Array | np.ndarray | int,
        *,
        num_heads: int = 4,
        learn_dictionary: bool = True,
        residual: bool = False,
        rngs: nnx.Rngs,
    ):
        self.features = check_int(features, "features", 1)
        self.num_heads = check_int(num_heads, "num_heads", 1)
        if self.features % self.num_heads:
            raise ValueError(
                f"num_heads: expected a divisor of features = {self.features}, got {self.num_heads}"
            )
        if _is_size(dictionary):
            size = check_int(dictionary, "dictionary", 1)
            self.dictionary = nnx.Param(_uniform_dictionary(rngs.params(), size, self.features))
        else:
            m = _check_matrix(dictionary, "dictionary", self.features, "features")
            self.dictionary = nnx.Param(m) if learn_dictionary else Dictionary(m)
        self.in_sample = _MultiHeadAttention(self.features, self.num_heads, rngs=rngs)
        self.cross_sample = _MultiHeadAttention(self.features, self.num_heads, rngs=rngs)
        self.fuse = nnx.Linear(2 * self.features, self.features, rngs=rngs)
        self.norm = nnx.LayerNorm(self.features, rngs=rngs) if residual else None

    def _tokens(self, tokens: Array, mask: Array | None) -> tuple[Array, Array | None]:
        """tokens `[N, T, H]` or `[N, Hh, Ww, H]` as `[N, T', H]` (normalised if residual)
        and the mask as `[N, T']` bool."""
        shape = tuple(np.shape(tokens))
        if len(shape) not in (3, 4) or shape[-1] != self.features:
            h = self.features
            raise ValueError(
                f"tokens: expected tokens (N, T, {h}) or a feature map (N, Hh, Ww, {h}), "
                f"got shape {shape}"
            )
        if mask is not None and tuple(np.shape(mask)) != shape[:-1]:
            raise ValueError(
                f"mask: expected shape {shape[:-1]} (the tokens' shape without features), "
                f"got {tuple(np.shape(mask))}"
            )
        x = tokens.reshape(shape[0], -1, self.features)
        flat = None if mask is None else jnp.asarray(mask).astype(bool).reshape(shape[0], -1)
        return x, flat

    def attention_weights(self, tokens: Array, mask: Array | None = None) -> tuple[Array, Array]:
        """The in-sample `[N, h, T, T]` and cross-sample `[N, h, T, K]` attention weights."""
        x, flat = self._tokens(tokens, mask)
        x = x if self.norm is None else self.norm(x)
        return (
            self.in_sample.weights(x, x, flat),
            self.cross_sample.weights(x, self.dictionary[...]),
        )

    def __call__(self, tokens: Array, mask: Array | None = None) -> Array:
        x, flat = self._tokens(tokens, mask)
        h = x if self.norm is None else self.norm(x)
        dictionary = self.dictionary[...].astype(h.dtype)
        fused = jnp.concatenate(
            [self.in_sample(h, h, flat), self.cross_sample(h, dictionary)], axis=-1
        )
        out = self.fuse(fused)
        if self.norm is not None:
            out = x + out
        return out.reshape(tokens.shape)


# -- dictionaries and priors from data --------------------------------------------------------


def _squared_distances(points: Array, centroids: Array) -> Array:
    """||p - c||² `[N, K]` for points `[N, D]`, centroids `[K, D]`."""
    cross = jnp.einsum("nd,kd->nk", points, centroids)
    p2 = jnp.sum(points**2, axis=-1, keepdims=True)
    c2 = jnp.sum(centroids**2, axis=-1)[None, :]
    return jnp.maximum(p2 - 2.0 * cross + c2, 0.0)


def _kmeans_plus_plus(points: Array, key: Array, num_clusters: int) -> Array:
    """k-means++ seeding: each next centroid drawn with probability ∝ D(x)²."""
    n = points.shape[0]
    first_key, key = jax.random.split(key)
    first = points[jax.random.randint(first_key, (), 0, n)]
    centroids = jnp.zeros((num_clusters, points.shape[1]), points.dtype).at[0].set(first)
    nearest = jnp.sum((points - first[None, :]) ** 2, axis=-1)

    def add(i, carry):
        centroids, nearest = carry
        total = jnp.sum(nearest)
        # All points on the centroids already (fewer distinct points than clusters): uniform.
        p = jnp.where(total > 0, nearest / jnp.where(total > 0, total, 1.0), 1.0 / n)
        chosen = points[jax.random.choice(jax.random.fold_in(key, i), n, p=p)]
        nearest = jnp.minimum(nearest, jnp.sum((points - chosen[None, :]) ** 2, axis=-1))
        return centroids.at[i].set(chosen), nearest

    centroids, _ = jax.lax.fori_loop(1, num_clusters, add, (centroids, nearest))
    return centroids


def _lloyd_step(points: Array, centroids: Array) -> Array:
    """One Lloyd iteration; a cluster left empty keeps its centroid."""
    k = centroids.shape[0]
    assignment = jnp.argmin(_squared_distances(points, centroids), axis=-1)
    sums = jax.ops.segment_sum(points, assignment, num_segments=k)
    counts = jax.ops.segment_sum(jnp.ones_like(points[:, 0]), assignment, num_segments=k)
    means = sums / jnp.maximum(counts, 1.0)[:, None]
    return jnp.where((counts > 0)[:, None], means, centroids)


@functools.partial(jax.jit, static_argnames=("num_clusters", "num_iters"))
def _kmeans(points: Array, key: Array, num_clusters: int, num_iters: int) -> Array:
    centroids = _kmeans_plus_plus(points, key, num_clusters)
    return jax.lax.fori_loop(0, num_iters, lambda _, c: _lloyd_step(points, c), centroids)


@jax.jit
def _assign(points: Array, centroids: Array) -> Array:
    return jnp.argmin(_squared_distances(points, centroids), axis=-1).astype(jnp.int32)


def kmeans(
    points: Array | np.ndarray, num_clusters: int, *, key: Array, num_iters: int = 50
) -> Array:
    """k-means: k-means++ seeding, then `num_iters` jit-compiled Lloyd iterations.

    Args:
      points: `[N, D]` finite.
      num_clusters: K in [1, N].
      key: the seeding's randomness; the result is a function of (points, key).
      num_iters: Lloyd iterations (a cluster left empty keeps its centroid).

    Returns:
      centroids `[K, D]` float32.
    """
    points = _check_matrix(points, "points", rows="N")
    k = check_int(num_clusters, "num_clusters", 1, int(points.shape[0]))
    return _kmeans(points, check_key(key), k, check_int(num_iters, "num_iters", 0))


def assign_clusters(points: Array | np.ndarray, centroids: Array | np.ndarray) -> Array:
    """Index of each point's nearest centroid: points `[N, D]`, centroids `[K, D]` -> `[N]`
    int32."""
    centroids = _check_matrix(centroids, "centroids", rows="K")
    width = int(centroids.shape[1])
    points = _check_matrix(points, "points", width, "the centroids' width", rows="N")
    return _assign(points, centroids)


def _check_labels(labels: Any, argument: str, num_classes: int | None = None) -> np.ndarray:
    """`labels` as int64 `[N]` class indices >= 0 (and < num_classes if given)."""
    array = np.asarray(labels)
    ok = array.ndim == 1 and array.size >= 1 and array.dtype.kind in "iuf"
    if ok and array.dtype.kind == "f":
        ok = bool(np.all(np.isfinite(array)) and np.all(array == np.round(array)))
    ok = ok and bool(np.all(array >= 0))
    ok = ok and (num_classes is None or bool(np.all(array < num_classes)))
    if not ok:
        where = " >= 0" if num_classes is None else f" in [0, {num_classes})"
        raise ValueError(
            f"{argument}: expected a 1-D array of class indices{where}, got {preview(labels)}"
        )
    return array.astype(np.int64)


def label_prior(labels: Any, num_classes: int) -> np.ndarray:
    """Class frequencies: labels `[N]` in [0, C) -> P(c) float32 `[C]`."""
    num_classes = check_int(num_classes, "num_classes", 1)
    y = _check_labels(labels, "labels", num_classes)
    return (np.bincount(y, minlength=num_classes) / y.size).astype(np.float32)


def _source_size(source: Any, fields: Sequence[str], limit: int | None) -> int:
    """The number of examples to read, once every field is known to be in `source`."""
    if not isinstance(source, Mapping) and len(source) < 1:
        raise ValueError("source: expected at least one example, got none")
    example = source if isinstance(source, Mapping) else source[0]
    for argument, field in zip(("image_key", "labels"), fields, strict=False):
        if not isinstance(example, Mapping) or field not in example:
            have = sorted(example) if isinstance(example, Mapping) else type(example).__name__
            raise ValueError(f"{argument}: {field!r} is not a field of source's examples {have}")
    if isinstance(source, Mapping):
        lengths = {len(source[field]) for field in fields}
        if len(lengths) > 1:
            raise ValueError(f"source: expected fields {list(fields)} of one length, got {lengths}")
        size = lengths.pop()
    else:
        size = len(source)
    if limit is not None:
        size = min(size, check_int(limit, "limit", 1))
    if size < 1:
        raise ValueError("source: expected at least one example, got none")
    return size


def _batches(
    source: Any, fields: Sequence[str], size: int, batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Stacked batches of `fields` of the first `size` examples."""
    for start in range(0, size, batch_size):
        stop = min(start + batch_size, size)
        if isinstance(source, Mapping):
            yield {f: np.asarray(source[f][start:stop]) for f in fields}
            continue
        rows = list(range(start, stop))
        getitems = getattr(source, "__getitems__", None)
        examples = getitems(rows) if getitems else [source[i] for i in rows]
        yield {f: np.stack([np.asarray(e[f]) for e in examples]) for f in fields}


def _jitted_encoder(
    encoder: Callable[[Array], Array], preprocess: Callable[[Array], Array] | None
) -> Callable[[np.ndarray], Array]:
    """`encoder(preprocess(images))` jit-compiled; an NNX module is split into its state."""
    prepare = preprocess if preprocess is not None else (lambda images: images)
    if isinstance(encoder, nnx.Module):
        graphdef, state = nnx.split(encoder)
        run = jax.jit(lambda state, images: nnx.merge(graphdef, state)(prepare(images)))
        return lambda images: run(state, images)
    return jax.jit(lambda images: encoder(prepare(images)))


def _encode(
    encoder: Callable[[Array], Array],
    source: Any,
    fields: Sequence[str],
    size: int,
    batch_size: int,
    preprocess: Callable[[Array], Array] | None,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Features `[N, D]` of the first `size` images (and their labels if asked)."""
    run = _jitted_encoder(encoder, preprocess)
    batch_size = min(batch_size, size)
    features, labels = [], []
    with tqdm(total=size, desc="confounder dictionary", unit=" ex", disable=not progress) as bar:
        for batch in _batches(source, fields, size, batch_size):
            images = batch[fields[0]]
            n = images.shape[0]
            if n < batch_size:  # pad the last batch: one compiled shape
                images = np.concatenate([images, np.repeat(images[-1:], batch_size - n, 0)])
            out = np.asarray(run(images))
            if out.ndim != 2 or out.shape[0] != batch_size:
                raise ValueError(
                    f"encoder: expected features (N, D) for {batch_size} images, "
                    f"got shape {out.shape}"
                )
            features.append(out[:n])
            if len(fields) > 1:
                labels.append(batch[fields[1]])
            bar.update(n)
    out = np.concatenate(features).astype(np.float32)
    if not np.isfinite(out).all():
        raise ValueError("encoder: produced non-finite features")
    return out, (np.concatenate(labels) if labels else None)


def confounder_dictionary(
    encoder: Callable[[Array], Array],
    source: Any,
    *,
    key: Array | None = None,
    labels: str | None = None,
    num_prototypes: int | None = None,
    prior: str = "frequency",
    image_key: str = "image",
    preprocess: Callable[[Array], Array] | None = None,
    batch_size: int = 256,
    limit: int | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """A confounder dictionary and its prior from an encoder's features of a data source.

    With `labels` (a field name), the dictionary holds the class-mean features (VC R-CNN's and
    IFSL's dictionaries) and the prior the label frequencies; C = max label + 1, and every
    class needs an example. Without, it holds `num_prototypes` k-means prototypes (drawn
    from `key`) and the prior the cluster frequencies. `prior="uniform"` gives 1 / C instead.

    Args:
      encoder: images `[B, ...]` -> features `[B, D]`, jit-compiled here (an NNX module or
        any jax-traceable callable; its state is read, not updated).
      source: random-access examples (`len(source)`, `source[i]` a dict of numpy arrays;
        `__getitems__` used if present), or a dict of stacked arrays.
      key: k-means seeding; needed without `labels`.
      labels: the field holding integer class labels.
      num_prototypes: k-means clusters (without `labels` only).
      prior: "frequency" or "uniform".
      image_key: the field holding the images.
      preprocess: maps a stacked batch of images before the encoder, inside the jit (write
        it with jax.numpy), e.g. `lambda x: x.astype(jnp.float32) / 255`.
      batch_size: images per encoder call (the last batch is padded to it).
      limit: read only the first `limit` examples.
      progress: show a tqdm bar.

    Returns:
      (dictionary `[C, D]`, prior `[C]`), float32 numpy arrays.
    """
    if prior not in ("frequency", "uniform"):
        raise ValueError(f"prior: expected 'frequency' or 'uniform', got {prior!r}")
    if labels is None:
        if num_prototypes is None:
            raise ValueError(
                "num_prototypes: expected an int >= 1 (k-means prototypes) when labels is None, "
                "got None"
            )
        num_prototypes = check_int(num_prototypes, "num_prototypes", 1)
        key = check_key(key)
    elif num_prototypes is not None:
        raise ValueError(
            f"num_prototypes: with labels the dictionary holds one mean per class; "
            f"expected None, got {num_prototypes!r}"
        )
    batch_size = check_int(batch_size, "batch_size", 1)
    fields = (image_key,) if labels is None else (image_key, labels)
    size = _source_size(source, fields, limit)
    features, y = _encode(encoder, source, fields, size, batch_size, preprocess, progress)

    if y is None:
        k = check_int(num_prototypes, "num_prototypes", 1, size)
        dictionary = np.asarray(kmeans(features, k, key=key), np.float32)
        counts = np.bincount(np.asarray(assign_clusters(features, dictionary)), minlength=k)
    else:
        y = _check_labels(y, "labels")
        counts = np.bincount(y)
        missing = np.flatnonzero(counts == 0)
        if missing.size:
            raise ValueError(
                f"labels: class(es) {missing.tolist()} of 0..{counts.size - 1} have no example "
                f"in source (C = max label + 1 = {counts.size})"
            )
        sums = np.zeros((counts.size, features.shape[1]), np.float64)
        np.add.at(sums, y, features)
        dictionary = (sums / counts[:, None]).astype(np.float32)
    if prior == "uniform":
        return dictionary, uniform_prior(counts.size)
    return dictionary, (counts / counts.sum()).astype(np.float32)
