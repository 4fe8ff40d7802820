"""Deconfounding layers against known answers: the NWGM identities of a linear head, a
back-door sum done by hand, IFSL's chunk heads written out as a loop, CATT's masking and
permutation equivariance, k-means on well-separated clusters, and every misuse refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from causalvision.nn import (
    BackdoorAdjustment,
    ClassWiseAdjustment,
    Dictionary,
    FeatureWiseAdjustment,
    FrontDoorAttention,
    Prior,
    assign_clusters,
    backdoor_adjust,
    confounder_dictionary,
    kmeans,
    label_prior,
    uniform_prior,
)

D, C, K = 4, 3, 5  # features, dictionary rows, classes
PRIOR = np.array([0.5, 0.3, 0.2], np.float32)
RNG = np.random.default_rng(0)
Z = RNG.normal(size=(C, D)).astype(np.float32)
X = RNG.normal(size=(6, D)).astype(np.float32)


def _linear_head(w_x, w_z, b):
    """f(x, z) = [x ; z] W + b as an nnx.Linear, W = [w_x ; w_z] ([2D, K])."""
    head = nnx.Linear(2 * D, K, rngs=nnx.Rngs(0))
    head.kernel[...] = jnp.asarray(np.concatenate([w_x, w_z]), jnp.float32)
    head.bias[...] = jnp.asarray(b, jnp.float32)
    return head


def _random_head(scale_z=1.0, seed=1):
    rng = np.random.default_rng(seed)
    w_x, w_z = rng.normal(size=(D, K)), rng.normal(size=(D, K))
    return _linear_head(w_x, scale_z * w_z, rng.normal(size=K))


def _f(head, x, z):
    """Head logits f(x, z) for x [N, D] and one z [D], in float64."""
    u = np.concatenate([x, np.broadcast_to(z, x.shape)], axis=-1)
    return u @ np.asarray(head.kernel[...], np.float64) + np.asarray(head.bias[...], np.float64)


def _log_softmax(a):
    a = a - a.max(-1, keepdims=True)
    return a - np.log(np.exp(a).sum(-1, keepdims=True))


def _sharp_attention(layer):
    """W_y of std 1, so the attention over the dictionary is far from uniform."""
    layer.w_y.kernel[...] = jnp.asarray(RNG.normal(size=(D, D)), jnp.float32)
    return layer


def _uniform_attention(layer):
    """W_y = 0 (and zero bias): every score is 0, A = 1 / C."""
    layer.w_y.kernel[...] = jnp.zeros((D, D), jnp.float32)
    return layer


# -- BackdoorAdjustment: the NWGM and the exact back-door sum ----------------------------------


def test_linear_head_on_the_layer_is_the_weighted_sum_of_conditional_logits():
    """head([x ; Σ w_c Z_c]) = Σ_c w_c f(x, Z_c) + (1 - Σ_c w_c) f(x, 0): linearity."""
    layer = _sharp_attention(BackdoorAdjustment(D, Z, PRIOR, rngs=nnx.Rngs(0)))
    head = _random_head()
    w = np.asarray(layer.weights(X), np.float64)
    expected = sum(w[:, [c]] * _f(head, X, Z[c]) for c in range(C))
    expected += (1 - w.sum(-1, keepdims=True)) * _f(head, X, np.zeros(D))
    np.testing.assert_allclose(head(layer(X)), expected, atol=1e-5)
    assert np.all(w.sum(-1) < 0.99)  # parity: the reference's weights are not normalised


def test_normalised_uniform_attention_gives_the_prior_weighted_mean_logits():
    """Then softmax(head(layer(x))) is the normalised weighted geometric mean of the exact
    form's conditionals P(y | x, Z_c), weighted by P(c)."""
    layer = _uniform_attention(
        BackdoorAdjustment(D, Z, PRIOR, normalize_weights=True, rngs=nnx.Rngs(0))
    )
    head = _random_head()
    np.testing.assert_allclose(layer.weights(X), np.broadcast_to(PRIOR, (6, C)), atol=1e-6)
    conditionals = [_f(head, X, Z[c]) for c in range(C)]
    mean_logits = sum(p * f for p, f in zip(PRIOR, conditionals, strict=True))
    np.testing.assert_allclose(head(layer(X)), mean_logits, atol=1e-5)
    log_nwgm = sum(p * _log_softmax(f) for p, f in zip(PRIOR, conditionals, strict=True))
    np.testing.assert_allclose(
        jax.nn.log_softmax(head(layer(X))), _log_softmax(log_nwgm), atol=1e-5
    )


