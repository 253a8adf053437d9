"""The ``>>>`` examples in the backends' modules run, and show what they say (when the framework is installed)."""

from __future__ import annotations

import doctest
import importlib
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = {"pt": "torch", "tf": "tensorflow", "flax": "flax"}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules() -> list[tuple[str, str]]:
    out = []
    for backend in FRAMEWORKS:
        folder = os.path.join(ROOT, "xlmr", backend)
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                out.append((backend, "xlmr." + backend + ("" if name == "__init__.py" else "." + name[:-3])))
    return out


@pytest.mark.parametrize("backend,module", _modules(), ids=[m for _, m in _modules()])
def test_examples_run(backend, module):
    pytest.importorskip(FRAMEWORKS[backend])
    mod = importlib.import_module(module)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    tests = [t for t in finder.find(mod, module) if t.examples]
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} example(s) in {module} failed (output above)"
