"""``xlmr convert`` never loses data: SRC is never touched, DST is never replaced unless forced, --force replaces
only a checkpoint folder, concurrent runs cannot both win, killed runs leave nothing that a later run keeps, and a
cast that overflows is refused before anything is published. NaN/inf weights are named by convert, --verify,
parity and from_pretrained.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import xlmr.common.convert as convert_module
from xlmr.cli.parity import DEFAULT_CHECKPOINT
from xlmr.common.checkpoint import read_checkpoint, save_pretrained
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.convert import ConversionError, convert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
       "TF_CPP_MIN_LOG_LEVEL": "3"}
POSITIONS = "roberta.embeddings.position_embeddings.weight"


def _digest(folder) -> dict[str, str]:
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder))}


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xlmr.cli.main", "convert", *args], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=timeout)


@pytest.fixture
def src(tmp_path):
    """A copy of the embedded checkpoint (safetensors, tokenizer files) in its own folder, beside a user file."""
    folder = tmp_path / "models" / "src"
    shutil.copytree(DEFAULT_CHECKPOINT, folder)
    (tmp_path / "models" / "notes.txt").write_text("the user's")
    return str(folder)


def _write_state(folder: str, change) -> None:
    config = XLMRobertaConfig.from_pretrained(folder)
    state = {k: np.array(v) for k, v in read_checkpoint(folder).items()}
    change(state)
    os.remove(os.path.join(folder, "model.safetensors"))
    save_pretrained(folder, config, state, "XLMRobertaForMaskedLM", format="safetensors")


# ------------------------------------------------------------------------------------------------ SRC and DST
def test_destination_reaching_the_source_through_a_symlinked_parent_is_refused(src, tmp_path):
    before = _digest(src)
    os.symlink(os.path.dirname(src), tmp_path / "link")
    for force in (False, True):
        with pytest.raises(ConversionError, match="is the source folder"):
            convert(src, str(tmp_path / "link" / "src"), "pt", force=force)
    assert _digest(src) == before


def test_destination_that_contains_the_source_is_refused_even_with_force(src, tmp_path):
    before = _digest(src)
    parent = os.path.dirname(src)
    for dst in (parent, str(tmp_path), os.path.join(str(tmp_path / "link2"))):
        if dst.endswith("link2"):
            os.symlink(tmp_path, dst)  # an ancestor reached through a link
        with pytest.raises(ConversionError, match="contains the source folder"):
            convert(src, dst, "pt", force=True)
    assert _digest(src) == before and (tmp_path / "models" / "notes.txt").read_text() == "the user's"


def test_destination_inside_the_source_is_refused(src):
    before = _digest(src)
    for force in (False, True):
        with pytest.raises(ConversionError, match="is inside the source folder"):
            convert(src, os.path.join(src, "pt"), "pt", force=force)
    assert _digest(src) == before


def test_symlinked_source_converts_and_stays_untouched(src, tmp_path):
    os.symlink(src, tmp_path / "src_link")
    before = _digest(src)
    convert(str(tmp_path / "src_link"), str(tmp_path / "out"), "pt")
    assert _digest(src) == before and "pytorch_model.bin" in os.listdir(tmp_path / "out")
    with pytest.raises(ConversionError, match="is the source folder"):
        convert(str(tmp_path / "src_link"), src, "pt", force=True)


# ------------------------------------------------------------------------------------------------ publishing
@pytest.fixture(params=["renameat2", "lock file"])
def publish(request, monkeypatch):
    """Both ways of publishing: renameat2 flags, and the lock-file fallback of kernels and systems without them."""
    if request.param == "lock file":
        import xlmr.common.io as io_module

        monkeypatch.setattr(io_module, "_renameat2", lambda src, dst, flags: False)
    return request.param


@pytest.mark.parametrize("what", ["folder with a file", "empty folder", "file"])
def test_destination_appearing_mid_run_is_kept_and_reported(src, tmp_path, monkeypatch, what, publish):
    dst = tmp_path / "out"
    real = convert_module.save_pretrained

    def someone_else_writes(directory, *args, **kwargs):
        written = real(directory, *args, **kwargs)
        if what == "file":
            dst.write_text("theirs")
        else:
            dst.mkdir()
            if what == "folder with a file":
                (dst / "theirs.txt").write_text("theirs")
        return written

    monkeypatch.setattr(convert_module, "save_pretrained", someone_else_writes)
    with pytest.raises(ConversionError, match=f"destination {dst} appeared while it was being written"):
        convert(src, str(dst), "pt")
    if what == "file":
        assert dst.read_text() == "theirs"
    else:
        assert os.listdir(dst) == (["theirs.txt"] if what == "folder with a file" else [])
    assert sorted(os.listdir(tmp_path)) == ["models", "out"]  # no temporary folder left


_RACER = """
import os, sys, time
import xlmr.common.convert as c
real = c.save_pretrained
def slow(directory, *args, **kwargs):
    written = real(directory, *args, **kwargs)
    open(sys.argv[3] + "." + str(os.getpid()), "w").close()  # ready
    while not os.path.exists(sys.argv[3]):  # both runs are past their start checks
        time.sleep(0.02)
    return written
