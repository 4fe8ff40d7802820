"""Estimators of interventional quantities, checked against known answers.

Simulated SCMs with an analytic E[Y | do(T = t)], hand computations of the plug-in formulas on
small tables of counts, bootstrap calibration across replicate datasets, and the error paths.
"""

from fractions import Fraction

import jax
import numpy as np
import pytest

from causalvision.graph import CausalGraph
from causalvision.scm.estimators import (
    backdoor_adjustment,
    estimate_effect,
    frontdoor_adjustment,
    interventional_distribution,
)

CONFOUNDED = CausalGraph([("Z", "T"), ("Z", "Y"), ("T", "Y")])
FRONTDOOR = CausalGraph([("U", "X"), ("U", "Y"), ("X", "M"), ("M", "Y")], latent=["U"])
NOT_IDENTIFIABLE = CausalGraph([("U", "X"), ("U", "Y"), ("X", "Y")], latent=["U"])

KEY = jax.random.key(0)  # the bootstraps' resampling


def bernoulli(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    return (rng.random(p.shape) < p).astype(np.int32)


def confounded_binary(n: int, seed: int) -> dict[str, np.ndarray]:
    """Z ~ Bern(0.4); T ~ Bern(0.2 + 0.6 Z); Y ~ Bern(0.1 + 0.3 T + 0.5 Z).

    E[Y | do(T = t)] = 0.1 + 0.3 t + 0.5 * 0.4, so the ATE is 0.3. Conditioning on T instead
    shifts P(Z = 1) from 0.143 (T = 0) to 0.727 (T = 1): the naive difference is 0.592.
    """
    rng = np.random.default_rng(seed)
    z = bernoulli(rng, np.full(n, 0.4))
    t = bernoulli(rng, 0.2 + 0.6 * z)
    y = bernoulli(rng, 0.1 + 0.3 * t + 0.5 * z)
    return {"Z": z, "T": t, "Y": y}


def smoking_tar_cancer(n: int, seed: int) -> dict[str, np.ndarray]:
    """Latent U confounds smoking X and cancer Y; tar M mediates X -> Y.

    U ~ Bern(0.5); X ~ Bern(0.2 + 0.6 U); M ~ Bern(0.1 + 0.7 X); Y ~ Bern(0.1 + 0.4 M + 0.4 U).
    P(Y = 1 | do(X = x)) = 0.1 + 0.4 P(M = 1 | x) + 0.4 * 0.5 = 0.34 (x = 0), 0.62 (x = 1).
    The naive difference picks up P(U = 1 | X): 0.28 + 0.4 * (0.8 - 0.2) = 0.52.
    """
    rng = np.random.default_rng(seed)
    u = bernoulli(rng, np.full(n, 0.5))
    x = bernoulli(rng, 0.2 + 0.6 * u)
    m = bernoulli(rng, 0.1 + 0.7 * x)
    y = bernoulli(rng, 0.1 + 0.4 * m + 0.4 * u)
    return {"X": x, "M": m, "Y": y}  # U is latent: no column


def naive_difference(data: dict[str, np.ndarray], t: str, y: str) -> float:
    treated = data[t] == 1
    return float(data[y][treated].mean() - data[y][~treated].mean())


def table(counts: dict[tuple[int, int, int], int], names: tuple[str, str, str]) -> dict:
    """Units with the given counts of (names[0], names[1], names[2]) value triples."""
    rows = np.repeat(np.array(list(counts), np.int32), list(counts.values()), axis=0)
    return {name: rows[:, i] for i, name in enumerate(names)}


# (z, t, y): count. P(Z = 0) = 12/28 = 3/7, P(Z = 1) = 4/7.
TINY = {
    (0, 0, 0): 5, (0, 0, 1): 3, (0, 0, 2): 0, (0, 1, 0): 1, (0, 1, 1): 2, (0, 1, 2): 1,
    (1, 0, 0): 6, (1, 0, 1): 1, (1, 0, 2): 1, (1, 1, 0): 2, (1, 1, 1): 3, (1, 1, 2): 3,
}  # fmt: skip


# ---------------------------------------------------------------------------------- discrete


def test_discrete_backdoor_recovers_the_ate_that_the_naive_difference_misses():
    data = confounded_binary(200_000, seed=0)
    ate = estimate_effect(data, CONFOUNDED, "T", "Y", 1, 0, key=jax.random.key(1))
    assert 0 < float(ate.stderr) < 0.01
    assert abs(float(ate.value) - 0.3) < 0.01
    assert abs(float(ate.value) - 0.3) < 4 * float(ate.stderr)
    naive = naive_difference(data, "T", "Y")
    assert abs(naive - 0.3) > 0.1
    # An empty adjustment set is the naive contrast, exactly.
    no_adjustment = [
        backdoor_adjustment(data, "T", "Y", t, adjustment_set=[], key=KEY) for t in (1, 0)
    ]
    assert float(no_adjustment[0].value - no_adjustment[1].value) == pytest.approx(naive, abs=1e-5)
    do1 = backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], key=KEY)
    assert abs(float(do1.value) - 0.6) < 0.01


