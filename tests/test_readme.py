"""The README's example runs and prints the answers it claims."""

import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).parents[1] / "README.md"


def test_readme_example_prints_its_answers():
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1.9]"
    assert lines[1].startswith("Estimate(0.7 ±")
    assert lines[2] == "P(Y | do(H)) = Σ_{X} P(Y | H, X) P(X)"