c.save_pretrained = slow
from xlmr.cli.main import main
sys.exit(main(["convert", sys.argv[1], sys.argv[2], "--to", "pt"]))
"""


@pytest.mark.slow
def test_two_conversions_to_one_new_destination_exactly_one_wins(src, tmp_path):
    dst, go = str(tmp_path / "out"), str(tmp_path / "go")
    runs = [subprocess.Popen([sys.executable, "-c", _RACER, src, dst, go], env=ENV, cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    deadline = time.monotonic() + 120
    while sum(name.startswith("go.") for name in os.listdir(tmp_path)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    open(go, "w").close()
    results = [(run.wait(timeout=120), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert f"destination {dst} appeared while it was being written" in loser and len(loser.strip().splitlines()) == 1
    np.testing.assert_array_equal(read_checkpoint(dst)[POSITIONS], read_checkpoint(src)[POSITIONS])
    assert sorted(n for n in os.listdir(tmp_path) if not n.startswith("go")) == ["models", "out"]


# ------------------------------------------------------------------------------------------------ --force
def test_force_refuses_a_destination_holding_other_files_and_names_them(src, tmp_path):
    dst = tmp_path / "out"
    convert(src, str(dst), "pt")
    (dst / "results.csv").write_text("a,b")
    (dst / "runs").mkdir()
    with pytest.raises(ConversionError, match="holds results.csv, runs, which --force would delete"):
        convert(src, str(dst), "flax", force=True)
    assert (dst / "results.csv").read_text() == "a,b" and "pytorch_model.bin" in os.listdir(dst)
    assert (dst / "runs").is_dir() and "flax_model.msgpack" not in os.listdir(dst)


@pytest.mark.parametrize("kind", ["file", "link"])
def test_force_never_replaces_a_file_or_a_link(src, tmp_path, kind):
    dst = tmp_path / "out"
    if kind == "file":
        dst.write_text("mine")
    else:
        (tmp_path / "target").mkdir()
        os.symlink(tmp_path / "target", dst)
    with pytest.raises(ConversionError, match="a symbolic link" if kind == "link" else "not a folder"):
        convert(src, str(dst), "pt", force=True)
    assert sorted(os.listdir(tmp_path)) == sorted(["models", "out"] + (["target"] if kind == "link" else []))


def test_force_replaces_a_checkpoint_folder_whole_and_leaves_nothing_beside_it(src, tmp_path, publish):
    dst = tmp_path / "out"
    convert(src, str(dst), "pt", max_shard_size="500KB")
    assert len([n for n in os.listdir(dst) if n.startswith("pytorch_model-")]) > 1
    summary = convert(src, str(dst), "safetensors", force=True)
    assert sorted(os.listdir(dst)) == sorted(["config.json", "model.safetensors", "sentencepiece.bpe.model",
                                              "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"])
    assert sorted(os.listdir(tmp_path)) == ["models", "out"]  # no .old, no .partial
    assert summary["written"][-1] == os.path.join(str(dst), "model.safetensors")


# ------------------------------------------------------------------------------------------------ leftovers
def test_stale_partials_of_dead_runs_for_this_destination_are_removed(src, tmp_path):
    dst = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.xlmr-partial-{dead.pid}-0123abcd"
    live = tmp_path / f".out.xlmr-partial-{os.getppid()}-0123abcd"  # a running process: maybe converting now
    other = tmp_path / f".other.xlmr-partial-{dead.pid}-0123abcd"  # another destination's
    foreign = tmp_path / ".out.partial"  # not a name of ours
    for folder in (stale, live, other, foreign):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    convert(src, str(dst), "pt")
    assert not stale.exists() and live.exists() and other.exists() and foreign.exists()


_KILLED = """
import os, sys, time
import xlmr.common.convert as c
real = c.save_pretrained
def hang(directory, *args, **kwargs):
    written = real(directory, *args, **kwargs)
    open(sys.argv[3], "w").close()
    time.sleep(600)