def test_discrete_plugins_equal_hand_computation_on_a_table_of_counts():
    data = table(TINY, ("Z", "T", "Y"))
    # Back-door: E[Y | T=1, Z=0] = 4/4, E[Y | T=1, Z=1] = 9/8 -> 3/7 * 1 + 4/7 * 9/8 = 15/14;
    # E[Y | T=0, Z=z] = 3/8 for both z -> 3/8.
    do1 = backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], num_bootstrap=0, key=KEY)
    do0 = backdoor_adjustment(data, "T", "Y", 0, adjustment_set=["Z"], num_bootstrap=0, key=KEY)
    assert float(do1.value) == pytest.approx(float(Fraction(15, 14)), abs=1e-6)
    assert float(do0.value) == pytest.approx(0.375, abs=1e-6)
    assert float(do1.stderr) == 0.0
    # P(Y = y | do(T = 1)) = Σ_z P(z) P(y | T=1, z) = (1/4, 3/7, 9/28).
    dist = interventional_distribution(data, "T", "Y", 1, adjustment_set=["Z"])
    assert list(dist) == [0, 1, 2]
    expected = [Fraction(1, 4), Fraction(3, 7), Fraction(9, 28)]
    assert list(dist.values()) == pytest.approx([float(p) for p in expected], abs=1e-6)
    # Front-door, reading Z as the mediator: P(t') = (4/7, 3/7); inner(m) = Σ_t' E[Y|t',m] P(t')
    # = (9/14, 39/56); P(m | T=1) = (1/3, 2/3) -> 1/3 * 9/14 + 2/3 * 39/56 = 19/28.
    fd = frontdoor_adjustment(data, "T", "Y", 1, mediators=["Z"], num_bootstrap=0, key=KEY)
    assert float(fd.value) == pytest.approx(float(Fraction(19, 28)), abs=1e-6)
    # discrete=False on the same integer columns: OLS of Y on (1, T, Z), averaged over units.
    ols = backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], discrete=False, key=KEY)
    design = np.stack([np.ones(28), data["T"], data["Z"]], axis=1).astype(np.float64)
    beta = np.linalg.lstsq(design, data["Y"].astype(np.float64), rcond=None)[0]
    assert float(ols.value) == pytest.approx(beta[0] + beta[1] + beta[2] * data["Z"].mean(), 1e-5)