def test_nwgm_equals_exact_for_a_point_mass_prior():
    point = np.array([0.0, 1.0, 0.0], np.float32)
    layer = _sharp_attention(
        BackdoorAdjustment(D, Z, point, normalize_weights=True, rngs=nnx.Rngs(0))
    )
    head = _random_head()
    np.testing.assert_allclose(layer.confounder(X), np.broadcast_to(Z[1], X.shape), atol=1e-6)
    exact = layer.exact(X, head)
    np.testing.assert_allclose(jax.nn.log_softmax(head(layer(X))), exact, atol=1e-5)
    np.testing.assert_allclose(exact, _log_softmax(_f(head, X, Z[1])), atol=1e-5)


def test_nwgm_equals_exact_when_the_conditionals_do_not_vary_with_the_confounder():
    """One-hot dictionary; the head's z-weights are equal across classes, so z shifts every
    logit alike and P(y | x, Z_c) = softmax(x W_x + b) for every c (parity weights)."""
    onehot = np.eye(C, D, dtype=np.float32)
    layer = _sharp_attention(BackdoorAdjustment(D, onehot, PRIOR, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(2)
    w_x, b = rng.normal(size=(D, K)), rng.normal(size=K)
    w_z = np.repeat(rng.normal(size=(D, 1)), K, axis=1)
    head = _linear_head(w_x, w_z, b)
    expected = _log_softmax(X @ w_x + b)
    np.testing.assert_allclose(layer.exact(X, head), expected, atol=1e-5)
    np.testing.assert_allclose(jax.nn.log_softmax(head(layer(X))), expected, atol=1e-5)


def test_the_nwgm_gap_to_exact_is_second_order_in_the_confounders_effect():
    layer = _uniform_attention(
        BackdoorAdjustment(D, Z, PRIOR, normalize_weights=True, rngs=nnx.Rngs(0))
    )

    def gap(eps):
        head = _random_head(scale_z=eps)
        nwgm = jax.nn.log_softmax(head(layer(X)))
        return float(jnp.max(jnp.abs(nwgm - layer.exact(X, head))))

    big, small = gap(0.05), gap(0.025)
    assert big > 1e-4
    assert abs(big / small - 4.0) < 0.3


# The hand-computed back-door problem: Z -> X, Z -> Y, X -> Y, Z ternary, X and Y binary.
P_Z = np.array([0.5, 0.3, 0.2])
P_X1_GIVEN_Z = np.array([0.1, 0.5, 0.9])
P_Y1_GIVEN_XZ = np.array([[0.2, 0.4, 0.6], [0.3, 0.6, 0.9]])  # [x, z]
# P(y=1 | do(x=0)) = .5*.2 + .3*.4 + .2*.6 = .34;  P(y=1 | do(x=1)) = .5*.3 + .3*.6 + .2*.9 = .51
DO = np.array([[0.66, 0.34], [0.49, 0.51]])
# P(y=1 | x=1) = (.05*.3 + .15*.6 + .18*.9) / .38 = .267 / .38;  P(y=1 | x=0) = .162 / .62
OBSERVED = np.array([[1 - 0.162 / 0.62, 0.162 / 0.62], [1 - 0.267 / 0.38, 0.267 / 0.38]])


def _joint():
    """P(x, z, y) [2, 3, 2] from the factors above."""
    p_x = np.stack([1 - P_X1_GIVEN_Z, P_X1_GIVEN_Z])  # [x, z]
    p_y = np.stack([1 - P_Y1_GIVEN_XZ, P_Y1_GIVEN_XZ], axis=-1)  # [x, z, y]
    return P_Z[None, :, None] * p_x[:, :, None] * p_y


def test_backdoor_adjust_reproduces_a_hand_computed_adjustment():
    joint = _joint()
    p_z = joint.sum(axis=(0, 2))
    p_y_given_xz = joint / joint.sum(axis=-1, keepdims=True)
    logits = jnp.asarray(np.log(p_y_given_xz), jnp.float32)  # [x, z, y]
    result = np.exp(backdoor_adjust(logits, jnp.asarray(p_z, jnp.float32)))
    np.testing.assert_allclose(result, DO, atol=1e-6)
    observed = joint.sum(axis=1) / joint.sum(axis=(1, 2))[:, None]
    np.testing.assert_allclose(observed, OBSERVED, atol=1e-12)
    assert np.abs(DO - observed).max() > 0.07  # confounded: P(y | do(x)) != P(y | x)


def test_exact_reproduces_the_hand_computed_adjustment():
    """A one-hot dictionary over z and a head that looks up log P(y | x, z)."""
    log_p = jnp.asarray(np.log(np.stack([1 - P_Y1_GIVEN_XZ, P_Y1_GIVEN_XZ], -1)), jnp.float32)
    layer = BackdoorAdjustment(3, np.eye(3, dtype=np.float32), P_Z, rngs=nnx.Rngs(0))

    def head(u):  # u = [one-hot x (padded to 3) ; one-hot z]
        return jnp.einsum("...i,...j,ijy->...y", u[..., :2], u[..., 3:], log_p)

    x = jnp.asarray(np.eye(3, dtype=np.float32)[:2])  # x = 0, x = 1
    np.testing.assert_allclose(np.exp(layer.exact(x, head)), DO, atol=1e-6)


def test_attention_weights_sum_below_one_in_parity_and_to_one_normalised():
    tokens = RNG.normal(size=(2, 3, D)).astype(np.float32)
    for normalize in (False, True):
        layer = _sharp_attention(
            BackdoorAdjustment(D, Z, PRIOR, normalize_weights=normalize, rngs=nnx.Rngs(0))
        )
        a = np.asarray(layer.attention(tokens))
        w = np.asarray(layer.weights(tokens))
        assert a.shape == w.shape == (2, 3, C)
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-6)
        if normalize:
            np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)
        else:
            np.testing.assert_allclose(w.sum(-1), (a * PRIOR).sum(-1), atol=1e-6)
            assert np.all(w.sum(-1) < 1.0)
        np.testing.assert_allclose(layer.confounder(tokens), w @ Z, atol=1e-5)


