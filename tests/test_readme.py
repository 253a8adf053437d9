"""The README's two set-up commands are the ones CI and users run."""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_commands() -> list[str]:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_ci_runs_exactly_the_readme_test_command():
    main_job, tests = _readme_commands()
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read().splitlines()
    assert tests in ci
    assert tests.endswith("-m pytest -q") and "[all,test]" in tests


def test_readme_main_job_runs_the_parity_check():
    main_job, _ = _readme_commands()
    assert main_job.endswith("tools/parity.py") and '".[all]"' in main_job


def test_torch_requirement_resolves_to_the_cpu_wheel_here():
    # torch 2.14 would pull the multi-GB CUDA build on this machine; the extra must stop below it.
    text = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()
    spec = re.search(r'torch = \["torch([^"]*)"\]', text).group(1)
    assert "<2.14" in spec and ">=2.4" in spec