def test_many_cells_and_bool_columns():
    rng = np.random.default_rng(4)
    n = 6000  # a float outcome forced discrete: ~n cells, bootstrap by resampling units
    z = rng.integers(0, 3, n)
    t = rng.random(n) < 0.3 + 0.2 * z
    y = (t + z + rng.normal(size=n)).astype(np.float32)
    data = {"Z": z.astype(np.int32), "T": t, "Y": y}
    estimate = backdoor_adjustment(
        data, "T", "Y", True, adjustment_set=["Z"], discrete=True, key=KEY
    )
    by_hand = sum(np.mean(z == k) * y[t & (z == k)].mean() for k in range(3))
    assert float(estimate.value) == pytest.approx(by_hand, abs=1e-4)
    assert 0 < float(estimate.stderr) < 0.1
    # Bool columns count as discrete (discrete=None): T=1 is T=True.
    binary = confounded_binary(1000, seed=4)
    as_bool = {k: v.astype(bool) for k, v in binary.items()}
    one = backdoor_adjustment(binary, "T", "Y", 1, adjustment_set=["Z"], num_bootstrap=0, key=KEY)
    other = backdoor_adjustment(
        as_bool, "T", "Y", True, adjustment_set=["Z"], num_bootstrap=0, key=KEY
    )
    assert float(one.value) == pytest.approx(float(other.value), abs=1e-6)


def test_interventional_distribution_matches_the_truncated_factorisation():
    rng = np.random.default_rng(3)
    n = 100_000
    p_z = np.array([0.5, 0.3, 0.2])
    p_y = np.array(  # P(Y = . | T = t, Z = z), indexed [t, z, y]
        [
            [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]],
            [[0.4, 0.4, 0.2], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]],
        ]
    )
    z = rng.choice(3, size=n, p=p_z)
    t = bernoulli(rng, 0.2 + 0.3 * z)
    y = (rng.random((n, 1)) > np.cumsum(p_y[t, z], axis=1)).sum(axis=1)
    data = {"Z": z.astype(np.int32), "T": t, "Y": y.astype(np.int32)}
    for value in (0, 1):
        truth = p_z @ p_y[value]  # truncated factorisation: Σ_z P(z) P(y | t, z)
        dist = interventional_distribution(data, "T", "Y", value, graph=CONFOUNDED)
        assert list(dist) == [0, 1, 2]
        assert sum(dist.values()) == pytest.approx(1.0, abs=1e-5)
        assert list(dist.values()) == pytest.approx(truth.tolist(), abs=0.01)
        same = interventional_distribution(data, "T", "Y", value, adjustment_set=["Z"])
        assert same == pytest.approx(dist, abs=1e-7)
        # The distribution's mean is the back-door expectation.
        mean = backdoor_adjustment(
            data, "T", "Y", value, adjustment_set=["Z"], num_bootstrap=0, key=KEY
        )
        assert sum(k * p for k, p in dist.items()) == pytest.approx(float(mean.value), abs=1e-5)


def test_discrete_frontdoor_recovers_the_effect_of_smoking_through_tar():
    data = smoking_tar_cancer(200_000, seed=1)
    for x, truth in ((1, 0.62), (0, 0.34)):
        estimate = frontdoor_adjustment(data, "X", "Y", x, mediators=["M"], key=KEY)
        assert abs(float(estimate.value) - truth) < 0.01
        assert abs(float(estimate.value) - truth) < 4 * float(estimate.stderr)
    naive = [backdoor_adjustment(data, "X", "Y", x, adjustment_set=[], key=KEY) for x in (1, 0)]
    assert abs(float(naive[0].value - naive[1].value) - 0.28) > 0.1
    # "auto": no back-door set exists (U is latent), so the front-door {M} is used.
    ate = estimate_effect(data, FRONTDOOR, "X", "Y", 1, 0, key=KEY)
    assert abs(float(ate.value) - 0.28) < 0.015
    assert abs(float(ate.value) - 0.28) < 4 * float(ate.stderr)
    dist = interventional_distribution(data, "X", "Y", 1, graph=FRONTDOOR)
    assert sum(dist.values()) == pytest.approx(1.0, abs=1e-5)
    assert dist[1] == pytest.approx(0.62, abs=0.01)


# -------------------------------------------------------------------------------- continuous


