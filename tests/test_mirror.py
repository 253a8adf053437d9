"""tools/check_mirror.py: the three backends mirror each other, and the check catches a drift."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import check_mirror  # noqa: E402


def _copy_backends(tmp_path) -> str:
    for backend in check_mirror.BACKENDS:
        shutil.copytree(os.path.join(ROOT, "xlmr", backend), tmp_path / "xlmr" / backend,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return str(tmp_path)


def test_the_backends_mirror_each_other():
    assert check_mirror.check_mirror(ROOT) == []


def test_the_command_exits_0_on_the_tree_without_importing_a_framework():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "check_mirror.py"), ROOT],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    imported = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, %r); import check_mirror; "
         "check_mirror.check_mirror(%r); "
         "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras') if m in sys.modules))"
         % (os.path.join(ROOT, "tools"), ROOT)], capture_output=True, text=True)
    assert imported.stdout.strip() == "[]", imported.stdout + imported.stderr


def test_a_renamed_method_fails_with_one_line_per_difference(tmp_path):
    root = _copy_backends(tmp_path)
    path = os.path.join(root, "xlmr", "tf", "layers.py")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert "    def split_heads(" in text
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace("    def split_heads(", "    def split_into_heads(", 1))
    problems = check_mirror.check_mirror(root)
    assert "layers: pt has method SelfAttention.split_heads, tf has nothing of that name" in problems
    assert "layers: tf has method SelfAttention.split_into_heads, flax has nothing of that name" in problems
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "check_mirror.py"), root],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "layers: pt has method SelfAttention.split_heads, tf has nothing of that name" in result.stdout.splitlines()


@pytest.mark.parametrize("change,expected", [
    # an argument renamed in one backend
    (("flax", "heads.py", "def __call__(self, features: jax.Array, word_embeddings",
      "def __call__(self, features: jax.Array, table"),
     "heads: pt has method LMHead.__call__(features, word_embeddings), flax has method LMHead.__call__(features, table)"),
    # a module one backend lacks
    (("pt", "losses.py", None, None), "losses: pt has no module xlmr/pt/losses.py"),
])
def test_other_drifts_are_named(tmp_path, change, expected):
    root = _copy_backends(tmp_path)
    backend, module, old, new = change
    path = os.path.join(root, "xlmr", backend, module)
    if old is None:
        os.remove(path)
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert old in text
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new, 1))
    assert expected in check_mirror.check_mirror(root)


def test_a_module_in_one_backend_only_must_be_allowed(tmp_path):
    root = _copy_backends(tmp_path)
    (tmp_path / "xlmr" / "tf" / "extra.py").write_text("def helper():\n    pass\n")
    assert "extra: tf has module xlmr/tf/extra.py, pt, flax has nothing" in check_mirror.check_mirror(root)
