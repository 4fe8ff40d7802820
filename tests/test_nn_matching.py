"""Deconfounded image-text matching: recall@K on hand-ranked similarity matrices, the head's
adjustment against the back-door formula written out in numpy, the plain head as its
zero-dictionary case, symmetric InfoNCE against cross-entropy by hand, training on paired
features with a planted confounder, and every misuse refused."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from causalvision.losses import info_nce
from causalvision.metrics import recall_at_k
from causalvision.nn import DeconfoundedMatching, Dictionary, kmeans
from causalvision.scm import lenient_promotion

DI, DT, E = 6, 5, 4  # image width, text width, joint width
RNG = np.random.default_rng(0)
ZI = RNG.normal(size=(3, DI)).astype(np.float32)  # image prototypes
ZT = RNG.normal(size=(2, DT)).astype(np.float32)  # text prototypes
PI = np.array([0.5, 0.3, 0.2], np.float32)
PT = np.array([0.6, 0.4], np.float32)
IMAGES = RNG.normal(size=(7, DI)).astype(np.float32)
TEXTS = RNG.normal(size=(7, DT)).astype(np.float32)


def _head(deconfound=True, zi=ZI, zt=ZT, **kwargs):
    return DeconfoundedMatching(
        DI,
        DT,
        E,
        image_dictionary=zi,
        text_dictionary=zt,
        image_prior=PI,
        text_prior=PT,
        deconfound=deconfound,
        rngs=nnx.Rngs(0),
        **kwargs,
    )


# -- recall@K ---------------------------------------------------------------------------------

S = np.array([[0.9, 0.1, 0.3], [0.2, 0.5, 0.6], [0.4, 0.8, 0.7]])


def test_recall_at_k_of_a_hand_ranked_matrix():
    # image -> text ranks of the diagonal: 0, 1 (0.6 > 0.5), 1 (0.8 > 0.7)
    # text -> image ranks: 0, 1 (0.8 > 0.5), 0
    got = recall_at_k(S, (1, 2, 3))
    assert got == pytest.approx(
        {
            "i2t_r1": 1 / 3,
            "i2t_r2": 1.0,
            "i2t_r3": 1.0,
            "t2i_r1": 2 / 3,
            "t2i_r2": 1.0,
            "t2i_r3": 1.0,
        }
    )
    assert recall_at_k(jnp.asarray(S, jnp.float32), 1) == pytest.approx(
        {"i2t_r1": 1 / 3, "t2i_r1": 2 / 3}
    )


def test_ties_count_against_the_model():
    assert recall_at_k(np.full((2, 2), 0.5), (1, 2)) == {
        "i2t_r1": 0.0,
        "i2t_r2": 1.0,
        "t2i_r1": 0.0,
        "t2i_r2": 1.0,
    }
    # image 0's match ties with text 1 at the top: rank 1, not 0; image 1 is strictly first.
    tied = np.array([[0.7, 0.7], [0.1, 0.9]])
    assert recall_at_k(tied, 1) == {"i2t_r1": 0.5, "t2i_r1": 1.0}


def test_several_texts_per_image_rank_the_best_match():
    matches = np.array([[True, True, False, False], [False, False, True, True]])
    s = np.array([[0.1, 0.7, 0.8, 0.2], [0.3, 0.9, 0.4, 0.6]])
    # image 0: best match 0.7 < 0.8 (text 2), rank 1; image 1: best 0.6 < 0.9, rank 1.
    # texts 0, 1, 2: beaten by the other image; text 3: 0.6 > 0.2, rank 0.
    got = recall_at_k(s, (1, 2), matches=matches)
    assert got == {"i2t_r1": 0.0, "i2t_r2": 1.0, "t2i_r1": 0.25, "t2i_r2": 1.0}


def test_recall_agrees_with_sorting_when_there_are_no_ties():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(9, 9))
    i2t_rank = np.array([list(np.argsort(-row)).index(i) for i, row in enumerate(s)])
    t2i_rank = np.array([list(np.argsort(-col)).index(j) for j, col in enumerate(s.T)])
    got = recall_at_k(s, (1, 3, 5))
    for k in (1, 3, 5):
        assert got[f"i2t_r{k}"] == pytest.approx(np.mean(i2t_rank < k))
        assert got[f"t2i_r{k}"] == pytest.approx(np.mean(t2i_rank < k))


# -- the head ---------------------------------------------------------------------------------


def _softmax(a):
    a = a - a.max(-1, keepdims=True)
    return np.exp(a) / np.exp(a).sum(-1, keepdims=True)


def _expected_confounder(layer, x, z, prior):
    """Σ_c P(c) softmax_c((x W_y + b_y)(Z W_z + b_z)ᵀ / √E) Z_c, in float64."""
    w = {name: np.asarray(getattr(layer, name).kernel[...], np.float64) for name in ("w_y", "w_z")}
    b = {name: np.asarray(getattr(layer, name).bias[...], np.float64) for name in ("w_y", "w_z")}
    q, k = x @ w["w_y"] + b["w_y"], z @ w["w_z"] + b["w_z"]
    return (_softmax(q @ k.T / np.sqrt(q.shape[-1])) * prior) @ z


def _sharpen(head, seed=2):
    """Attention weights of std 1 (the default 0.02 makes every attention nearly uniform)."""
    rng = np.random.default_rng(seed)
    for layer in (head.image_intra, head.image_inter, head.text_intra, head.text_inter):
        kernel = layer.w_y.kernel
        kernel[...] = jnp.asarray(rng.normal(size=kernel[...].shape), jnp.float32)
    return head


def test_similarity_is_the_cosine_of_the_backdoor_adjusted_embeddings():
    head = _sharpen(_head())
    x, y = IMAGES.astype(np.float64), TEXTS.astype(np.float64)
    wv = np.asarray(head.image_projection.kernel[...], np.float64)
    wt = np.asarray(head.text_projection.kernel[...], np.float64)
    v = (x + _expected_confounder(head.image_intra, x, ZI, PI)) @ wv
    v = v + _expected_confounder(head.image_inter, x, ZT, PT) @ wt
    t = (y + _expected_confounder(head.text_intra, y, ZT, PT)) @ wt
    t = t + _expected_confounder(head.text_inter, y, ZI, PI) @ wv
    np.testing.assert_allclose(head.embed_images(IMAGES), v, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head.embed_texts(TEXTS), t, rtol=1e-5, atol=1e-5)
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    t /= np.linalg.norm(t, axis=-1, keepdims=True)
    s = np.asarray(head(IMAGES, TEXTS))
    assert s.shape == (7, 7) and s.dtype == np.float32
    np.testing.assert_allclose(s, v @ t.T, atol=1e-5)
    assert np.all(np.abs(s) <= 1.0)


def test_the_plain_head_is_the_deconfounded_one_with_zero_dictionaries():
    plain = _head(deconfound=False)
    zeroed = _sharpen(_head(zi=np.zeros_like(ZI), zt=np.zeros_like(ZT)))
    adjusted = _sharpen(_head())
    for name in ("image_projection", "text_projection"):
        np.testing.assert_array_equal(
            getattr(plain, name).kernel[...], getattr(zeroed, name).kernel[...]
        )
    s = np.asarray(plain(IMAGES, TEXTS))
    np.testing.assert_allclose(zeroed(IMAGES, TEXTS), s, atol=1e-6)
    assert np.abs(np.asarray(adjusted(IMAGES, TEXTS)) - s).max() > 1e-2
    big = np.asarray(adjusted(1e3 * IMAGES, 1e-3 * TEXTS))
    assert np.all(np.abs(big) <= 1.0) and np.all(np.abs(s) <= 1.0)
    assert plain.image_intra is None and sorted(nnx.state(plain, nnx.Param)) == [
        "image_projection",
        "text_projection",
    ]


def test_gradients_reach_the_projections_and_adjustments_but_not_the_dictionaries():
    head = _head()

    def loss(model):
        return info_nce(model(IMAGES, TEXTS), temperature=0.1)

    grads = nnx.jit(nnx.grad(loss))(head)
    for path in (
        ("image_projection", "kernel"),
        ("text_projection", "kernel"),
        ("image_intra", "w_y", "kernel"),
        ("image_inter", "w_z", "kernel"),
        ("text_intra", "w_z", "kernel"),
        ("text_inter", "w_y", "kernel"),
    ):
        g = grads
        for part in path:
            g = g[part]
        g = np.asarray(g[...])
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, path
    assert isinstance(head.image_intra.dictionary, Dictionary)
    assert "dictionary" not in grads["image_intra"]


def test_info_nce_is_the_mean_of_row_and_column_cross_entropies():
    s, tau = np.asarray(S), 0.5
    log_rows = np.log(_softmax(s / tau))
    log_cols = np.log(_softmax(s.T / tau))
    expected = -(np.mean(np.diag(log_rows)) + np.mean(np.diag(log_cols))) / 2
    got = info_nce(jnp.asarray(s, jnp.float32), temperature=tau)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(info_nce(s, tau, matches=np.eye(3, dtype=bool)), got, rtol=1e-6)
    # Two positives in a row: -log of their summed softmax share.
    two = np.array([[True, True, False], [False, True, False], [False, False, True]])
    rows = -np.mean(np.log([_softmax(s / tau)[i][two[i]].sum() for i in range(3)]))
    cols = -np.mean(np.log([_softmax(s.T / tau)[j][two[:, j]].sum() for j in range(3)]))
    np.testing.assert_allclose(info_nce(s, tau, matches=two), (rows + cols) / 2, rtol=1e-5)
    # Under jit with traced matches (a batch's pairs drawn per step): the same value.
    jitted = jax.jit(lambda x, m: info_nce(x, tau, matches=m))
    np.testing.assert_allclose(jitted(jnp.asarray(s, jnp.float32), two), (rows + cols) / 2,
                               rtol=1e-5)  # fmt: skip


def _confounded_pairs(seed, n=48, groups=3):
    """Paired features sharing a 4-d content; a group offset (the confounder) shared by both
    modalities dominates the raw features, so a group says little about which pair it is."""
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(n, 4))
    group = rng.integers(0, groups, size=n)
    a, b = rng.normal(size=(4, 12)), rng.normal(size=(4, 10))
    u, w = 4.0 * rng.normal(size=(groups, 12)), 4.0 * rng.normal(size=(groups, 10))
    x = content @ a + u[group] + 0.1 * rng.normal(size=(n, 12))
    y = content @ b + w[group] + 0.1 * rng.normal(size=(n, 10))
    return x.astype(np.float32), y.astype(np.float32)


@pytest.mark.parametrize("deconfound", [True, False], ids=["deconfounded", "plain"])
def test_contrastive_training_raises_recall_at_one(deconfound):
    x, y = _confounded_pairs(0)
    zi = kmeans(x, 3, key=jax.random.key(0))
    zt = kmeans(y, 3, key=jax.random.key(1))
    head = DeconfoundedMatching(
        12, 10, 8, image_dictionary=zi, text_dictionary=zt, deconfound=deconfound, rngs=nnx.Rngs(0)
    )
    optimizer = nnx.Optimizer(head, optax.adam(3e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda m: info_nce(m(x, y), temperature=0.1))(model)
        with lenient_promotion():  # optax mixes its int step counter with floats
            optimizer.update(model, grads)
        return loss

    before = recall_at_k(head(x, y), (1, 5))
    losses = [float(step(head, optimizer, x, y)) for _ in range(60)]
    after = recall_at_k(head(x, y), (1, 5))
    assert losses[-1] < 0.5 * losses[0]
    for direction in ("i2t", "t2i"):
        assert after[f"{direction}_r1"] >= before[f"{direction}_r1"] + 0.3, (before, after)
        assert after[f"{direction}_r1"] >= 0.6, after


# -- misuse -----------------------------------------------------------------------------------

BAD = {
    "similarity 1-D": (lambda: recall_at_k(np.zeros(3)), "similarity: expected a 2-D"),
    "similarity NaN": (lambda: recall_at_k(np.full((2, 2), np.nan)), "similarity: expected finite"),
    "not square": (lambda: recall_at_k(np.zeros((2, 3)), 1), "matches: needed"),
    "matches shape": (
        lambda: recall_at_k(np.zeros((2, 3)), 1, matches=np.ones((3, 2), bool)),
        r"matches: expected a boolean array of shape \(2, 3\)",
    ),
    "matches dtype": (
        lambda: recall_at_k(np.zeros((2, 2)), 1, matches=np.eye(2)),
        "matches: expected a boolean",
    ),
    "matches empty row": (
        lambda: recall_at_k(np.zeros((2, 2)), 1, matches=np.array([[True, True], [False, False]])),
        r"matches: image\(s\) \[1\] have no match",
    ),
    "matches empty column": (
        lambda: recall_at_k(np.zeros((2, 2)), 1, matches=np.array([[True, False], [True, False]])),
        r"matches: text\(s\) \[1\] have no match",
    ),
    "k larger than the gallery": (
        lambda: recall_at_k(np.zeros((3, 3)), (1, 5)),
        "k_values: K = 5 is larger than the gallery",
    ),
    "k larger than the image gallery": (
        lambda: recall_at_k(np.zeros((2, 4)), 3, matches=np.ones((2, 4), bool)),
        "k_values: K = 3 is larger than the gallery",
    ),
    "k zero": (lambda: recall_at_k(np.zeros((3, 3)), (0,)), "k_values: expected an int >= 1"),
    "k empty": (lambda: recall_at_k(np.zeros((3, 3)), ()), "k_values: expected a non-empty"),
    "k str": (lambda: recall_at_k(np.zeros((3, 3)), "1"), "k_values: expected a non-empty"),
    "images width": (lambda: _head()(np.zeros((2, DT)), TEXTS), r"images: expected shape \(N, 6\)"),
    "texts width": (lambda: _head()(IMAGES, np.zeros((2, DI))), r"texts: expected shape \(N, 5\)"),
    "images 1-D": (lambda: _head(deconfound=False)(np.zeros(DI), TEXTS), "images: expected shape"),
    "image_dictionary missing": (lambda: _head(zi=None), "image_dictionary: expected a dictionary"),
    "text_dictionary missing": (lambda: _head(zt=None), "text_dictionary: expected a dictionary"),
    "image_dictionary width": (
        lambda: _head(zi=np.zeros((3, DT))),
        "image_dictionary: expected rows of width 6",
    ),
    "text_dictionary width": (
        lambda: _head(zt=np.zeros((2, DI))),
        "text_dictionary: expected rows of width 5",
    ),
    "text_prior size": (
        lambda: _head(zt=np.zeros((3, DT))),
        "text_prior: expected C = 3 probabilities",
    ),
    "embed_dim": (
        lambda: DeconfoundedMatching(DI, DT, 0, deconfound=False, rngs=nnx.Rngs(0)),
        "embed_dim: expected an int >= 1",
    ),
    "image_features": (
        lambda: DeconfoundedMatching(0, DT, E, deconfound=False, rngs=nnx.Rngs(0)),
        "image_features: expected an int >= 1",
    ),
    "temperature": (lambda: info_nce(S, 0.0), "temperature: expected a finite number > 0"),
    "info_nce not square": (lambda: info_nce(np.zeros((2, 3))), "matches: needed"),
    "info_nce matches": (
        lambda: info_nce(S, 0.1, matches=np.zeros((3, 3), bool)),
        r"matches: image \(row\) \[0, 1, 2\] has no match",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_misuse_is_refused_naming_the_argument(case):
    make, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        make()