def linear_confounded(n: int, seed: int, nonlinear: bool = False) -> dict[str, np.ndarray]:
    """Z -> T, Z -> Y, T -> Y with coefficient 2, so the ATE of one unit of T is 2.

    ``nonlinear``: T and Y depend on Z through Z^2 and sin(2 Z) as well, which a regression
    linear in Z cannot adjust for.
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    if nonlinear:
        t = 0.5 * z**2 + 0.5 * z + rng.normal(size=n)
        y = 2.0 * t + z**2 + np.sin(2 * z) + 0.5 * rng.normal(size=n)
    else:
        t = 0.8 * z + rng.normal(size=n)
        y = 2.0 * t + 1.5 * z + rng.normal(size=n)
    return {"Z": z.astype(np.float32), "T": t.astype(np.float32), "Y": y.astype(np.float32)}


def test_linear_backdoor_recovers_the_coefficient():
    data = linear_confounded(5000, seed=0)
    ate = estimate_effect(data, CONFOUNDED, "T", "Y", 1.0, 0.0, key=KEY)  # "auto": back-door {Z}
    assert abs(float(ate.value) - 2.0) < 0.05
    assert abs(float(ate.value) - 2.0) < 4 * float(ate.stderr)
    point = estimate_effect(data, CONFOUNDED, "T", "Y", 1.0, 0.0, num_bootstrap=0, key=KEY)
    assert float(point.value) == float(ate.value) and float(point.stderr) == 0.0
    unadjusted = [
        backdoor_adjustment(data, "T", "Y", t, adjustment_set=[], key=KEY) for t in (1.0, 0.0)
    ]
    assert abs(float(unadjusted[0].value - unadjusted[1].value) - 2.0) > 0.3


def test_mlp_backdoor_adjusts_for_a_nonlinear_confounder():
    data = linear_confounded(5000, seed=1, nonlinear=True)
    mlp = estimate_effect(
        data, CONFOUNDED, "T", "Y", 1.0, 0.0, regressor="mlp", num_bootstrap=0, key=KEY
    )
    assert abs(float(mlp.value) - 2.0) < 0.15
    linear = estimate_effect(data, CONFOUNDED, "T", "Y", 1.0, 0.0, num_bootstrap=0, key=KEY)
    assert abs(float(linear.value) - 2.0) > 0.3


def linear_frontdoor(n: int, seed: int, a: float = 1.5, b: float = -0.8) -> dict[str, np.ndarray]:
    """Latent U -> X, U -> Y; X -> M (coefficient a) -> Y (coefficient b): the ATE is a * b."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=n)
    x = u + rng.normal(size=n)
    m = a * x + rng.normal(size=n)
    y = b * m + 1.5 * u + rng.normal(size=n)
    return {"X": x.astype(np.float32), "M": m.astype(np.float32), "Y": y.astype(np.float32)}


def test_linear_frontdoor_recovers_a_times_b_despite_a_latent_confounder():
    data = linear_frontdoor(20_000, seed=2)
    ate = estimate_effect(data, FRONTDOOR, "X", "Y", 1.0, 0.0, key=KEY)  # "auto": front-door {M}
    assert abs(float(ate.value) + 1.2) < 0.05
    assert abs(float(ate.value) + 1.2) < 4 * float(ate.stderr)
    do = [frontdoor_adjustment(data, "X", "Y", x, mediators=["M"], key=KEY) for x in (1.0, 0.0)]
    assert float(do[0].value - do[1].value) == pytest.approx(float(ate.value), abs=1e-4)
    naive = [backdoor_adjustment(data, "X", "Y", x, adjustment_set=[], key=KEY) for x in (1.0, 0.0)]
    assert abs(float(naive[0].value - naive[1].value) + 1.2) > 0.5


