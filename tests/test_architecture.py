"""The seams hold: layering, lookups that resolve, and a platform that names no dataset."""

import ast
import pathlib
import subprocess
import sys

import pytest

from causalvision.data import DATASETS, Dataset
from causalvision.lookup import resolve
from causalvision.metrics import EVALUATORS
from causalvision.nn import IMAGE_MODELS, ImageModel
from causalvision.train import TASKS, TaskSpec
from causalvision.train.optim import OPTIMIZERS, SCHEDULES

PACKAGE = pathlib.Path(__file__).parent.parent / "causalvision"
# Where no line may name a dataset: the platform reads everything off `Dataset` objects.
DATASET_FREE = ["train", "metrics", "audit", "cli.py"]
# Who may import whom (DESIGN.md): an arrow only points down.
FORBIDDEN = {
    "graph": ("scm", "nn", "losses", "train", "data", "metrics", "audit", "cli"),
    "scm": ("nn", "losses", "train", "data", "metrics", "audit", "cli"),
    "nn": ("train", "data", "metrics", "audit", "cli"),
    "losses": ("train", "data", "metrics", "audit", "cli"),
    "data": ("nn", "losses", "train", "metrics", "audit", "cli"),
    "metrics": ("nn", "losses", "data", "train", "audit", "cli"),
    "train": ("metrics", "audit", "cli"),
    "audit": ("cli",),
}


def _files(part: str) -> list[pathlib.Path]:
    path = PACKAGE / part
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def _dataset_words() -> list[str]:
    words = {"morpho", "mnist", "celeba"}  # the generators and the real datasets they mimic
    for name in DATASETS:
        words.add(name.split("_")[0].lower())
        words.add(resolve(name, DATASETS, "data.name").__name__.lower())
    return sorted(words)


@pytest.mark.parametrize("part", DATASET_FREE)
def test_the_platform_names_no_dataset(part):
    words = _dataset_words()
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in _files(part)
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if any(word in line.lower() for word in words)
    ]
    assert not found, "\n".join(found)


def _imports(path: pathlib.Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_only_point_down(layer):
    bad = []
    for path in _files(layer):
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] == "causalvision" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                bad.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not bad, "\n".join(bad)


def test_the_bottom_helpers_import_nothing_of_the_library():
    for name in ("lookup.py", "validation.py"):
        modules = _imports(PACKAGE / name)
        assert not [m for m in modules if m.startswith("causalvision")], name


@pytest.mark.parametrize(
    ("catalogue", "check"),
    [
        (DATASETS, lambda obj: isinstance(obj(), Dataset)),
        (IMAGE_MODELS, lambda obj: issubclass(obj, object) and hasattr(obj.Config, "tiny")),
        (TASKS, lambda obj: isinstance(obj, TaskSpec)),
        (EVALUATORS, lambda obj: callable(getattr(obj, "run", None))),
        (OPTIMIZERS, callable),
        (SCHEDULES, callable),
    ],
    ids=["datasets", "image_models", "tasks", "evaluators", "optimizers", "schedules"],
)
def test_every_catalogue_name_resolves_to_its_kind(catalogue, check):
    for name in catalogue:
        assert check(resolve(name, catalogue, name)), name


def test_image_models_are_image_models():
    from flax import nnx

    from causalvision.data import MorphoDigits
    from causalvision.nn import DeepSCM

    width = DeepSCM.context_dim(MorphoDigits.attribute_specs)
    for name in IMAGE_MODELS:
        model_type = resolve(name, IMAGE_MODELS, name)
        model = model_type(model_type.Config.tiny((32, 32, 1), width), rngs=nnx.Rngs(0))
        assert isinstance(model, ImageModel), name


def test_components_are_imported_only_when_looked_up():
    """Nothing registers on import: importing the library loads no task, model or dataset."""
    code = (
        "import sys, causalvision.train, causalvision.metrics, causalvision.data\n"
        "lazy = ['causalvision.train.tasks.deep_scm', 'causalvision.train.tasks.deep_scm_cf',"
        " 'causalvision.train.tasks.attribute_predictor', 'causalvision.nn.hvae']\n"
        "print([m for m in lazy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_importing_the_library_starts_no_jax_backend():
    """A multi-host run calls `jax.distributed.initialize` after its imports, which fails once
    anything has started a backend (e.g. a dataset built at import time for a TFDS config)."""
    code = (
        "import causalvision.train, causalvision.metrics, causalvision.data, causalvision.nn\n"
        "import causalvision.audit\n"
        "from jax._src import xla_bridge\n"
        "print(xla_bridge.backends_are_initialized())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