@pytest.mark.parametrize(("fusion", "width"), [("concat", 2 * D), ("add", D), ("none", D)])
def test_fusions_and_their_widths(fusion, width):
    layer = BackdoorAdjustment(D, Z, fusion=fusion, rngs=nnx.Rngs(0))
    out = np.asarray(layer(X))
    assert layer.out_features == width and out.shape == (6, width)
    z = np.asarray(layer.confounder(X))
    expected = {"concat": np.concatenate([X, z], -1), "add": X + z, "none": z}[fusion]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(layer.prior[...], uniform_prior(C))


def test_given_dictionary_and_prior_are_frozen_unless_asked():
    layer = BackdoorAdjustment(D, Z, PRIOR, rngs=nnx.Rngs(0))
    assert isinstance(layer.dictionary, Dictionary) and isinstance(layer.prior, Prior)
    trained = nnx.state(layer, nnx.Param)
    assert sorted(trained) == ["w_y", "w_z"]
    learned = BackdoorAdjustment(D, Z, PRIOR, learn_dictionary=True, rngs=nnx.Rngs(0))
    assert isinstance(learned.dictionary, nnx.Param)
    np.testing.assert_array_equal(learned.dictionary[...], Z)
    sized = BackdoorAdjustment(D, 7, rngs=nnx.Rngs(0))
    assert isinstance(sized.dictionary, nnx.Param) and sized.dictionary[...].shape == (7, D)
    assert 0.0 <= float(sized.dictionary[...].min()) and float(sized.dictionary[...].max()) < 0.01