def test_mlp_frontdoor_recovers_a_times_b():
    # The front-door formula evaluates f_Y(m, t') at pairs (m ~ P(m | t), t' ~ P(t')) off the
    # data's (M, T) manifold; a weaker X -> M link (a = 0.6) keeps those pairs in reach of an
    # MLP (with a = 1.5 its error across seeds reaches ~0.2, about twice the linear one's).
    data = linear_frontdoor(5000, seed=3, a=0.6, b=-1.0)
    ate = estimate_effect(
        data, FRONTDOOR, "X", "Y", 1.0, 0.0, regressor="mlp", num_bootstrap=0, key=KEY
    )
    assert abs(float(ate.value) + 0.6) < 0.15


# --------------------------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("kind", ["discrete", "linear"])
def test_bootstrap_stderr_matches_the_spread_across_datasets(kind):
    estimates, stderrs = [], []
    for seed in range(20):
        if kind == "discrete":
            data = confounded_binary(2000, seed=100 + seed)
            ate = estimate_effect(data, CONFOUNDED, "T", "Y", 1, 0, num_bootstrap=100, key=KEY)
        else:
            data = linear_confounded(1000, seed=100 + seed)
            ate = estimate_effect(data, CONFOUNDED, "T", "Y", 1.0, 0.0, num_bootstrap=100, key=KEY)
        estimates.append(float(ate.value))
        stderrs.append(float(ate.stderr))
    ratio = np.std(estimates, ddof=1) / np.mean(stderrs)
    assert 0.5 < ratio < 2.0
    truth = 0.3 if kind == "discrete" else 2.0
    assert abs(np.mean(estimates) - truth) < 3 * np.mean(stderrs) / np.sqrt(20)


def test_bootstrap_is_reproducible_from_the_key():
    data = confounded_binary(1000, seed=5)
    a = backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], key=jax.random.key(3))
    b = backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], key=jax.random.key(3))
    c = backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], key=jax.random.key(4))
    assert float(a.stderr) == float(b.stderr) != float(c.stderr)
    assert float(a.value) == float(c.value)


# ------------------------------------------------------------------------------ identification


def test_estimate_effect_uses_a_given_set_checked_against_the_graph():
    data = confounded_binary(20_000, seed=6)
    forced = estimate_effect(
        data, CONFOUNDED, "T", "Y", 1, 0, method="backdoor", num_bootstrap=0, key=KEY
    )
    given = estimate_effect(
        data, CONFOUNDED, "T", "Y", 1, 0, adjustment_set=["Z"], num_bootstrap=0, key=KEY
    )
    assert float(forced.value) == float(given.value)
    with pytest.raises(ValueError, match=r"not identifiable.*not identified by back-door"):
        estimate_effect(data | {"X": data["T"]}, NOT_IDENTIFIABLE, "X", "Y", 1, 0, key=KEY)
    with pytest.raises(ValueError, match="no front-door set"):
        estimate_effect(data, CONFOUNDED, "T", "Y", 1, 0, method="frontdoor", key=KEY)


# -------------------------------------------------------------------------------- error paths


def test_errors_name_the_argument_and_the_problem():
    data = confounded_binary(500, seed=7)
    with pytest.raises(ValueError, match=r"data\['Z'\].*NaN"):
        backdoor_adjustment(data | {"Z": np.where(data["Z"] == 1, np.nan, 0.0)}, "T", "Y", 1,
                            adjustment_set=["Z"], key=KEY)  # fmt: skip
    with pytest.raises(ValueError, match=r"missing.*\['W'\]"):
        backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z", "W"], key=KEY)
    with pytest.raises(ValueError, match=r"missing.*\['Z'\]"):
        estimate_effect({"T": data["T"], "Y": data["Y"]}, CONFOUNDED, "T", "Y", 1, 0, key=KEY)
    with pytest.raises(ValueError, match="mismatched batch sizes"):
        backdoor_adjustment(
            data | {"Z": data["Z"][:10]}, "T", "Y", 1, adjustment_set=["Z"], key=KEY
        )
    with pytest.raises(ValueError, match=r"regressor: expected one of.*'linear'.*'mlp'.*'forest'"):
        backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], regressor="forest", key=KEY)
    with pytest.raises(ValueError, match="treatment and outcome"):
        backdoor_adjustment(data, "T", "T", 1, adjustment_set=["Z"], key=KEY)
    with pytest.raises(ValueError, match="adjustment_set: must not contain the treatment 'T'"):
        backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z", "T"], key=KEY)
    with pytest.raises(ValueError, match=r"value: .*never takes the value 2.*\[0, 1\]"):
        backdoor_adjustment(data, "T", "Y", 2, adjustment_set=["Z"], key=KEY)
    with pytest.raises(ValueError, match="num_bootstrap"):
        backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], num_bootstrap=-1, key=KEY)
    with pytest.raises(ValueError, match="method: expected one of"):
        estimate_effect(data, CONFOUNDED, "T", "Y", 1, 0, method="iv", key=KEY)
    with pytest.raises(ValueError, match=r"data\['Y'\].*discrete"):
        interventional_distribution(data | {"Y": data["Y"] + 0.5}, "T", "Y", 1, adjustment_set=[])


