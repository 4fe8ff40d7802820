"""A small image captioner: a CNN encoder and a transformer decoder with a KV cache.

Any autoregressive captioner that exposes next-token log-probabilities works with the
counterfactual captioning losses (`causalvision.losses`); this one is small enough to train
on a CPU and jit-compiles its decoding:

- encoder: strided 3x3 convolutions (GELU) to a feature map, flattened to image tokens
  `(N, S, D)` with a learned position embedding;
- decoder: pre-LayerNorm blocks of causal self-attention, cross-attention to the image
  tokens and an MLP; a learned token and position embedding; untied output projection.

Captions are token ids with `bos_id` first (`causalvision.data.Vocabulary`'s convention:
pad 0, bos 1, eos 2). Teacher forcing: `log_probs(images, tokens)[:, t]` is the distribution
of token t + 1 given tokens 0..t. Decoding keeps each layer's keys and values in a cache
`(N, L, H, D/H)` written one position per step inside a `lax.scan`, so a caption of L tokens
costs L single-token decoder passes, not L full ones.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from causalvision.validation import check_int, check_real

Array = jax.Array

__all__ = ["Captioner", "CaptionerConfig"]


@dataclasses.dataclass(frozen=True)
class CaptionerConfig:
    """Sizes of a `Captioner`.

    Args:
      image_shape: `(H, W, C)` of the images, pixels in [0, 255].
      vocab_size: V, including the special tokens.
      max_len: L, the longest token sequence (bos included) the decoder reads.
      encoder_widths: output channels of each stride-2 convolution.
      width: D, the transformer width.
      num_heads: attention heads (D must be divisible by it).
      num_layers: decoder blocks.
      mlp_ratio: hidden width of each MLP, in units of D.
      pad_id, bos_id, eos_id: special token ids.
    """

    image_shape: tuple[int, int, int] = (64, 64, 3)
    vocab_size: int = 64
    max_len: int = 24
    encoder_widths: tuple[int, ...] = (32, 64, 128)
    width: int = 128
    num_heads: int = 4
    num_layers: int = 2
    mlp_ratio: int = 4
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    @classmethod
    def tiny(cls, image_shape: tuple[int, int, int] = (16, 16, 3), vocab_size: int = 12):
        """A few thousand parameters, compiled in seconds (tests)."""
        return cls(
            image_shape=tuple(image_shape),
            vocab_size=vocab_size,
            max_len=8,
            encoder_widths=(8, 16),
            width=16,
            num_heads=2,
            num_layers=1,
            mlp_ratio=2,
        )


def _validate(config: CaptionerConfig) -> None:
    shape = tuple(config.image_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ValueError(f"config.image_shape: expected (H, W, C) positive ints, got {shape!r}")
    check_int(config.vocab_size, "config.vocab_size", 4)
    check_int(config.max_len, "config.max_len", 2)
    check_int(config.width, "config.width", 1)
    check_int(config.num_heads, "config.num_heads", 1)
    check_int(config.num_layers, "config.num_layers", 1)
    check_int(config.mlp_ratio, "config.mlp_ratio", 1)
    if config.width % config.num_heads:
        raise ValueError(
            f"config.width: {config.width} is not divisible by num_heads={config.num_heads}"
        )
    widths = tuple(config.encoder_widths)
    if not widths or not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ValueError(f"config.encoder_widths: expected positive ints, got {widths!r}")
    for name in ("pad_id", "bos_id", "eos_id"):
        check_int(getattr(config, name), f"config.{name}", 0, config.vocab_size - 1)
    if len({config.pad_id, config.bos_id, config.eos_id}) != 3:
        raise ValueError("config.pad_id, bos_id, eos_id: expected three different ids")


def _attention(q: Array, k: Array, v: Array, mask: Array) -> Array:
    """Softmax attention: q `(N, Q, H, d)`, k and v `(N, K, H, d)`, mask `(N or 1, Q, K)`."""
    scores = jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.float32(math.sqrt(q.shape[-1]))
    scores = jnp.where(mask[:, None], scores, jnp.finfo(jnp.float32).min)
    return jnp.einsum("nhqk,nkhd->nqhd", jax.nn.softmax(scores, axis=-1), v)


class _MultiHead(nnx.Module):
    def __init__(self, width: int, num_heads: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.query = nnx.Linear(width, width, rngs=rngs)
        self.key = nnx.Linear(width, width, rngs=rngs)
        self.value = nnx.Linear(width, width, rngs=rngs)
        self.out = nnx.Linear(width, width, rngs=rngs)

    def heads(self, x: Array) -> Array:
        return x.reshape(*x.shape[:-1], self.num_heads, -1)

    def keys_values(self, x: Array) -> tuple[Array, Array]:
        return self.heads(self.key(x)), self.heads(self.value(x))

    def attend(self, x: Array, k: Array, v: Array, mask: Array) -> Array:
        out = _attention(self.heads(self.query(x)), k, v, mask)
        return self.out(out.reshape(*out.shape[:-2], -1))


class _DecoderBlock(nnx.Module):
    def __init__(self, config: CaptionerConfig, *, rngs: nnx.Rngs):
        width = config.width
        self.norm_self = nnx.LayerNorm(width, rngs=rngs)
        self.self_attention = _MultiHead(width, config.num_heads, rngs=rngs)
        self.norm_cross = nnx.LayerNorm(width, rngs=rngs)
        self.cross_attention = _MultiHead(width, config.num_heads, rngs=rngs)
        self.norm_mlp = nnx.LayerNorm(width, rngs=rngs)
        self.mlp_in = nnx.Linear(width, config.mlp_ratio * width, rngs=rngs)
        self.mlp_out = nnx.Linear(config.mlp_ratio * width, width, rngs=rngs)

    def __call__(
        self, h: Array, self_kv: tuple[Array, Array], self_mask: Array, memory_kv, memory_mask
    ) -> Array:
        h = h + self.self_attention.attend(self.norm_self(h), *self_kv, self_mask)
        h = h + self.cross_attention.attend(self.norm_cross(h), *memory_kv, memory_mask)
        return h + self.mlp_out(jax.nn.gelu(self.mlp_in(self.norm_mlp(h))))


class Captioner(nnx.Module):
    """Images `(N, H, W, C)` in [0, 255] to captions: teacher-forced log-probabilities, the
    language-model loss, and greedy and beam decoding (see the module docstring)."""

    Config = CaptionerConfig

    def __init__(self, config: CaptionerConfig, *, rngs: nnx.Rngs):
        _validate(config)
        self.config = config
        height, width, channels = config.image_shape
        convs, cin = [], channels
        for cout in config.encoder_widths:
            convs.append(nnx.Conv(cin, cout, (3, 3), strides=(2, 2), rngs=rngs))
            cin = cout
            height, width = -(-height // 2), -(-width // 2)
        self.encoder_convs = nnx.List(convs)
        self.to_memory = nnx.Linear(cin, config.width, rngs=rngs)
        init = nnx.initializers.normal(0.02)
        self.memory_position = nnx.Param(init(rngs.params(), (height * width, config.width)))
        self.token_embedding = nnx.Embed(config.vocab_size, config.width, rngs=rngs)
        self.token_position = nnx.Param(init(rngs.params(), (config.max_len, config.width)))
        self.blocks = nnx.List([_DecoderBlock(config, rngs=rngs) for _ in range(config.num_layers)])
        self.norm_out = nnx.LayerNorm(config.width, rngs=rngs)
        self.to_logits = nnx.Linear(config.width, config.vocab_size, rngs=rngs)

    # -- shapes and checks ------------------------------------------------------------------

    def _check_images(self, images: Array) -> Array:
        shape = tuple(jnp.shape(images))
        if len(shape) != 4 or shape[1:] != tuple(self.config.image_shape):
            raise ValueError(
                f"images: expected shape (N, {', '.join(map(str, self.config.image_shape))}), "
                f"got {shape}"
            )
        return jnp.asarray(images, jnp.float32)

    def _check_tokens(self, tokens: Array, num: int) -> Array:
        shape = tuple(jnp.shape(tokens))
        if len(shape) != 2 or shape[0] != num or not 1 <= shape[1] <= self.config.max_len:
            raise ValueError(
                f"tokens: expected shape ({num}, T) with 1 <= T <= max_len="
                f"{self.config.max_len}, got {shape}"
            )
        if not jnp.issubdtype(jnp.asarray(tokens).dtype, jnp.integer):
            raise ValueError(f"tokens: expected integer ids, got {jnp.asarray(tokens).dtype}")
        return jnp.asarray(tokens, jnp.int32)

    # -- the network --------------------------------------------------------------------------

    def encode(self, images: Array) -> Array:
        """Image tokens `(N, S, D)` for images `(N, H, W, C)` in [0, 255]."""
        h = self._check_images(images) / jnp.float32(127.5) - jnp.float32(1.0)
        for conv in self.encoder_convs:
            h = jax.nn.gelu(conv(h))
        h = self.to_memory(h.reshape(h.shape[0], -1, h.shape[-1]))
        return h + self.memory_position[...][None]

    def _memory_kv(self, memory: Array) -> list[tuple[Array, Array]]:
        return [block.cross_attention.keys_values(memory) for block in self.blocks]

    def _logits(self, h: Array) -> Array:
        return self.to_logits(self.norm_out(h))

    def log_probs(self, images: Array, tokens: Array) -> Array:
        """Teacher forcing: `(N, T, V)` log-probabilities of the token after each position of
        `tokens` `(N, T)` (bos first)."""
        memory = self.encode(images)
        tokens = self._check_tokens(tokens, memory.shape[0])
        length = tokens.shape[1]
        h = self.token_embedding(tokens) + self.token_position[...][None, :length]
        causal = jnp.tril(jnp.ones((length, length), bool))[None]
        memory_mask = jnp.ones((1, length, memory.shape[1]), bool)
        for block, memory_kv in zip(self.blocks, self._memory_kv(memory), strict=True):
            self_kv = block.self_attention.keys_values(block.norm_self(h))
            h = block(h, self_kv, causal, memory_kv, memory_mask)
        return jax.nn.log_softmax(self._logits(h), axis=-1)

    def loss(self, images: Array, tokens: Array, mask: Array) -> tuple[Array, dict[str, Array]]:
        """The language-model loss: mean negative log-likelihood of each real next token.

        Args:
          images: `(N, H, W, C)` in [0, 255].
          tokens: `(N, T)` ids, bos first, then the caption and eos, then padding.
          mask: `(N, T)` bool, True on real tokens (bos included).
        """
        tokens = jnp.asarray(tokens)
        if tuple(jnp.shape(mask)) != tuple(tokens.shape):
            raise ValueError(
                f"mask: expected the tokens' shape {tuple(tokens.shape)}, got "
                f"{tuple(jnp.shape(mask))}"
            )
        log_probs = self.log_probs(images, tokens)[:, :-1]
        targets = tokens[:, 1:].astype(jnp.int32)
        weights = jnp.asarray(mask)[:, 1:].astype(jnp.float32)
        token_log_probs = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
        nll = -jnp.sum(token_log_probs * weights) / jnp.maximum(jnp.sum(weights), 1.0)
        return nll, {"nll": nll}

    # -- decoding with a KV cache ---------------------------------------------------------------

    def _empty_cache(self, num: int) -> list[tuple[Array, Array]]:
        heads = self.config.num_heads
        shape = (num, self.config.max_len, heads, self.config.width // heads)
        return [(jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)) for _ in self.blocks]

    def _step(self, token: Array, position: Array, cache, memory_kv) -> tuple[Array, Any]:
        """One decoder pass for the tokens `(N,)` at `position`: log-probs `(N, V)` of the
        next token and the cache with this position's keys and values written in."""
        h = self.token_embedding(token)[:, None] + self.token_position[...][position][None, None]
        seen = (jnp.arange(self.config.max_len) <= position)[None, None]  # (1, 1, L)
        memory_mask = jnp.ones((1, 1, memory_kv[0][0].shape[1]), bool)
        new_cache = []
        for block, (keys, values), cross_kv in zip(self.blocks, cache, memory_kv, strict=True):
            k, v = block.self_attention.keys_values(block.norm_self(h))
            keys = jax.lax.dynamic_update_slice_in_dim(keys, k, position, axis=1)
            values = jax.lax.dynamic_update_slice_in_dim(values, v, position, axis=1)
            h = block(h, (keys, values), seen, cross_kv, memory_mask)
            new_cache.append((keys, values))
        return jax.nn.log_softmax(self._logits(h[:, 0]), axis=-1), new_cache

    def _never_generated(self) -> Array:
        """`(V,)`: −inf for padding and bos, which decoding never emits before eos."""
        config = self.config
        blocked = jnp.zeros((config.vocab_size,), jnp.float32)
        return blocked.at[jnp.asarray([config.pad_id, config.bos_id])].set(-jnp.inf)

    def _length(self, max_len: int | None) -> int:
        limit = self.config.max_len
        return limit if max_len is None else check_int(max_len, "max_len", 2, limit)

    def greedy(self, images: Array, max_len: int | None = None) -> tuple[Array, Array]:
        """Greedy decoding: tokens `(N, L)` (bos first; after eos, padding) and their summed
        log-probability `(N,)`. Padding and bos are never emitted before eos."""
        config = self.config
        length = self._length(max_len)
        memory = self.encode(images)
        num = memory.shape[0]
        memory_kv = self._memory_kv(memory)
        blocked = self._never_generated()

        def step(carry, position):
            token, cache, done, score = carry
            log_p, cache = self._step(token, position, cache, memory_kv)
            log_p = log_p + blocked[None]
            best = jnp.argmax(log_p, axis=-1).astype(jnp.int32)
            nxt = jnp.where(done, config.pad_id, best)
            score = score + jnp.where(done, 0.0, jnp.max(log_p, axis=-1))
            done = done | (nxt == config.eos_id)
            return (nxt, cache, done, score), nxt

        bos = jnp.full((num,), config.bos_id, jnp.int32)
        init = (bos, self._empty_cache(num), jnp.zeros((num,), bool), jnp.zeros((num,)))
        (_, _, _, score), generated = jax.lax.scan(step, init, jnp.arange(length - 1))
        return jnp.concatenate([bos[:, None], generated.T], axis=1), score

    def beam_search(
        self,
        images: Array,
        beam_size: int = 4,
        max_len: int | None = None,
        length_penalty: float = 0.0,
    ) -> tuple[Array, Array]:
        """Beam search: the best caption `(N, L)` per image (bos first, padding after eos) and
        its summed log-probability `(N,)`.

        Finished beams stay in the beam with their score frozen; at the end beams are ranked
        by score / length^`length_penalty` (0: the raw sum, so beam 1 is greedy decoding).
        """
        config = self.config
        beams = check_int(beam_size, "beam_size", 1)
        alpha = check_real(length_penalty, "length_penalty", 0.0)
        length = self._length(max_len)
        memory = self.encode(images)
        num, vocab = memory.shape[0], config.vocab_size
        # Every beam of an image reads that image's memory: repeat it beam-major per image.
        memory_kv = self._memory_kv(jnp.repeat(memory, beams, axis=0))
        flat = num * beams
        # A finished beam may only continue with padding, at no cost.
        pad_only = jnp.full((vocab,), -jnp.inf).at[config.pad_id].set(0.0)
        blocked = self._never_generated()

        def step(carry, position):
            tokens, cache, done, score, size = carry  # (N, K, L), [(NK, L, H, d)], (N, K) ...
            last = jax.lax.dynamic_index_in_dim(tokens, position, axis=2, keepdims=False)
            log_p, cache = self._step(last.reshape(flat), position, cache, memory_kv)
            log_p = jnp.where(done.reshape(flat, 1), pad_only[None], log_p + blocked[None])
            log_p = log_p.reshape(num, beams, vocab)
            total = (score[..., None] + log_p).reshape(num, beams * vocab)
            score, index = jax.lax.top_k(total, beams)
            parent, token = index // vocab, (index % vocab).astype(jnp.int32)
            take = jax.vmap(lambda x, i: x[i])  # per image, gather its beams
            tokens = take(tokens, parent)
            tokens = jax.lax.dynamic_update_index_in_dim(tokens, token, position + 1, axis=2)
            rows = (parent + beams * jnp.arange(num)[:, None]).reshape(flat)
            cache = [(keys[rows], values[rows]) for keys, values in cache]
            was_done = take(done, parent)
            size = take(size, parent) + (~was_done).astype(jnp.int32)
            done = was_done | (token == config.eos_id)
            return (tokens, cache, done, score, size), None

        tokens = jnp.full((num, beams, length), config.pad_id, jnp.int32)
        tokens = tokens.at[:, :, 0].set(config.bos_id)
        # All beams start equal: keep one alive, or the first top-k would pick K copies.
        score = jnp.full((num, beams), -jnp.inf).at[:, 0].set(0.0)
        done = jnp.zeros((num, beams), bool)
        size = jnp.zeros((num, beams), jnp.int32)
        init = (tokens, self._empty_cache(flat), done, score, size)
        (tokens, _, _, score, size), _ = jax.lax.scan(step, init, jnp.arange(length - 1))
        ranked = score / jnp.maximum(size, 1).astype(jnp.float32) ** jnp.float32(alpha)
        best = jnp.argmax(ranked, axis=1)
        pick = jax.vmap(lambda x, i: x[i])
        return pick(tokens, best), pick(score, best)