def test_a_dictionary_of_another_width_gives_a_confounder_of_its_width():
    other = RNG.normal(size=(C, D + 3)).astype(np.float32)  # e.g. another modality's prototypes
    layer = BackdoorAdjustment(D, other, PRIOR, dictionary_features=D + 3, rngs=nnx.Rngs(0))
    assert layer.out_features == 2 * D + 3 and layer(X).shape == (6, 2 * D + 3)
    w = np.asarray(layer.weights(X))
    np.testing.assert_allclose(layer.confounder(X), w @ other, atol=1e-5)
    np.testing.assert_allclose(layer(X)[:, D:], w @ other, atol=1e-5)
    alone = BackdoorAdjustment(D, other, dictionary_features=D + 3, fusion="none", rngs=nnx.Rngs(0))
    assert alone.out_features == D + 3 and alone.w_z.kernel[...].shape == (D + 3, D)
    logits = alone.exact(X, lambda u: u[..., :K])  # the head reads the rows of the dictionary
    assert logits.shape == (6, K)
    sized = BackdoorAdjustment(D, 5, dictionary_features=2, fusion="none", rngs=nnx.Rngs(0))
    assert sized.dictionary[...].shape == (5, 2) and sized(X).shape == (6, 2)


# -- IFSL -------------------------------------------------------------------------------------

F, N_CHUNKS, A = 8, 4, 3


def _chunk_loop(heads, chunks):
    """Mean over chunks of log_softmax(chunk_k W_k + b_k), a Python loop in float64."""
    kernel = np.asarray(heads.kernel[...], np.float64)
    bias = np.asarray(heads.bias[...], np.float64)
    outs = [_log_softmax(chunk @ kernel[k] + bias[k]) for k, chunk in enumerate(chunks)]
    return np.mean(outs, axis=0)


def _random_bias(heads):
    heads.bias[...] = jnp.asarray(RNG.normal(size=heads.bias[...].shape), jnp.float32)