def test_positivity_violation_names_the_treatment_value_and_the_stratum():
    data = confounded_binary(500, seed=8)
    # Stratum Z = 2 is never treated.
    data = {k: np.concatenate([v, np.array([c] * 5, np.int32)]) for k, v, c in
            (("Z", data["Z"], 2), ("T", data["T"], 0), ("Y", data["Y"], 1))}  # fmt: skip
    with pytest.raises(ValueError, match=r"positivity violated.*T=1.*\{Z=2\}"):
        backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], key=KEY)
    backdoor_adjustment(
        data, "T", "Y", 0, adjustment_set=["Z"], num_bootstrap=0, key=KEY
    )  # T=0 is fine
    # Front-door: a mediator value seen only under X = 1.
    fd = {"X": np.array([0, 0, 1, 1, 1]), "M": np.array([0, 0, 0, 1, 1]), "Y": np.zeros(5, int)}
    fd = {k: np.tile(v, 2) for k, v in fd.items()}  # 10 units: enough to be judged at all
    with pytest.raises(ValueError, match=r"positivity violated.*X=0 with mediators \{M=1\}"):
        frontdoor_adjustment(fd, "X", "Y", 1, mediators=["M"], key=KEY)


def test_invalid_adjustment_set_for_the_graph_is_named():
    graph = CausalGraph([("Z", "T"), ("Z", "Y"), ("T", "Y"), ("T", "W")])  # W: a bystander child
    data = confounded_binary(500, seed=9)
    data["W"] = data["T"]
    with pytest.raises(ValueError, match=r"adjustment_set: \['W'\] does not satisfy the back-door"):
        estimate_effect(data, graph, "T", "Y", 1, 0, adjustment_set=["W"], key=KEY)
    with pytest.raises(
        ValueError, match=r"adjustment_set: \['Z'\] does not satisfy the front-door"
    ):
        estimate_effect(
            data, graph, "T", "Y", 1, 0, method="frontdoor", adjustment_set=["Z"], key=KEY
        )
    with pytest.raises(ValueError, match=r"adjustment_set: .*latent node\(s\) \['U'\]"):
        estimate_effect(data, FRONTDOOR, "X", "Y", 1, 0, adjustment_set=["U"], key=KEY)


def test_a_bootstrap_or_an_mlp_needs_a_key():
    data = confounded_binary(200, seed=5)
    with pytest.raises(ValueError, match="key: the bootstrap draws random numbers"):
        backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"])
    with pytest.raises(ValueError, match="key: the MLP's initialisation draws"):
        backdoor_adjustment(
            linear_confounded(200, seed=5), "T", "Y", 1.0, adjustment_set=["Z"],
            discrete=False, regressor="mlp", num_bootstrap=0,
        )  # fmt: skip
    # Nothing random: no key needed, and the answer is the same with any.
    plain = backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], num_bootstrap=0)
    keyed = backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], num_bootstrap=0, key=KEY)
    assert plain.value == keyed.value
