"""The package as a user gets it: a wheel built from this checkout, installed into an empty folder, runs the
``xlmr`` command from anywhere, with the embedded default checkpoint inside it and no tests or tools.

The wheel is installed with ``--no-deps --target``: the frameworks come from the running Python's environment, and
the ``xlmr`` found is the wheel's (asserted through ``xlmr.__file__``), never this checkout's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = ("config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json")

pytestmark = pytest.mark.slow


def build_wheel(folder) -> str:
    """A wheel of this checkout, built from a copy of its sources so that no build/ or egg-info lands in it."""
    source = os.path.join(folder, "source")
    shutil.copytree(os.path.join(ROOT, "xlmr"), os.path.join(source, "xlmr"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source)
    out = os.path.join(folder, "dist")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", out, source], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    wheels = [f for f in os.listdir(out) if f.endswith(".whl")]
    assert len(wheels) == 1, wheels
    return os.path.join(out, wheels[0])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    return build_wheel(str(tmp_path_factory.mktemp("wheel")))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> str:
    """The wheel installed into an empty folder (no dependencies: the running environment has them)."""
    target = str(tmp_path_factory.mktemp("target"))
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, wheel],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return target


def run_installed(target: str, cwd, *args: str) -> subprocess.CompletedProcess:
    """The installed ``xlmr`` console script, from ``cwd``, with only the install folder on PYTHONPATH."""
    script = os.path.join(target, "bin", "xlmr")
    assert os.path.exists(script), f"no console script at {script}: [project.scripts] lost?"
    env = {**os.environ, "PYTHONPATH": target, "TF_CPP_MIN_LOG_LEVEL": "3", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([script, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


def test_the_wheel_holds_the_package_and_the_default_checkpoint_but_no_tests_or_tools(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for asset in ASSETS:
        assert f"xlmr/assets/default/{asset}" in names, f"xlmr/assets/default/{asset} is not in the wheel"
    assert {"xlmr/__init__.py", "xlmr/cli/main.py", "xlmr/pt/models.py", "xlmr/tf/models.py",
            "xlmr/flax/models.py", "xlmr/common/config.py"} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "tools/", "xlmr/tests/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "xlmr = xlmr.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_xlmr_is_the_wheels_not_the_checkouts(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": installed}
    result = subprocess.run([sys.executable, "-c", "import xlmr; print(xlmr.__file__)"], capture_output=True,
                            text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == os.path.join(installed, "xlmr", "__init__.py")


def test_installed_xlmr_parity_checks_the_embedded_checkpoint_from_any_folder(installed, tmp_path):
    result = run_installed(installed, tmp_path, "parity")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert os.path.join(installed, "xlmr", "assets", "default") in result.stdout  # the wheel's own copy
    assert "all outputs agree" in result.stdout
    assert "XLMRobertaForQuestionAnswering" in result.stdout and "FAIL" not in result.stdout


def test_installed_xlmr_convert_writes_the_default_checkpoint_as_flax_with_the_same_tensors(installed, tmp_path):
    source = os.path.join(installed, "xlmr", "assets", "default")
    dst = tmp_path / "converted"
    result = run_installed(installed, tmp_path, "convert", source, str(dst), "--to", "flax")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (dst / "flax_model.msgpack").exists() and (dst / "config.json").exists()
    assert not (dst / "model.safetensors").exists()

    from xlmr.common.checkpoint import read_checkpoint

    before, after = read_checkpoint(source), read_checkpoint(dst)
    assert set(after) == set(before) and len(before) > 20
    for name, array in before.items():
        assert array.shape == after[name].shape and (array == after[name]).all(), name

    # A second run refuses to overwrite what the first wrote: one line on stderr, exit 2.
    again = run_installed(installed, tmp_path, "convert", source, str(dst), "--to", "flax")
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr


def test_installed_xlmr_reads_the_default_by_name_and_a_hub_id_from_a_hand_built_cache(installed, tmp_path):
    """The name ``xlmr-default`` and a Hub id (offline, from a Hugging Face cache laid out by hand as
    huggingface_hub documents it) work from the installed wheel, outside the checkout."""
    import shutil

    source = os.path.join(installed, "xlmr", "assets", "default")
    repo = tmp_path / "hub" / "models--someone--tiny-xlmr"
    snapshot = repo / "snapshots" / ("d" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(os.path.join(source, name), snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("d" * 40)
    os.environ["HF_HUB_CACHE"] = str(tmp_path / "hub")  # read by run_installed's copy of the environment
    try:
        by_id = run_installed(installed, tmp_path, "convert", "someone/tiny-xlmr", str(tmp_path / "from-id"),
                              "--to", "pt")
        by_name = run_installed(installed, tmp_path, "convert", "xlmr-default", str(tmp_path / "from-name"),
                                "--to", "pt")
        missing = run_installed(installed, tmp_path, "convert", "someone/absent", str(tmp_path / "nope"), "--to", "pt")
    finally:
        del os.environ["HF_HUB_CACHE"]
    assert by_id.returncode == 0 and by_name.returncode == 0, by_id.stderr + by_name.stderr
    assert (tmp_path / "from-id" / "pytorch_model.bin").read_bytes() == \
        (tmp_path / "from-name" / "pytorch_model.bin").read_bytes()
    assert missing.returncode == 2 and "not in the Hugging Face cache" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
