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


# ------------------------------------------------------------------------------------------------ names and Hub ids
def _hub_cache(root):
    """A Hugging Face cache laid out by hand, as huggingface_hub documents it, holding the default checkpoint."""
    import shutil

    from xlmr.common.hub import DEFAULT_FOLDER

    repo = root / "models--someone--tiny-xlmr"
    snapshot = repo / "snapshots" / ("c" * 40)
    snapshot.mkdir(parents=True)
    for name in os.listdir(DEFAULT_FOLDER):
        shutil.copyfile(os.path.join(DEFAULT_FOLDER, name), snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c" * 40)
    return root


@pytest.mark.parametrize("backend", installed_backends())
def test_every_backend_loads_the_default_by_name_and_a_hub_id_offline(backend, tmp_path, monkeypatch):
    import numpy as np

    from xlmr import XLMRobertaTokenizer, XLMRobertaTokenizerFast
    from xlmr.backends import call_model, model_class, to_numpy

    monkeypatch.chdir(tmp_path)  # not the repository: the name must work from anywhere
    cache = _hub_cache(tmp_path / "hub")
    cls = model_class(backend, "XLMRobertaForMaskedLM")
    by_name = cls.from_pretrained("xlmr-default")
    by_id = cls.from_pretrained("someone/tiny-xlmr", cache_dir=str(cache), local_files_only=True)
    fast = XLMRobertaTokenizerFast.from_pretrained("someone/tiny-xlmr", cache_dir=str(cache), local_files_only=True)
    slow = XLMRobertaTokenizer.from_pretrained("xlmr-default")
    batch = fast(["Hello <mask>!"], return_tensors="np")
    assert batch["input_ids"].tolist() == slow(["Hello <mask>!"], return_tensors="np")["input_ids"].tolist()
    a = to_numpy(backend, call_model(backend, by_name, dict(batch)).logits)
    b = to_numpy(backend, call_model(backend, by_id, dict(batch)).logits)
    assert np.array_equal(a, b)
    with pytest.raises(OSError, match="not in the Hugging Face cache"):
        cls.from_pretrained("someone/missing", cache_dir=str(cache), local_files_only=True)


@pytest.mark.parametrize("backend", installed_backends())
def test_new_head_warning_points_at_the_users_line(backend):
    import warnings

    from xlmr.backends import model_class

    cls = model_class(backend, "XLMRobertaForSequenceClassification")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cls.from_pretrained("xlmr-default", num_labels=3)
    ours = [w for w in caught if "newly initialised" in str(w.message)]
    assert len(ours) == 1 and ours[0].filename == __file__, (ours[0].filename, ours[0].lineno)


def test_parity_reads_the_weights_format_asked_for(tmp_path, capsys):
    import json
    import shutil

    from xlmr.cli.main import main
    from xlmr.common.hub import DEFAULT_FOLDER

    folder = tmp_path / "two-formats"
    shutil.copytree(DEFAULT_FOLDER, folder)
    assert main(["convert", DEFAULT_FOLDER, str(tmp_path / "flax"), "--to", "flax"]) == 0
    shutil.copyfile(tmp_path / "flax" / "flax_model.msgpack", folder / "flax_model.msgpack")
    capsys.readouterr()
    backends = ",".join(installed_backends()[:2])
    assert main(["parity", str(folder), "--format", "flax", "--json", "--backends", backends,
                 "--classes", "XLMRobertaModel"]) == 0
    entry = json.loads(capsys.readouterr().out)["checkpoints"][0]
    assert entry["format"] == "flax" and entry["weights"] == [str(folder / "flax_model.msgpack")]
    assert main(["parity", str(folder), "--json", "--backends", backends, "--classes", "XLMRobertaModel"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoints"][0]["format"] == "safetensors"


def test_an_hf_tf_h5_without_distance_embeddings_says_why(tmp_path):
    import h5py

    from xlmr.common.checkpoint import save_pretrained
    from xlmr.common.config import XLMRobertaConfig
    from xlmr.common.init import initial_weights
    from xlmr.common.loading import load_pretrained
    from xlmr.common.weights import WeightsError, parameter_shapes

    cfg = XLMRobertaConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=20, max_position_embeddings=40,
                           position_embedding_type="relative_key_query")
    state = initial_weights(parameter_shapes(cfg, "XLMRobertaModel"), cfg, 0)
    save_pretrained(str(tmp_path), cfg, state, "XLMRobertaModel", format="tf")
    with h5py.File(tmp_path / "tf_model.h5", "r+") as f:  # what HF's TF class writes: no distance_embedding
        doomed = []
        f.visit(lambda name: doomed.append(name) if "distance_embedding" in name and
                isinstance(f[name], h5py.Dataset) else None)
        assert doomed
        for name in doomed:
            del f[name]
        for group in f.values():  # and the layer's list of weight names, as if the weights never existed
            if "weight_names" in group.attrs:
                names = [n for n in group.attrs["weight_names"] if b"distance_embedding" not in bytes(n)]
                group.attrs["weight_names"] = names
    with pytest.raises(WeightsError, match=r"tf_model.h5 \(XLMRobertaModel\): no distance_embedding weights, though "
                                           r"config.json says position_embedding_type='relative_key_query': HF's "
                                           r"TF classes ignore relative positions and never save these weights"):
        load_pretrained(str(tmp_path), "XLMRobertaModel")


def test_convert_copies_generation_config_and_accepts_the_default_name(tmp_path):
    from xlmr.cli.main import main
    from xlmr.common.hub import DEFAULT_FOLDER
    import shutil

    src = tmp_path / "src"
    shutil.copytree(DEFAULT_FOLDER, src)
    (src / "generation_config.json").write_text('{"max_new_tokens": 7}')
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "pt"]) == 0
    assert (tmp_path / "out" / "generation_config.json").read_text() == '{"max_new_tokens": 7}'
    assert main(["convert", "xlmr-default", str(tmp_path / "out2"), "--to", "flax"]) == 0
    assert (tmp_path / "out2" / "flax_model.msgpack").is_file()


def test_bfloat16_into_h5_names_the_flag(tmp_path, capsys):
    from xlmr.cli.main import main

    assert main(["convert", "xlmr-default", str(tmp_path / "h5"), "--to", "tf", "--dtype", "bfloat16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("tf_model.h5 cannot hold bfloat16 (HDF5 has no such type); pass --dtype float32 or "
                        "--dtype float16, or choose --to safetensors") and "dtype='" not in err
    assert not (tmp_path / "h5").exists()


def test_tools_with_a_python_lacking_dependencies_name_the_interpreter_and_the_install(tmp_path):
    # A Python whose numpy cannot be imported stands for "not the project's venv".
    (tmp_path / "numpy.py").write_text("raise ImportError('No module named numpy')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "parity.py")], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"this Python ({sys.executable}) lacks xlmr's dependencies" in result.stderr
    assert "pip install" in result.stderr


def test_converting_safetensors_needs_neither_h5py_nor_msgpack(tmp_path):
    code = ("import sys; sys.modules['h5py'] = None; sys.modules['msgpack'] = None\n"
            "from xlmr.cli.main import main\n"
            f"code = main(['convert', 'xlmr-default', {str(tmp_path / 'out')!r}, '--to', 'safetensors'])\n"
            "assert 'h5py' not in [m for m, v in sys.modules.items() if v is not None]\n"
            "print(code)")
    result = _python(code)
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == "0", result.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file()