@pytest.mark.parametrize("normalize", [False, True])
def test_feature_wise_adjustment_is_the_mean_of_chunk_log_softmax(normalize):
    layer = FeatureWiseAdjustment(F, K, N_CHUNKS, normalize=normalize, rngs=nnx.Rngs(0))
    _random_bias(layer.heads)
    assert layer.heads.kernel[...].shape == (N_CHUNKS, F // N_CHUNKS, K)
    x = RNG.normal(size=(5, F)).astype(np.float32)
    w = F // N_CHUNKS
    expected = _chunk_loop(layer.heads, [x[:, k * w : (k + 1) * w] for k in range(N_CHUNKS)])
    if normalize:
        expected = _log_softmax(expected)
    np.testing.assert_allclose(layer(x), expected, atol=1e-5)
    total = np.exp(np.asarray(layer(x), np.float64)).sum(-1)
    if normalize:
        np.testing.assert_allclose(total, 1.0, atol=1e-5)
    else:
        assert np.all(total <= 1.0 + 1e-6)  # an unnormalised geometric mean


def test_class_wise_adjustment_reads_the_expected_class_mean():
    means = RNG.normal(size=(A, F)).astype(np.float32)
    layer = ClassWiseAdjustment(F, K, means, N_CHUNKS, rngs=nnx.Rngs(0))
    _random_bias(layer.heads)
    assert isinstance(layer.class_means, Dictionary)
    x = RNG.normal(size=(5, F)).astype(np.float32)
    probs = np.asarray(jax.nn.softmax(RNG.normal(size=(5, A)).astype(np.float32)))
    d = probs.astype(np.float64) @ means  # d = P(a | x) X̄, by hand
    np.testing.assert_allclose(layer.adjustment(probs), d, atol=1e-5)
    w = F // N_CHUNKS
    chunks = [
        np.concatenate([x[:, k * w : (k + 1) * w], d[:, k * w : (k + 1) * w]], -1)
        for k in range(N_CHUNKS)
    ]
    np.testing.assert_allclose(layer(x, probs), _chunk_loop(layer.heads, chunks), atol=1e-5)


# -- FrontDoorAttention -----------------------------------------------------------------------

H, M_SIZE = 8, 6


@pytest.fixture(scope="module")
def catt():
    return FrontDoorAttention(H, M_SIZE, num_heads=2, rngs=nnx.Rngs(0))


def test_front_door_shapes_for_tokens_and_feature_maps(catt):
    tokens = RNG.normal(size=(2, 5, H)).astype(np.float32)
    assert catt(tokens).shape == (2, 5, H)
    fmap = RNG.normal(size=(2, 3, 3, H)).astype(np.float32)
    out = catt(fmap)
    assert out.shape == (2, 3, 3, H)
    np.testing.assert_allclose(out.reshape(2, 9, H), catt(fmap.reshape(2, 9, H)), atol=1e-6)
    residual = FrontDoorAttention(H, M_SIZE, num_heads=2, residual=True, rngs=nnx.Rngs(0))
    assert residual(fmap).shape == (2, 3, 3, H)


def test_padded_tokens_change_no_valid_output(catt):
    tokens = RNG.normal(size=(2, 5, H)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    changed = tokens.copy()
    changed[0, 3:] = 100.0 * RNG.normal(size=(2, H))
    before, after = np.asarray(catt(tokens, mask)), np.asarray(catt(changed, mask))
    np.testing.assert_allclose(after[mask], before[mask], atol=1e-5)
    assert not np.allclose(catt(changed)[0, :3], catt(tokens)[0, :3], atol=1e-3)  # unmasked
    in_sample, _ = catt.attention_weights(tokens, mask)
    assert float(jnp.max(in_sample[0, :, :, 3:])) == 0.0


def test_front_door_attention_is_permutation_equivariant(catt):
    tokens = RNG.normal(size=(2, 5, H)).astype(np.float32)
    perm = np.array([3, 0, 4, 1, 2])
    np.testing.assert_allclose(catt(tokens[:, perm]), catt(tokens)[:, perm], atol=1e-5)


def test_cross_sample_attention_spans_the_dictionary(catt):
    tokens = RNG.normal(size=(2, 5, H)).astype(np.float32)
    in_sample, cross = catt.attention_weights(tokens)
    assert in_sample.shape == (2, 2, 5, 5) and cross.shape == (2, 2, 5, M_SIZE)
    np.testing.assert_allclose(jnp.sum(cross, -1), 1.0, atol=1e-6)
    assert isinstance(catt.dictionary, nnx.Param)
    m = np.asarray(catt.dictionary[...])
    assert m.shape == (M_SIZE, H) and m.min() >= 0.0 and m.max() < 0.01  # uniform / 100


def test_a_kmeans_dictionary_is_stored_as_given():
    centroids = np.asarray(kmeans(RNG.normal(size=(20, H)), M_SIZE, key=jax.random.key(0)))
    layer = FrontDoorAttention(H, centroids, num_heads=2, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(layer.dictionary[...], centroids)
    assert isinstance(layer.dictionary, nnx.Param)
    frozen = FrontDoorAttention(H, centroids, learn_dictionary=False, rngs=nnx.Rngs(0))
    assert isinstance(frozen.dictionary, Dictionary)
    assert "dictionary" not in nnx.state(frozen, nnx.Param)


# -- k-means and dictionaries from data -------------------------------------------------------

CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
SIZES = (10, 20, 30)


@pytest.fixture(scope="module")
def clusters():
    rng = np.random.default_rng(3)
    truth = np.repeat(np.arange(3), SIZES)
    points = CENTRES[truth] + 0.1 * rng.normal(size=(truth.size, 2))
    order = rng.permutation(truth.size)
    return points[order].astype(np.float32), truth[order]


def _same_partition(assignment, truth):
    pairs = set(zip(np.asarray(assignment).tolist(), truth.tolist(), strict=True))
    return len(pairs) == len(set(truth.tolist())) == len({a for a, _ in pairs})


def test_kmeans_recovers_separated_clusters_deterministically(clusters):
    points, truth = clusters
    centroids = kmeans(points, 3, key=jax.random.key(0))
    assert _same_partition(assign_clusters(points, centroids), truth)
    np.testing.assert_array_equal(centroids, kmeans(points, 3, key=jax.random.key(0)))
    for k in range(3):  # Lloyd's fixed point: the clusters' means
        assert np.abs(np.asarray(centroids) - points[truth == k].mean(0)).sum(-1).min() < 1e-4


class _ListSource:
    """A random-access source of dicts of numpy arrays (no `__getitems__`)."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "shape": np.int64(self.labels[i])}


class _Encoder(nnx.Module):
    def __init__(self):
        self.linear = nnx.Linear(16, 3, rngs=nnx.Rngs(0))

    def __call__(self, images):
        return self.linear(images.reshape(images.shape[0], -1))


def test_confounder_dictionary_from_labels_is_the_class_means():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(10, 4, 4, 1), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 0, 1, 2, 2, 2, 0])
    encoder = _Encoder()
    preprocess = lambda x: x.astype(jnp.float32) / 255.0
    dictionary, prior = confounder_dictionary(
        encoder,
        _ListSource(images, labels),
        labels="shape",
        preprocess=preprocess,
        batch_size=4,  # 4 + 4 + 2: the last batch padded
        progress=False,
    )
    features = np.asarray(encoder(preprocess(jnp.asarray(images))))
    expected = np.stack([features[labels == c].mean(0) for c in range(3)])
    np.testing.assert_allclose(dictionary, expected, atol=1e-5)
    np.testing.assert_allclose(prior, [0.4, 0.2, 0.4], atol=1e-7)
    np.testing.assert_allclose(prior, label_prior(labels, 3))
    _, uniform = confounder_dictionary(
        encoder,
        {"image": images, "shape": labels},
        labels="shape",
        prior="uniform",
        preprocess=preprocess,
        progress=False,
    )
    np.testing.assert_allclose(uniform, uniform_prior(3))


def test_confounder_dictionary_prototypes_recover_clusters(clusters):
    points, truth = clusters
    dictionary, prior = confounder_dictionary(
        lambda x: x,
        {"image": points},
        num_prototypes=3,
        key=jax.random.key(1),
        batch_size=16,
        progress=False,
    )
    assert dictionary.shape == (3, 2)
    assert _same_partition(assign_clusters(points, dictionary), truth)
    order = np.argmin(np.abs(dictionary[:, None] - CENTRES[None]).sum(-1), axis=1)
    np.testing.assert_allclose(prior, np.array(SIZES)[order] / sum(SIZES), atol=1e-7)
    assert abs(float(prior.sum()) - 1.0) < 1e-6


# -- jit --------------------------------------------------------------------------------------


def test_every_layer_under_nnx_jit_matches_eager(catt):
    call = nnx.jit(lambda layer, *args: layer(*args))
    backdoor = _sharp_attention(BackdoorAdjustment(D, Z, PRIOR, rngs=nnx.Rngs(0)))
    np.testing.assert_allclose(call(backdoor, X), backdoor(X), atol=1e-6)
    head = _random_head()
    exact = nnx.jit(lambda layer, head, x: layer.exact(x, head))
    np.testing.assert_allclose(exact(backdoor, head, X), backdoor.exact(X, head), atol=1e-6)
    x = RNG.normal(size=(5, F)).astype(np.float32)
    feature_wise = FeatureWiseAdjustment(F, K, N_CHUNKS, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(call(feature_wise, x), feature_wise(x), atol=1e-6)
    means = RNG.normal(size=(A, F)).astype(np.float32)
    class_wise = ClassWiseAdjustment(F, K, means, N_CHUNKS, rngs=nnx.Rngs(0))
    probs = np.full((5, A), 1.0 / A, np.float32)
    np.testing.assert_allclose(call(class_wise, x, probs), class_wise(x, probs), atol=1e-6)
    tokens = RNG.normal(size=(2, 5, H)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    np.testing.assert_allclose(call(catt, tokens, mask), catt(tokens, mask), atol=1e-5)
    adjust = jax.jit(backdoor_adjust)
    logits = jnp.asarray(RNG.normal(size=(2, C, K)), jnp.float32)
    np.testing.assert_allclose(adjust(logits, PRIOR), backdoor_adjust(logits, PRIOR), atol=1e-6)


def test_the_call_time_width_check_runs_under_jit():
    layer = BackdoorAdjustment(D, Z, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 4\)"):
        nnx.jit(lambda layer, x: layer(x))(layer, np.zeros((2, D + 1), np.float32))


# -- misuse -----------------------------------------------------------------------------------


def _backdoor(**kwargs):
    arguments = {"features": D, "dictionary": Z, "prior": PRIOR} | kwargs
    return BackdoorAdjustment(**arguments, rngs=nnx.Rngs(0))


BAD = {
    "dictionary width": (lambda: _backdoor(dictionary=np.zeros((C, D + 1))), "dictionary: .*width"),
    "dictionary 1-D": (lambda: _backdoor(dictionary=np.zeros(D)), "dictionary: .*2-D"),
    "dictionary 3-D": (lambda: _backdoor(dictionary=np.zeros((2, C, D))), "dictionary: .*2-D"),
    "dictionary NaN": (
        lambda: _backdoor(dictionary=np.where(np.eye(C, D) > 0, np.nan, Z)),
        "dictionary: expected finite",
    ),
    "prior negative": (lambda: _backdoor(prior=[1.2, -0.2, 0.0]), "prior: .*>= 0"),
    "prior NaN": (lambda: _backdoor(prior=[np.nan, 0.5, 0.5]), "prior: expected finite"),
    "prior 2-D": (lambda: _backdoor(prior=PRIOR[None]), "prior: expected a 1-D"),
    "prior sum": (lambda: _backdoor(prior=[0.5, 0.3, 0.3]), "prior: .*summing to 1"),
    "prior size": (lambda: _backdoor(prior=[0.5, 0.5]), "prior: expected C = 3"),
    "features 0": (lambda: _backdoor(features=0), "features: expected an int >= 1"),
    "features float": (lambda: _backdoor(features=4.0), "features: expected an int"),
    "dictionary size 0": (lambda: _backdoor(dictionary=0, prior=None), "dictionary: .*>= 1"),
    "embed_dim": (lambda: _backdoor(embed_dim=0), "embed_dim"),
    "fusion": (lambda: _backdoor(fusion="sum"), "fusion: expected one of"),
    "add across widths": (
        lambda: _backdoor(dictionary=np.zeros((C, 2)), dictionary_features=2, fusion="add"),
        "fusion: 'add' needs dictionary_features = features = 4",
    ),
    "dictionary_features width": (
        lambda: _backdoor(dictionary=np.zeros((C, 3)), dictionary_features=2),
        r"dictionary: expected rows of width 2 \(dictionary_features\)",
    ),
    "dictionary_features 0": (
        lambda: _backdoor(dictionary_features=0),
        "dictionary_features: expected an int >= 1",
    ),
    "x width": (lambda: _backdoor()(np.zeros((2, D + 1), np.float32)), r"x: .*\(\.\.\., 4\)"),
    "exact x width": (
        lambda: _backdoor().exact(np.zeros((2, 3), np.float32), lambda u: u),
        "x: expected shape",
    ),
    "adjust prior": (
        lambda: backdoor_adjust(np.zeros((2, C, K), np.float32), [0.2, 0.2, 0.2]),
        "prior: .*summing to 1",
    ),
    "adjust logits": (
        lambda: backdoor_adjust(np.zeros((2, C + 1, K), np.float32), PRIOR),
        "conditional_logits: expected shape",
    ),
    "num_chunks 0": (lambda: FeatureWiseAdjustment(F, K, 0, rngs=nnx.Rngs(0)), "num_chunks"),
    "num_chunks divisor": (
        lambda: FeatureWiseAdjustment(F, K, 3, rngs=nnx.Rngs(0)),
        "num_chunks: expected a divisor of features = 8",
    ),
    "ifsl features": (lambda: FeatureWiseAdjustment(-8, K, rngs=nnx.Rngs(0)), "features"),
    "ifsl x": (
        lambda: FeatureWiseAdjustment(F, K, rngs=nnx.Rngs(0))(np.zeros((2, 4), np.float32)),
        "x: expected shape",
    ),
    "class_means width": (
        lambda: ClassWiseAdjustment(F, K, np.zeros((A, 4)), 4, rngs=nnx.Rngs(0)),
        "class_means: .*width",
    ),
    "class_probs width": (
        lambda: ClassWiseAdjustment(F, K, np.zeros((A, F)), 4, rngs=nnx.Rngs(0))(
            np.zeros((2, F), np.float32), np.zeros((2, A + 1), np.float32)
        ),
        "class_probs: expected shape",
    ),
    "class_probs rows": (
        lambda: ClassWiseAdjustment(F, K, np.zeros((A, F)), 4, rngs=nnx.Rngs(0))(
            np.zeros((2, F), np.float32), np.zeros((3, A), np.float32)
        ),
        "class_probs: expected the leading shape",
    ),
    "catt heads": (lambda: FrontDoorAttention(H, 4, num_heads=3, rngs=nnx.Rngs(0)), "num_heads"),
    "catt dictionary": (
        lambda: FrontDoorAttention(H, np.zeros((4, H + 1)), rngs=nnx.Rngs(0)),
        "dictionary: .*width",
    ),
    "catt tokens": (
        lambda: FrontDoorAttention(H, 4, rngs=nnx.Rngs(0))(np.zeros((2, H), np.float32)),
        "tokens: expected",
    ),
    "catt mask": (
        lambda: FrontDoorAttention(H, 4, rngs=nnx.Rngs(0))(
            np.zeros((2, 5, H), np.float32), np.ones((2, 4), bool)
        ),
        "mask: expected shape",
    ),
    "kmeans clusters": (
        lambda: kmeans(np.zeros((3, 2)), 4, key=jax.random.key(0)),
        "num_clusters: expected an int in",
    ),
    "kmeans key": (lambda: kmeans(np.zeros((3, 2)), 2, key=None), "key: expected a JAX PRNG key"),
    "kmeans points": (lambda: kmeans(np.zeros(3), 2, key=jax.random.key(0)), "points"),
    "assign widths": (lambda: assign_clusters(np.zeros((3, 2)), np.zeros((2, 3))), "points"),
    "label_prior": (lambda: label_prior([0, 3], 3), r"labels: expected .* in \[0, 3\)"),
    "prototypes key": (
        lambda: confounder_dictionary(lambda x: x, {"image": np.zeros((4, 2))}, num_prototypes=2),
        "key: expected a JAX PRNG key",
    ),
    "prototypes missing": (
        lambda: confounder_dictionary(lambda x: x, {"image": np.zeros((4, 2))}),
        "num_prototypes: expected an int",
    ),
    "prior kind": (
        lambda: confounder_dictionary(
            lambda x: x, {"image": np.zeros((4, 2))}, labels="y", prior="empirical"
        ),
        "prior: expected 'frequency' or 'uniform'",
    ),
    "missing class": (
        lambda: confounder_dictionary(
            lambda x: x,
            {"image": np.zeros((4, 2), np.float32), "y": np.array([0, 2, 0, 2])},
            labels="y",
            progress=False,
        ),
        r"labels: class\(es\) \[1\]",
    ),
    "missing field": (
        lambda: confounder_dictionary(lambda x: x, {"img": np.zeros((4, 2))}, labels="y"),
        "image_key: 'image' is not a field",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_misuse_is_refused_naming_the_argument(case):
    make, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        make()
