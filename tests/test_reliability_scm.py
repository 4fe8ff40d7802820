"""No silent wrong answers from the SCM engine and the estimators: one rule per test.

Each rule is a class of inputs that used to come back as NaN, -inf or a confident number and
is now refused with a one-line error naming the argument (or, where an answer exists but
rests on little, a warning naming the reason).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from causalvision.graph import CausalGraph
from causalvision.scm import (
    SCM,
    AdditiveNoise,
    Attribute,
    Categorical,
    Inference,
    LinearGaussian,
    NumpyroMechanism,
    Root,
    from_world,
)
from causalvision.scm.estimators import (
    backdoor_adjustment,
    estimate_effect,
    frontdoor_adjustment,
    interventional_distribution,
)
from causalvision.validation import check_key

KEY = jax.random.key(0)
CONFOUNDED = CausalGraph([("Z", "T"), ("Z", "Y"), ("T", "Y")])
NON_FINITE = r"contains 1 non-finite value\(s\) \(NaN or inf\)"


def primer() -> SCM:
    return SCM(
        {
            "X": Root(dist.Normal(0.0, 1.0)),
            "H": LinearGaussian(["X"], weights=[0.5]),
            "Y": LinearGaussian(["X", "H"], weights=[0.7, 0.4]),
        }
    )


def gamma_scm() -> SCM:
    return SCM({"S": Root(dist.Gamma(2.0, 1.0)), "T": LinearGaussian(["S"], weights=[1.0])})


def coin_scm() -> SCM:
    return SCM(
        {"A": Categorical([], [0.5, 0.5]), "B": Categorical(["A"], [[0.9, 0.1], [0.2, 0.8]])}
    )


def units(scm: SCM, n: int = 8) -> dict[str, jax.Array]:
    return scm.sample(KEY, n)


def confounded(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)
    t = (rng.random(n) < 0.3 + 0.4 * z).astype(np.int32)
    y = (rng.random(n) < 0.2 + 0.3 * t + 0.3 * z).astype(np.int32)
    return {"Z": z.astype(np.int32), "T": t, "Y": y}


def linear(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    t = 0.8 * z + rng.normal(size=n)
    return {"Z": z, "T": t, "Y": 2.0 * t + 1.5 * z + rng.normal(size=n)}


# ------------------------------------------------------ 1. non-finite means NaN or inf


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan], ids=["inf", "-inf", "nan"])
def test_non_finite_values_are_refused_wherever_they_enter(bad):
    scm, data = primer(), units(primer())
    spoiled = {**data, "H": data["H"].at[0].set(bad)}
    with pytest.raises(ValueError, match=r"factual\['H'\]: " + NON_FINITE):
        scm.counterfactual(spoiled, {"X": 1.0})
    with pytest.raises(ValueError, match=r"values\['H'\]: " + NON_FINITE):
        scm.log_prob(spoiled)
    with pytest.raises(ValueError, match=r"data\['H'\]: " + NON_FINITE):
        scm.fit(spoiled, key=KEY, progress_bar=False)
    with pytest.raises(ValueError, match=r"do\['H'\]: " + NON_FINITE):
        scm.counterfactual(data, {"H": bad})
    with pytest.raises(ValueError, match=r"do\['H'\]: " + NON_FINITE):
        scm.sample(KEY, 4, do={"H": jnp.array([0.0, bad, 0.0, 0.0])})
    with pytest.raises(ValueError, match=r"value: " + NON_FINITE):
        scm.ate(KEY, "X", "Y", bad, 0.0)
    with pytest.raises(ValueError, match=r"given\['X'\]: " + NON_FINITE):
        scm.cate(KEY, "H", "Y", 1.0, 0.0, given={"X": bad})
    # Estimators: the columns they use, and the treatment values.
    table = linear(50)
    with pytest.raises(ValueError, match=r"data\['Y'\]: " + NON_FINITE):
        backdoor_adjustment(
            {**table, "Y": np.where(np.arange(50) == 3, bad, table["Y"])},
            "T",
            "Y",
            1.0,
            adjustment_set=["Z"],
            key=KEY,
        )
    with pytest.raises(ValueError, match=r"value: expected a finite scalar treatment value"):
        backdoor_adjustment(table, "T", "Y", bad, adjustment_set=["Z"], key=KEY)


def test_a_shift_to_non_finite_values_is_refused():
    scm, data = primer(), units(primer())
    with pytest.raises(ValueError, match=r"do\['H'\]: the shift returned 8 non-finite value\(s\)"):
        scm.counterfactual(data, {"H": lambda h: h / 0.0})


# ------------------------------------------------------------------- 2. no None interventions


def test_a_none_intervention_is_refused_in_every_form():
    scm, data = primer(), units(primer())
    none = r"expected an intervention value for node 'H' .*got None"
    with pytest.raises(ValueError, match=r"do\['H'\]: " + none):
        scm.counterfactual(data, {"H": None})
    with pytest.raises(ValueError, match=r"do\['H'\]: " + none):
        scm.sample(KEY, 4, do={"H": None})
    with pytest.raises(ValueError, match=r"do\['H'\]: " + none):
        scm.multi_world({"a": {"X": 1.0}, "b": {"H": None}}, key=KEY, num_samples=4)
    with pytest.raises(ValueError, match=r"baseline: expected an intervention value for node 'X'"):
        scm.ate(KEY, "X", "Y", 1.0, None)
    with pytest.raises(ValueError, match=r"given\['X'\]: expected a number .* got None"):
        scm.cate(KEY, "H", "Y", 1.0, 0.0, given={"X": None})
    # Other values that are no intervention: strings, a non-dict, an unknown world's node.
    with pytest.raises(ValueError, match=r"do\['H'\]: expected a number or an array of numbers"):
        scm.counterfactual(data, {"H": "2.0"})
    with pytest.raises(ValueError, match=r"do: expected a dict node -> intervention value"):
        scm.counterfactual(data, "H")
    with pytest.raises(ValueError, match=r"do\['H'\]: from_world: unknown node\(s\) \['Q'\]"):
        scm.multi_world({"a": {"X": 1.0}, "b": {"H": from_world("a", "Q")}}, factual=data)


def test_per_unit_and_constant_interventions_must_fit_the_node():
    scm, data = primer(), units(primer())
    with pytest.raises(
        ValueError,
        match=r"do\['H'\]: expected a constant of the node's per-unit "
        r"shape \(\) or one value per unit of shape \(8,\), "
        r"got shape \(3,\)",
    ):
        scm.counterfactual(data, {"H": jnp.zeros(3)})
    vector = SCM({"V": Root(dist.Normal(jnp.zeros(2), 1.0).to_event(1))})
    with pytest.raises(ValueError, match=r"do\['V'\]: .*per-unit shape \(2,\).*got shape \(3,\)"):
        vector.sample(KEY, 4, do={"V": jnp.zeros(3)})
    np.testing.assert_allclose(vector.sample(KEY, 4, do={"V": jnp.ones(2)})["V"], 1.0)


# ---------------------------------------------------------------- 3. values inside the support


def test_a_shift_out_of_the_support_is_refused_with_the_support_named():
    scm = gamma_scm()
    data = units(scm, 5)
    out = r"do\['S'\]: the shift moved 5 value\(s\) outside the support of node 'S' " + (
        r"\(Positive\(lower_bound=0\.0\)\), e\.g\. \[-9"
    )
    with pytest.raises(ValueError, match=out):
        scm.counterfactual(data, {"S": lambda s: s - 100.0})
    with pytest.raises(ValueError, match=out):
        scm.sample(KEY, 5, do={"S": lambda s: s - 100.0})
    with pytest.raises(ValueError, match=r"do\['S'\]: the shift moved 10 value\(s\) outside"):
        scm.ate(KEY, "S", "T", lambda s: s - 100.0, 1.0, num_samples=10)
    # Values and data go through the same check, and say the support too.
    with pytest.raises(ValueError, match=r"do\['S'\]: 1 value\(s\) outside .*\(Positive"):
        scm.counterfactual(data, {"S": -1.0})
    with pytest.raises(ValueError, match=r"data\['S'\]: 1 value\(s\) outside .*\(Positive"):
        scm.fit({**data, "S": data["S"].at[0].set(-1.0)}, key=KEY, progress_bar=False)
    # Discrete nodes: a shift past the last category.
    coins = coin_scm()
    with pytest.raises(ValueError, match=r"do\['A'\]: the shift moved .* \(integers 0\.\.1\)"):
        coins.counterfactual(units(coins), {"A": lambda a: a + 2}, KEY)


def test_under_jit_a_shift_out_of_the_support_passes_as_documented():
    # Under jit the shifted values are abstract: nothing can raise, they come back as they are.
    scm = gamma_scm()
    data = units(scm, 5)
    shifted = jax.jit(lambda f: scm.counterfactual(f, {"S": lambda s: s - 100.0})["S"])(data)
    np.testing.assert_allclose(shifted, data["S"] - 100.0, rtol=1e-6)


# --------------------------------------------------------------------- 4. shift result shapes


def test_a_shift_must_return_the_nodes_shape_and_dtype():
    scm, data = primer(), units(primer())
    shape = r"do\['H'\]: the shift function must return an array of the node's shape \(8,\)"
    with pytest.raises(ValueError, match=shape + r" \(one value per unit\), got shape \(8, 1\)"):
        scm.counterfactual(data, {"H": lambda h: h[:, None]})
    with pytest.raises(ValueError, match=shape + r", got NoneType"):
        scm.counterfactual(data, {"H": lambda h: None})
    with pytest.raises(ValueError, match=shape + r".*got shape \(\)"):  # a reduction
        scm.sample(KEY, 8, do={"H": lambda h: h.mean()})
    with pytest.raises(ValueError, match=shape):  # static: raised under jit as well
        jax.jit(lambda f: scm.counterfactual(f, {"H": lambda h: h[:4]}))(data)
    coins = coin_scm()
    with pytest.raises(ValueError, match=r"do\['A'\]: the shift function returned dtype float32"):
        coins.counterfactual(units(coins), {"A": lambda a: a.astype(jnp.float32) + 0.5}, KEY)


# ---------------------------------------------------------- 5. mechanism parameters checked


def constant(x):
    return x


def scaled_model(X):
    s = numpyro.param("s", jnp.nan)
    return s * X + numpyro.sample("u", dist.Normal(0.0, 1.0))


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: LinearGaussian(["X"], [1.0], scale=0.0), ValueError,
         r"LinearGaussian\.scale: expected finite number\(s\) > 0, got 0\.0"),
        (lambda: LinearGaussian(["X"], [1.0], scale=-1.0), ValueError, r"LinearGaussian\.scale"),
        (lambda: LinearGaussian(["X"], [np.inf]), ValueError,
         r"LinearGaussian\.weights: expected finite number\(s\), got \[inf\]"),
        (lambda: LinearGaussian(["X"], [1.0], bias=np.nan), ValueError, r"LinearGaussian\.bias"),
        (lambda: LinearGaussian(["X"], ["1.0"]), ValueError, r"LinearGaussian\.weights"),
        (lambda: LinearGaussian("XY", [1.0, 2.0]), ValueError,
         r"LinearGaussian\.parents: expected a list of node names, got 'XY'"),
        (lambda: Root(dist.Normal(0.0, jnp.inf)), ValueError,
         r"Root: parameter 'scale' of Normal must be finite and satisfy Positive"),
        (lambda: Root(dist.Normal(0.0, -1.0, validate_args=False)), ValueError,
         r"Root: parameter 'scale' of Normal"),
        (lambda: Root(dist.Normal(jnp.zeros(2), jnp.array([1.0, jnp.inf])).to_event(1)),
         ValueError, r"Root: parameter 'scale' of Normal"),
        (lambda: Root(dist.Bernoulli(probs=1.5, validate_args=False)), ValueError,
         r"Root: parameter 'probs' of BernoulliProbs .* UnitInterval"),
        (lambda: AdditiveNoise(["X"], constant, dist.Normal(0.0, jnp.inf)), ValueError,
         r"AdditiveNoise\.noise: parameter 'scale' of Normal"),
        (lambda: AdditiveNoise(["X"], constant, dist.Normal(jnp.zeros(2), 1.0)), ValueError,
         r"AdditiveNoise\.noise: the distribution must have an empty batch shape"),
        (lambda: AdditiveNoise(["X"], 2.0), TypeError, r"AdditiveNoise\.fn: expected a function"),
        (lambda: Categorical([], [1.5, -0.5]), ValueError,
         r"Categorical\.table: expected finite number\(s\) >= 0\.0 and <= 1\.0"),
        (lambda: Categorical([], [np.nan, 1.0]), ValueError, r"Categorical\.table"),
        (lambda: Categorical([], logits=[np.nan, 0.0]), ValueError, r"Categorical\.logits"),
        (lambda: Categorical([], logits=[np.inf, 0.0]), ValueError, r"Categorical\.logits"),
        (lambda: Categorical([], logits=[-np.inf, -np.inf]), ValueError,
         r"Categorical\.logits: .*with a finite value in every row"),
        (lambda: Inference(num_steps=0), ValueError,
         r"Inference\.num_steps: expected an int >= 1, got 0"),
        (lambda: Inference(num_warmup="9"), ValueError, r"Inference\.num_warmup"),
        (lambda: Inference(obs_scale=0.0), ValueError,
         r"Inference\.obs_scale: expected a finite number > 0, got 0\.0"),
        (lambda: Inference(learning_rate=np.nan), ValueError, r"Inference\.learning_rate"),
        (lambda: NumpyroMechanism(["X"], scaled_model), ValueError,
         r"NumpyroMechanism\.params\['s'\]: expected finite value\(s\)"),
        (lambda: NumpyroMechanism(["X"], constant, inference="svi"), TypeError,
         r"NumpyroMechanism\.inference: expected an Inference"),
        (lambda: Attribute("a", "continuous", standardise=(0.0, 0.0)), ValueError,
         r"attributes\['a'\]\.standardise scale: expected a finite number > 0, got 0\.0"),
        (lambda: Attribute("a", "continuous", standardise=("1", 2.0)), ValueError,
         r"attributes\['a'\]\.standardise offset: expected a finite number, got '1'"),
        (lambda: Attribute("a", "continuous", parents="xy"), ValueError,
         r"attributes\['a'\]\.parents: expected a list of node names, got 'xy'"),
    ],
)  # fmt: skip
def test_mechanism_constructors_check_their_parameters(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_valid_edge_parameters_and_traced_parameters_pass():
    # A category of probability zero is -inf in logits; a table row may hold a zero.
    assert float(Categorical([], logits=[-np.inf, 0.0]).logits[0]) == -np.inf
    Categorical([], [0.0, 1.0])
    # Traced parameters (a mechanism built inside a jitted loss) cannot be read: they pass.
    scale = jax.jit(lambda s: LinearGaussian(["X"], [1.0], scale=s).scale)(-1.0)
    assert float(scale) == -1.0
    logits = jax.jit(lambda x: Categorical([], logits=x).logits)(jnp.zeros(3))
    assert logits.shape == (3,)


# --------------------------------------------------------- 6. estimators refuse or warn loudly


@pytest.mark.parametrize("kind", ["discrete", "linear"])
def test_too_few_rows_are_refused(kind):
    data = confounded(3) if kind == "discrete" else linear(3)
    with pytest.raises(
        ValueError,
        match=r"data: 3 rows are too few to estimate E\[Y \| do\(T\)\] "
        r"by back-door adjustment; need at least 10",
    ):
        estimate_effect(data, CONFOUNDED, "T", "Y", 1, 0, key=KEY)
    # A regression needs twice as many units as coefficients: 6 + 2 here.
    rng = np.random.default_rng(0)
    wide = {name: rng.normal(size=12) for name in ("Z0", "Z1", "Z2", "Z3", "Z4", "Z5", "T", "Y")}
    with pytest.raises(ValueError, match=r"data: 12 rows are too few .*need at least 16"):
        backdoor_adjustment(
            wide, "T", "Y", 0.0, adjustment_set=[f"Z{i}" for i in range(6)], key=KEY
        )
    with pytest.raises(ValueError, match=r"data: 3 rows are too few to estimate P\(Y \| do\(T\)\)"):
        interventional_distribution(confounded(3), "T", "Y", 1, adjustment_set=["Z"])


@pytest.mark.parametrize("kind", ["discrete", "linear"])
def test_a_treatment_that_never_varies_is_refused(kind):
    data = confounded(200) if kind == "discrete" else linear(200)
    data["T"] = np.ones_like(data["T"])
    with pytest.raises(
        ValueError,
        match=r"treatment 'T' never varies in data \(positivity "
        r"violated\): every unit has T=1",
    ):
        estimate_effect(data, CONFOUNDED, "T", "Y", 1, 0, key=KEY)
    # Asking for the one value observed is fine: E[Y | do(T=1)] = E[Y] when everyone is treated.
    same = backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], num_bootstrap=0)
    np.testing.assert_allclose(same.value, np.mean(data["Y"]), atol=1e-5)


def test_discrete_near_violations_warn_with_the_reason():
    data = confounded(400)
    treated_in_z1 = np.flatnonzero((data["Z"] == 1) & (data["T"] == 1))
    data["T"][treated_in_z1[2:]] = 0  # two treated units left in the stratum Z = 1
    with pytest.warns(
        UserWarning,
        match=r"positivity nearly violated: 1 \(treatment, stratum\) "
        r"cell\(s\) have fewer than 3 units, e\.g\. 2 unit\(s\) "
        r"with T=1 in the stratum \{Z=1\}",
    ) as record:
        estimate_effect(data, CONFOUNDED, "T", "Y", 1, 0, key=KEY)
    assert record[0].filename == __file__  # attributed to the caller's line
    # Many units, but a propensity of 10 / ~2000.
    big = confounded(4000, seed=1)
    z1 = np.flatnonzero(big["Z"] == 1)
    big["T"][z1] = 0
    big["T"][z1[:10]] = 1
    with pytest.warns(UserWarning, match=r"have a propensity below 0\.01, e\.g\. 10 unit\(s\)"):
        backdoor_adjustment(big, "T", "Y", 1, adjustment_set=["Z"], num_bootstrap=0)
    big["T"][z1[:10]] = 0  # and none: the formula is undefined
    with pytest.raises(
        ValueError,
        match=r"positivity violated: no unit has treatment T=1 in the "
        r"stratum \{Z=1\}",
    ):
        backdoor_adjustment(big, "T", "Y", 1, adjustment_set=["Z"], num_bootstrap=0)


def test_regression_near_violations_warn_with_the_reason():
    data = confounded(400)
    data["T"][data["Z"] == 1] = 0  # strata with Z = 1 (about half the units) are never treated
    extrapolated = r"positivity violated for 5\d\.\d% of the units: no unit has T=1 in the stratum"
    with pytest.warns(UserWarning, match=extrapolated + r" \{Z=1\}.*extrapolates"):
        backdoor_adjustment(data, "T", "Y", 1, adjustment_set=["Z"], discrete=False, key=KEY)
    table = linear(200)
    with pytest.warns(
        UserWarning,
        match=r"treatment 'T': the value 10\.0 lies outside the "
        r"observed range",
    ):
        backdoor_adjustment(table, "T", "Y", 10.0, adjustment_set=["Z"], num_bootstrap=0)
    table["T"] = (np.arange(200) < 2).astype(np.int32)  # a discrete arm of two units
    with pytest.warns(UserWarning, match=r"only 2 unit\(s\) have T=1"):
        backdoor_adjustment(table, "T", "Y", 1, adjustment_set=["Z"], num_bootstrap=0)
    # Front-door: the mediator value M=1 reached from X=1 never occurs with X=0.
    fd = {"X": np.tile([0, 0, 1, 1, 1], 4), "M": np.tile([0, 0, 0, 1, 1], 4)}
    fd["Y"] = fd["M"] + np.linspace(0.0, 1.0, 20)
    with pytest.warns(UserWarning, match=r"positivity violated for 40\.0% of the units: not every "
                                         r"value of X occurs with mediators \{M=1\}"):  # fmt: skip
        frontdoor_adjustment(fd, "X", "Y", 1, mediators=["M"], discrete=False, num_bootstrap=0)


def test_a_single_bootstrap_replicate_is_refused():
    # One replicate has no spread: its "standard error" would be 0.
    with pytest.raises(
        ValueError,
        match=r"num_bootstrap: expected 0 \(no standard error\) or an "
        r"int >= 2, got 1",
    ):
        backdoor_adjustment(
            linear(50), "T", "Y", 1.0, adjustment_set=["Z"], num_bootstrap=1, key=KEY
        )
    with pytest.raises(ValueError, match=r"num_samples: expected an int >= 2, got 1"):
        primer().ate(KEY, "X", "Y", 1.0, 0.0, num_samples=1)


# ------------------------------------------------------------ 7. errors name the argument


@pytest.mark.parametrize(
    "bad", [None, 0, jnp.zeros(2), jax.random.split(KEY, 3)], ids=["None", "int", "floats", "batch"]
)
def test_a_key_that_is_no_prng_key_is_named(bad):
    expected = r"key: expected a JAX PRNG key \(jax\.random\.key\(seed\)\), got "
    scm, data = coin_scm(), units(coin_scm())
    with pytest.raises(ValueError, match=expected):
        scm.sample(bad, 4)
    with pytest.raises(ValueError, match=expected):
        scm.ate(bad, "A", "B", 1, 0)
    with pytest.raises(ValueError, match=expected):
        scm.cate(bad, "A", "B", 1, 0, given={"A": 0})
    # The estimators need a key for the bootstrap only, and say so when it is missing.
    needed = r"key: the bootstrap draws random numbers" if bad is None else expected
    with pytest.raises(ValueError, match=needed):
        backdoor_adjustment(confounded(50), "T", "Y", 1, adjustment_set=["Z"], key=bad)
    if bad is not None:  # None means "no key" where none is needed, and is named otherwise
        with pytest.raises(ValueError, match=expected):
            scm.counterfactual(data, {"A": 1}, bad)
        with pytest.raises(ValueError, match=expected):
            primer().fit(units(primer()), key=bad, progress_bar=False)
    if bad is None:
        with pytest.raises(ValueError, match=expected + "None"):
            scm.sample(bad, 4)


def test_legacy_raw_keys_are_accepted_with_the_same_stream():
    raw = jax.random.PRNGKey(3)
    scm = primer()
    np.testing.assert_array_equal(scm.sample(raw, 4)["Y"], scm.sample(jax.random.key(3), 4)["Y"])
    a = backdoor_adjustment(linear(50), "T", "Y", 1.0, adjustment_set=["Z"], key=raw)
    b = backdoor_adjustment(linear(50), "T", "Y", 1.0, adjustment_set=["Z"], key=jax.random.key(3))
    assert float(a.stderr) == float(b.stderr)
    assert jax.dtypes.issubdtype(jax.jit(check_key)(raw).dtype, jax.dtypes.prng_key)


def test_data_errors_name_the_argument_not_internals():
    scm, data = primer(), units(primer())
    strings = r"data\['X'\]: expected numbers or bools \(one value per unit\), got dtype <U"
    with pytest.raises(ValueError, match=strings):
        scm.fit({**data, "X": np.asarray(data["X"]).astype(str)}, key=KEY, progress_bar=False)
    with pytest.raises(ValueError, match=strings):
        backdoor_adjustment(
            {**linear(50), "X": np.array(["a"] * 50)}, "X", "Y", 1.0, adjustment_set=[], key=KEY
        )
    with pytest.raises(ValueError, match=r"factual\['X'\]: expected numbers or bools"):
        scm.counterfactual({**data, "X": [None] * 8}, {"H": 1.0})
    with pytest.raises(
        ValueError,
        match=r"data: no observations; expected columns for the "
        r"model's nodes, missing \['X', 'H', 'Y'\]",
    ):
        scm.fit({}, key=KEY, progress_bar=False)
    with pytest.raises(ValueError, match=r"data: expected at least one unit, got columns of len"):
        scm.fit({"X": jnp.zeros(0)}, key=KEY, progress_bar=False)
    with pytest.raises(ValueError, match=r"num_steps: expected an int >= 1, got 0"):
        scm.fit(data, num_steps=0, key=KEY, progress_bar=False)
    with pytest.raises(ValueError, match=r"nodes: unknown node\(s\) \['Q'\]"):
        scm.abduct(data, nodes=["Q"])
    with pytest.raises(ValueError, match=r"factual: missing value\(s\) for node\(s\) \['X'\]"):
        scm.abduct({"H": data["H"]}, nodes=["H"])


def test_estimate_effect_with_data_and_graph_swapped_names_the_graph():
    from causalvision.scm import estimate_effect

    graph = CausalGraph([("T", "Y")])
    data = {"T": np.array([0, 1] * 10), "Y": np.arange(20.0)}
    with pytest.raises(TypeError, match="graph: expected a CausalGraph"):
        estimate_effect(graph, data, "T", "Y", 1, 0, key=jax.random.key(0))
