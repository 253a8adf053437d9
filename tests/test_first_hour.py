"""What a newcomer meets first: clear messages when a framework is missing, and a quiet TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xlmr.backends import installed_backends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ.update(env, PYTHONPATH=ROOT + os.pathsep + environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300,
                          cwd=os.path.expanduser("~"))


@pytest.mark.parametrize("backend,blocked,extra", [("tf", "keras", "tf"), ("tf", "tensorflow", "tf"),
                                                   ("flax", "jax", "flax"), ("flax", "optax", "flax"),
                                                   ("pt", "torch", "torch")])
def test_importing_a_backend_without_its_framework_names_the_extra(backend, blocked, extra):
    result = _python(f"import sys; sys.modules[{blocked!r}] = None\n"
                     f"try:\n    import xlmr.{backend}\nexcept ImportError as e:\n    print(e)\n")
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert message == (f"xlmr.{backend} needs {blocked}, which is not installed for {sys.executable}: "
                       f"pip install 'xlmr[{extra}]'")


@pytest.mark.skipif("tf" not in installed_backends(), reason="needs tensorflow")
def test_tensorflow_start_up_logging_does_not_leak():
    result = _python("import xlmr.tf, tensorflow as tf; print(int(tf.constant(1) + 1))")
    assert result.returncode == 0 and result.stdout.strip() == "2"
    assert result.stderr == "", result.stderr  # no oneDNN, cuda-driver or cuInit lines


@pytest.mark.skipif("tf" not in installed_backends(), reason="needs tensorflow")
def test_a_log_level_the_user_chose_is_kept():
    result = _python("import os, xlmr.tf; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])", TF_CPP_MIN_LOG_LEVEL="1")
    assert result.stdout.strip() == "1"


def test_bench_help_documents_every_option_and_its_choices():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option, choices in [("--sections", "peak,forward,mixed,convert,tokenizer"), ("--shapes", "base,large"),
                            ("--sizes", "1x128,8x128,32x128,8x512"), ("--dtypes", "float32,bfloat16"),
                            ("--backends", "pt,tf,flax")]:
        assert f"{option} LIST " in text and choices in text.split(f"{option} LIST ", 2)[-1].split(" --")[0]
    for option in ("--repeats N", "--no-hf", "--quick", "--json"):
        after = text.split(option, 2)[-1].strip()
        assert not after.startswith("--"), f"{option} has no help text"
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), "--sizes", "9x9"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--sizes takes a comma-separated subset of 1x128,8x128,32x128,8x512; got '9x9'" \
        in bad.stderr
