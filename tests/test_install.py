""""Install only the backend you use": for each backend, a fresh virtual environment gets the wheel of this checkout
with that backend's extra and the test extra (``.[torch,test]``, ``.[tf,test]``, ``.[flax,test]``), holds that
framework and neither of the other two, and passes the part of the suite that applies to it, from that install.

What runs in each: the layering checks (tests/common/test_layering.py), the contract suite for that backend
(tests/test_contract.py, where the other backends' cases skip) and the core tests of tests/common/test_common.py (plus, for pt, its checkpoint and input tests).
``XLMR_INSTALL_TEST=full`` runs tests/common, tests/<backend> and the contract suite instead (longer: see
the README's Tests section). The environments come from pip's configured index, as a user's would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from test_wheel import ROOT, build_wheel

pytestmark = pytest.mark.slow

EXTRAS = {"pt": "torch", "tf": "tf", "flax": "flax"}
FRAMEWORKS = {"pt": "torch", "tf": "tensorflow", "flax": "jax"}
# Beyond the contract suite: the config, weight table and input rules (tests/common/test_common.py) and, for pt, the
# checkpoint files against HF's classes and its input checks. tests/common/test_checkpoint.py, tests/tf and
# tests/flax compare with HF's PyTorch classes, so without torch they skip.
EXTRA_MODULES = {"pt": ["tests/common/test_common.py", "tests/common/test_checkpoint.py", "tests/pt/test_pt_inputs.py"],
                 "tf": ["tests/common/test_common.py"], "flax": ["tests/common/test_common.py"]}


def suite_part(backend: str) -> list[str]:
    if os.environ.get("XLMR_INSTALL_TEST") == "full":
        parts = ["tests/common", f"tests/{backend}", "tests/test_contract.py"]
    else:
        parts = ["tests/common/test_layering.py", "tests/test_contract.py", *EXTRA_MODULES[backend]]
    return [os.path.join(ROOT, p) for p in parts]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    return build_wheel(str(tmp_path_factory.mktemp("wheel")))


def run(command: list[str], timeout: int, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.mark.parametrize("backend", list(EXTRAS))
def test_a_single_backend_install_holds_only_its_framework_and_passes_its_part_of_the_suite(wheel, tmp_path,
                                                                                           backend):
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    start = time.perf_counter()
    # The venv gets no pip of its own: this Python's pip installs into it (--python), which saves a bootstrap.
    made = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], 300)
    assert made.returncode == 0, made.stderr[-2000:]
    installed = run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile",
                     f"{wheel}[{EXTRAS[backend]},test]"], 1800)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    install_seconds = time.perf_counter() - start

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3")
    probe = ("import importlib.util as u, xlmr\n"
             "print(xlmr.__file__)\n"
             f"print(sorted(m for m in {sorted(FRAMEWORKS.values())!r} if u.find_spec(m)))\n")
    found = run([python, "-c", probe], 300, cwd=tmp_path, env=env)
    assert found.returncode == 0, found.stderr[-2000:]
    location, frameworks = found.stdout.strip().splitlines()[-2:]
    assert location.startswith(str(venv)), f"xlmr imported from {location}, not from the install"
    assert eval(frameworks) == [FRAMEWORKS[backend]], f".[{EXTRAS[backend]},test] installed {frameworks}"

    # From a folder outside the checkout, so that the installed xlmr is the one tested.
    tests = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", ROOT, *suite_part(backend)],
                3600, cwd=tmp_path, env=env)
    summary = tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else ""
    print(f"{backend}: install {install_seconds:.0f} s, tests {time.perf_counter() - start - install_seconds:.0f} s: "
          f"{summary}")
    assert tests.returncode == 0, tests.stdout[-5000:] + tests.stderr[-2000:]
    counts = dict((k, int(n)) for n, k in re.findall(r"(\d+) (passed|skipped|failed|errors?)", summary))
    assert counts.get("passed", 0) >= 20 and not counts.get("failed") and not counts.get("error"), summary