c.save_pretrained = hang
from xlmr.cli.main import main
sys.exit(main(["convert", sys.argv[1], sys.argv[2], "--to", "pt"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_leaves_nothing_after_the_next_run(src, tmp_path, how):
    dst, ready = str(tmp_path / "out" / "pt"), str(tmp_path / "ready")
    run = subprocess.Popen([sys.executable, "-c", _KILLED, src, dst, ready], env=ENV, cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(run.pid, how)
    _, err = run.communicate(timeout=60)
    os.remove(ready)
    if how == signal.SIGTERM:  # unwinds like Ctrl-C: cleans up itself (the parent it made too), says so
        assert run.returncode == 130 and "interrupted" in err, err
        assert sorted(os.listdir(tmp_path)) == ["models"]
    else:
        leftovers = os.listdir(tmp_path / "out")
        assert len(leftovers) == 1 and leftovers[0].startswith(".pt.xlmr-partial-")
    result = _cli(src, dst, "--to", "pt")
    assert result.returncode == 0, result.stderr
    assert os.listdir(tmp_path / "out") == ["pt"]


def test_failed_run_removes_the_parent_folders_it_created(src, tmp_path, monkeypatch):
    def crash(directory, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(convert_module, "save_pretrained", crash)
    with pytest.raises(OSError, match="disk full"):
        convert(src, str(tmp_path / "new" / "deeper" / "out"), "pt")
    assert sorted(os.listdir(tmp_path)) == ["models"]


def test_save_pretrained_in_place_removes_its_own_stale_temporary_files(src, tmp_path):
    folder = tmp_path / "ckpt"
    convert(src, str(folder), "safetensors")
    before = sorted(os.listdir(folder))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = folder / f".model.safetensors.xlmr-tmp-{dead.pid}-00ff"  # what a killed save leaves
    stale.write_bytes(b"half")
    _write_state(str(folder), lambda state: None)
    assert sorted(os.listdir(folder)) == before


def test_cli_names_the_weights_it_did_not_read(src, tmp_path):
    shutil.copyfile(os.path.join(src, "model.safetensors"), os.path.join(src, "pytorch_model.bin"))  # never read
    result = _cli(src, str(tmp_path / "out"), "--to", "flax")
    assert result.returncode == 0, result.stderr
    assert f"not read (a format read first is present): {os.path.join(src, 'pytorch_model.bin')}" in result.stdout


def test_error_messages_name_the_destination_not_the_temporary_folder(src, tmp_path, monkeypatch):
    def disk_full(directory, *args, **kwargs):
        raise OSError(28, "No space left on device", os.path.join(directory, "pytorch_model.bin"))

    monkeypatch.setattr(convert_module, "save_pretrained", disk_full)
    dst = str(tmp_path / "out")
    with pytest.raises(ConversionError) as info:
        convert(src, dst, "pt")
    assert os.path.join(dst, "pytorch_model.bin") in str(info.value) and "xlmr-partial" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["models"]


# ------------------------------------------------------------------------------------------------ casts, NaN
def test_float16_cast_that_overflows_is_refused_before_publishing(src, tmp_path):
    # a position row no verify batch reaches: only a check of every value finds it
    _write_state(src, lambda state: state[POSITIONS].__setitem__((100, 3), 1e5))
    dst = tmp_path / "out"
    result = _cli(src, str(dst), "--to", "safetensors", "--dtype", "float16", "--verify")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert f"tensor {POSITIONS} holds 100000 at index (100, 3), beyond float16's largest value 65504" in line
    assert not dst.exists() and sorted(os.listdir(tmp_path)) == ["models"]
    convert(src, str(dst), "safetensors", dtype="bfloat16")  # bfloat16 holds it
    assert np.isfinite(read_checkpoint(str(dst))[POSITIONS].astype(np.float32)).all()


def test_nonfinite_source_weights_are_named_by_convert_verify_parity_and_from_pretrained(src, tmp_path):
    _write_state(src, lambda state: state["roberta.encoder.layer.1.output.dense.bias"].__setitem__(5, np.nan))
    name = "roberta.encoder.layer.1.output.dense.bias"
    summary = convert(src, str(tmp_path / "copy"), "pt")
    assert summary["nonfinite"] == {name: {"count": 1, "first_index": [5]}}

    result = _cli(src, str(tmp_path / "verified"), "--to", "pt", "--verify")
    assert result.returncode == 1
    assert f"warning: {src}/model.safetensors: tensor {name} holds 1 NaN/inf value(s)" in result.stderr
    assert f"--verify failed: {src}: tensor {name} holds 1 NaN/inf value(s) (first at index (5,))" in result.stderr
    assert "differ by nan" not in result.stderr

    result = subprocess.run([sys.executable, "-m", "xlmr.cli.main", "parity", src, "--backends", "pt,flax"],
                            capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert result.returncode == 2 and f"tensor {name} holds 1 NaN/inf value(s)" in result.stderr, result.stderr

    from xlmr.common.loading import load_pretrained

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_pretrained(src, "XLMRobertaForMaskedLM")
    assert any(f"{name}: 1 value(s), first at index (5,)" in str(w.message) for w in caught)


def test_compare_names_the_nonfinite_output_instead_of_a_nan_difference():
    from xlmr.cli.parity import compare

    a = {"logits": np.array([[1.0, np.nan]])}
    b = {"logits": np.array([[1.0, 2.0]])}
    diff, where = compare(a, b, ("pt", "tf"))
    assert diff == float("inf") and where == "logits holds non-finite values (NaN/inf: 1 in pt, first at index (0, 1))"
    assert compare(b, {"logits": np.array([[1.5, 2.0]])}) == (0.5, "logits")


def test_hostile_source_is_exit_2_in_one_line(src, tmp_path):
    os.remove(os.path.join(src, "model.safetensors"))
    with open(os.path.join(src, "model.safetensors"), "wb") as f:
        header = b'{"roberta.embeddings.LayerNorm.bias":{"dtype":"F32","shape":[0,4611686018427387904],' \
                 b'"data_offsets":[0,0]}}'
        f.write(len(header).to_bytes(8, "little") + header)
    result = _cli(src, str(tmp_path / "out"), "--to", "pt")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "model.safetensors" in result.stderr
