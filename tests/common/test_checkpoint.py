"""xlmr.common.checkpoint against Hugging Face transformers 4.57.6: every format HF writes reads back to HF's own
PyTorch state dict, and every file we write loads into HF's class of the matching framework."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from xlmr.common.checkpoint import base as checkpoint_base, msgpack as checkpoint_msgpack, safetensors as checkpoint_safetensors
from xlmr.common.checkpoint import (
    INDEX_NAMES, WEIGHTS_NAMES, CheckpointError, CheckpointNotFoundError, UnknownTensorError, find_checkpoint,
    iter_checkpoint, keras_scope, parse_size, read_checkpoint, save_pretrained)
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.weights import UnknownWeightError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from reference import TINY  # noqa: E402
# case -> (HF class, config overrides)
CASES = {
    "masked_lm": ("XLMRobertaForMaskedLM", {}),
    "base": ("XLMRobertaModel", {}),
    "seq_cls": ("XLMRobertaForSequenceClassification", {"num_labels": 3}),
    "qa": ("XLMRobertaForQuestionAnswering", {}),
    "relative": ("XLMRobertaForMaskedLM", {"position_embedding_type": "relative_key_query"}),
    "untied": ("XLMRobertaForMaskedLM", {"tie_word_embeddings": False}),
    "decoder": ("XLMRobertaForCausalLM", {"is_decoder": True, "add_cross_attention": True}),
}
# HF's TF classes have no distance embeddings and always tie the decoder: they cannot hold these two.
TF_CASES = ["masked_lm", "base", "seq_cls", "qa", "decoder"]
INPUT_IDS = np.array([[0, 5, 17, 42, 98, 2, 1, 1], [0, 7, 7, 3, 2, 1, 1, 1]])


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def open_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def fold(state: dict, tied: bool = True) -> dict:
    """HF's aliases away: lm_head.decoder.bias is lm_head.bias; a tied decoder is the word embeddings."""
    state = {k: v for k, v in state.items() if k != "lm_head.decoder.bias"}
    if tied:
        state.pop("lm_head.decoder.weight", None)
    return state


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].shape == want[name].shape, name
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def hf_logits(model, framework: str) -> np.ndarray:
    mask = (INPUT_IDS != 1).astype(np.int64)
    if framework == "pt":
        with torch.no_grad():
            return model(torch.tensor(INPUT_IDS), attention_mask=torch.tensor(mask))[0].numpy()
    return np.asarray(model(INPUT_IDS, attention_mask=mask)[0])


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """Per case: HF PyTorch model (weights perturbed so no bias is zero), its state dict and saved folders."""
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for seed, (case, (arch, extra)) in enumerate(CASES.items()):
        torch.manual_seed(seed)
        model = getattr(transformers, arch)(transformers.XLMRobertaConfig(**TINY, **extra)).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        folders = {"safetensors": root / case / "safetensors", "pt": root / case / "pt"}
        model.save_pretrained(folders["safetensors"])
        model.save_pretrained(folders["pt"], safe_serialization=False)
        if case in ("masked_lm", "base"):
            folders["safetensors_sharded"] = root / case / "safetensors_sharded"
            folders["pt_sharded"] = root / case / "pt_sharded"
            model.save_pretrained(folders["safetensors_sharded"], max_shard_size="20KB")
            model.save_pretrained(folders["pt_sharded"], safe_serialization=False, max_shard_size="20KB")
        state = {k: v.numpy() for k, v in model.state_dict().items()}
        config = XLMRobertaConfig.from_dict(model.config.to_dict())
        out[case] = dict(arch=arch, model=model, state=state, config=config, folders=folders,
                         tied=extra.get("tie_word_embeddings", True), logits=hf_logits(model, "pt"))
    return out


@pytest.fixture(scope="module")
def hf_tf(hf, tmp_path_factory):
    """HF's TF models converted from the PyTorch ones, and the tf_model.h5 (single, sharded) they save."""
    pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("hf_tf")
    out = {}
    for case in TF_CASES:
        arch = hf[case]["arch"]
        model = getattr(transformers, "TF" + arch).from_pretrained(hf[case]["folders"]["safetensors"], from_pt=True)
        model.save_pretrained(root / case / "tf")
        if case in ("masked_lm", "base"):
            model.save_pretrained(root / case / "tf_sharded", max_shard_size="20KB")
        if case == "masked_lm":
            model.save_pretrained(root / case / "tf_safetensors", safe_serialization=True)
        out[case] = dict(model=model, root=root / case,
                         weights={w.name.split("/", 1)[1]: w.numpy() for w in model.weights})
    return out


@pytest.fixture(scope="module")
def hf_flax(hf, tmp_path_factory):
    """HF's Flax models converted from the PyTorch ones, and the flax_model.msgpack (single, sharded) they save."""
    pytest.importorskip("flax.traverse_util")  # not "flax": tests/flax would pass for it
    from flax.traverse_util import flatten_dict

    root = tmp_path_factory.mktemp("hf_flax")
    out = {}
    for case in CASES:
        arch = hf[case]["arch"]
        model = getattr(transformers, "Flax" + arch).from_pretrained(hf[case]["folders"]["pt"], from_pt=True)
        model.save_pretrained(root / case / "flax")
        if case in ("masked_lm", "base"):
            model.save_pretrained(root / case / "flax_sharded", max_shard_size="20KB")
        if case == "masked_lm":
            model.save_pretrained(root / case / "flax_safetensors", safe_serialization=True)
        out[case] = dict(model=model, root=root / case,
                         params={k: np.asarray(v) for k, v in flatten_dict(model.params, sep="/").items()})
    return out


# ------------------------------------------------------------------------------------------------ reading HF
READ_COMBOS = (
    [(c, f) for c in CASES for f in ("safetensors", "pt")]
    + [(c, f) for c in ("masked_lm", "base") for f in ("safetensors_sharded", "pt_sharded")]
    + [(c, "tf") for c in TF_CASES] + [("masked_lm", "tf_sharded"), ("base", "tf_sharded"),
                                       ("masked_lm", "tf_safetensors")]
    + [(c, "flax") for c in CASES] + [("masked_lm", "flax_sharded"), ("base", "flax_sharded"),
                                      ("masked_lm", "flax_safetensors")]
)


@pytest.mark.parametrize("case,layout", READ_COMBOS, ids=[f"{c}-{f}" for c, f in READ_COMBOS])
def test_reads_every_format_hf_writes_as_hf_pytorch_names_and_values(hf, case, layout, request):
    source = hf[case]
    if layout.startswith("tf"):
        folder = request.getfixturevalue("hf_tf")[case]["root"] / layout
    elif layout.startswith("flax"):
        folder = request.getfixturevalue("hf_flax")[case]["root"] / layout
    else:
        folder = source["folders"][layout]
    got = read_checkpoint(folder)
    want = fold(source["state"], source["tied"])
    if layout.startswith("flax") and case == "relative":
        # HF's Flax class has no relative-position distance embeddings: converting drops them.
        want = {k: v for k, v in want.items() if "distance_embedding" not in k}
    if case == "base":
        assert not any(k.startswith("roberta.") for k in got)
    assert_same(fold(got, source["tied"]), want)


def test_pt_bin_keeps_hf_tied_aliases_as_written(hf):
    got = read_checkpoint(hf["masked_lm"]["folders"]["pt"])
    state = hf["masked_lm"]["state"]
    np.testing.assert_array_equal(got["lm_head.decoder.weight"], state["roberta.embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(got["lm_head.decoder.bias"], state["lm_head.bias"])


def test_find_checkpoint_names_format_and_shards(hf):
    fmt, files = find_checkpoint(hf["masked_lm"]["folders"]["safetensors_sharded"])
    assert fmt == "safetensors" and len(files) > 1
    assert [os.path.basename(f) for f in files] == sorted(
        set(read_json(hf["masked_lm"]["folders"]["safetensors_sharded"] / INDEX_NAMES["safetensors"])
            ["weight_map"].values()))
    single = hf["masked_lm"]["folders"]["pt"] / WEIGHTS_NAMES["pt"]
    assert find_checkpoint(single) == ("pt", [str(single)])


def test_keras_scope_is_the_one_hf_tf_writes(hf_tf):
    assert keras_scope("XLMRobertaForMaskedLM") == "tfxlm_roberta_for_masked_lm"
    for case in TF_CASES:
        model = hf_tf[case]["model"]
        assert model.weights[0].name.split("/")[0].startswith(keras_scope(type(model).__name__[2:]))


# ------------------------------------------------------------------------------------------------ writing for HF
WRITE_COMBOS = (
    [(c, f, s) for c in CASES for f in ("safetensors", "pt") for s in (False, True) if s is False or c == "masked_lm"]
    + [(c, "tf", s) for c in TF_CASES for s in (False, True) if s is False or c in ("masked_lm", "base")]
    + [(c, "flax", s) for c in CASES for s in (False, True) if s is False or c in ("masked_lm", "base")]
)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("case,fmt,sharded", WRITE_COMBOS,
                         ids=[f"{c}-{f}{'-sharded' if s else ''}" for c, f, s in WRITE_COMBOS])
def test_hf_loads_what_we_write_with_no_missing_weights(hf, case, fmt, sharded, tmp_path, request):
    source = hf[case]
    arch, state = source["arch"], fold(source["state"], source["tied"])
    written = save_pretrained(tmp_path, source["config"], state, arch, format=fmt,
                              max_shard_size="20KB" if sharded else None)
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(os.path.basename(p) for p in written)
    assert (INDEX_NAMES[fmt] in names) == sharded and (WEIGHTS_NAMES[fmt] in names) != sharded
    assert read_json(tmp_path / "config.json")["architectures"] == [arch]
    if fmt in ("safetensors", "pt"):
        model, info = getattr(transformers, arch).from_pretrained(tmp_path, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
        assert_same(fold({k: v.numpy() for k, v in model.state_dict().items()}, source["tied"]), state)
        np.testing.assert_array_equal(hf_logits(model.eval(), "pt"), source["logits"])
    elif fmt == "tf":
        reference = request.getfixturevalue("hf_tf")[case]
        model, info = getattr(transformers, "TF" + arch).from_pretrained(tmp_path, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
        assert_same({w.name.split("/", 1)[1]: w.numpy() for w in model.weights}, reference["weights"])
        np.testing.assert_allclose(hf_logits(model, "tf"), source["logits"], atol=1e-5, rtol=0)
    else:
        flatten_dict = pytest.importorskip("flax.traverse_util").flatten_dict  # HF's Flax classes need flax

        reference = request.getfixturevalue("hf_flax")[case]
        records = _Records()
        logger = logging.getLogger("transformers.modeling_flax_utils")
        level = logger.level
        logger.addHandler(records)
        logger.setLevel(logging.WARNING)  # another test module may have silenced transformers
        try:
            model = getattr(transformers, "Flax" + arch).from_pretrained(tmp_path)
        finally:
            logger.removeHandler(records)
            logger.setLevel(level)
        complaints = [m for m in records.messages if "Some weights" in m]
        if case == "relative":  # ours keeps the distance embeddings; HF's Flax class has none and says so
            assert len(complaints) == 1 and "distance_embedding" in complaints[0]
        else:
            assert complaints == []
        assert_same({k: np.asarray(v) for k, v in flatten_dict(model.params, sep="/").items()}, reference["params"])
        if case != "relative":
            np.testing.assert_allclose(hf_logits(model, "flax"), source["logits"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", ["masked_lm", "base", "seq_cls"])
def test_h5_we_write_has_hf_keras_layout(hf, hf_tf, case, tmp_path):
    import h5py

    source = hf[case]
    save_pretrained(tmp_path, source["config"], fold(source["state"]), source["arch"], format="tf")

    def layout(path):
        with h5py.File(path, "r") as f:
            groups = {}
            for layer in f.attrs["layer_names"]:
                layer = layer.decode() if isinstance(layer, bytes) else layer
                names = [n.decode() if isinstance(n, bytes) else n for n in f[layer].attrs["weight_names"]]
                groups[layer] = {n.split("/", 1)[1]: f[layer][n][()] for n in names}  # scope aside
            return list(groups), groups, sorted(f)

    ours, hers = layout(tmp_path / "tf_model.h5"), layout(hf_tf[case]["root"] / "tf" / "tf_model.h5")
    assert ours[0] == hers[0] and ours[2] == hers[2]
    for layer in hers[1]:
        assert_same(ours[1][layer], hers[1][layer])
    with h5py.File(tmp_path / "tf_model.h5", "r") as f:  # every weight name carries the scope HF's class has
        assert {n.decode().split("/")[0] for g in ours[0] for n in f[g].attrs["weight_names"]} == \
            {keras_scope(source["arch"])}


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "tf", "flax"])
@pytest.mark.parametrize("case", ["masked_lm", "base", "relative", "untied"])
def test_what_we_write_reads_back_identically(hf, case, fmt, tmp_path):
    source = hf[case]
    state = fold(source["state"], source["tied"])
    save_pretrained(tmp_path, source["config"], state, source["arch"], format=fmt, max_shard_size="30KB")
    assert_same(fold(read_checkpoint(tmp_path), source["tied"]), state)


def _resident_kib(array):
    """Resident KiB of the pages behind ``array``, from /proc/self/smaps of the mapping that holds them."""
    address = array.__array_interface__["data"][0]
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                low, high = (int(x, 16) for x in head.split("-"))
                inside = low <= address < high
            elif inside and head == "Rss:":
                return int(line.split()[1])
    raise AssertionError("no mapping holds the array")


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc")
@pytest.mark.parametrize("fmt", ["safetensors", "pt", "flax"])
def test_release_pages_drops_a_read_tensors_pages_and_keeps_its_values(hf, fmt, tmp_path):
    from xlmr.common.checkpoint.base import release_pages

    from xlmr.common.init import initial_weights
    from xlmr.common.weights import parameter_shapes

    source = hf["masked_lm"]
    config = source["config"].replace(vocab_size=4096)  # a 4096 x 32 float32 table: 128 pages
    big = initial_weights(parameter_shapes(config, source["arch"]), config, seed=0)
    save_pretrained(tmp_path, config, big, source["arch"], format=fmt)
    mapped = read_checkpoint(tmp_path)["roberta.embeddings.word_embeddings.weight"]
    expected = big["roberta.embeddings.word_embeddings.weight"]
    np.testing.assert_array_equal(mapped, expected)  # reading makes the pages resident
    before = _resident_kib(mapped)
    assert release_pages(mapped)
    assert _resident_kib(mapped) <= before - mapped.nbytes // 1024 + 8  # all but the pages shared with neighbours
    np.testing.assert_array_equal(mapped, expected)  # and a later read brings the same numbers back
    assert not release_pages(expected)  # an array of our own memory is left alone
    assert not release_pages(np.ones(3))


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "flax"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtype_cast_matches_torch_rounding(hf, fmt, dtype, tmp_path):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")  # without it (a torch-only install) bfloat16 is read back as float32
    source = hf["masked_lm"]
    save_pretrained(tmp_path, source["config"], fold(source["state"]), source["arch"], format=fmt, dtype=dtype)
    got = read_checkpoint(tmp_path)
    for name, tensor in fold(source["model"].state_dict()).items():
        want = tensor.to(getattr(torch, dtype)).float().numpy()
        assert got[name].dtype.name == dtype, name
        np.testing.assert_array_equal(got[name].astype(np.float32), want, err_msg=name)
    if fmt == "pt":  # and torch itself reads the same numbers
        loaded = torch.load(tmp_path / WEIGHTS_NAMES["pt"], weights_only=True)
        assert loaded["lm_head.dense.weight"].dtype == getattr(torch, dtype)


def test_float16_h5_reads_back_as_float16(hf, tmp_path):
    save_pretrained(tmp_path, hf["seq_cls"]["config"], hf["seq_cls"]["state"], hf["seq_cls"]["arch"], format="tf",
                    dtype="float16")
    got = read_checkpoint(tmp_path)
    for name, value in hf["seq_cls"]["state"].items():
        np.testing.assert_array_equal(got[name], value.astype(np.float16), err_msg=name)


# ------------------------------------------------------------------------------------------------ pytorch_model.bin
def test_pt_bin_we_write_loads_with_torch_weights_only_and_shares_tied_storage(hf, tmp_path):
    source = hf["masked_lm"]
    save_pretrained(tmp_path, source["config"], fold(source["state"]), source["arch"], format="pt")
    for mmap in (False, True):
        loaded = torch.load(tmp_path / WEIGHTS_NAMES["pt"], weights_only=True, mmap=mmap)
        assert sorted(loaded) == sorted(source["state"])
        for name, value in source["state"].items():
            np.testing.assert_array_equal(loaded[name].numpy(), value, err_msg=name)
        assert loaded["lm_head.decoder.weight"].data_ptr() == \
            loaded["roberta.embeddings.word_embeddings.weight"].data_ptr()
        assert loaded["lm_head.decoder.bias"].data_ptr() == loaded["lm_head.bias"].data_ptr()
    with zipfile.ZipFile(tmp_path / WEIGHTS_NAMES["pt"]) as archive:  # torch's 64-byte alignment of storages
        for info in archive.infolist():
            if "/data/" in info.filename:
                raw = (tmp_path / WEIGHTS_NAMES["pt"]).read_bytes()
                name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
                assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reads_torch_views_offsets_shared_storage_and_dtypes(legacy, tmp_path):
    pytest.importorskip("ml_dtypes")  # the bfloat16 tensor stays bfloat16 only with it
    g = torch.Generator().manual_seed(0)
    table = torch.randn(32, 40, generator=g)
    block = torch.randn(6, 32, generator=g)
    src = {
        "embeddings.word_embeddings.weight": table.t(),                      # transposed view
        "embeddings.position_embeddings.weight": table.t()[3:7].half(),      # float16
        "pooler.dense.weight": block[1:5].bfloat16(),                        # bfloat16 with a storage offset
        "pooler.dense.bias": block[2],                                       # offset into a shared storage
        "embeddings.LayerNorm.weight": block[:, 3][:5].clone().repeat(7)[:32],
        "embeddings.LayerNorm.bias": block[5],                               # same storage as pooler.dense.bias
        "embeddings.position_ids": torch.arange(10)[None],                   # int64 buffer
    }
    path = tmp_path / "pytorch_model.bin"
    torch.save(src, path, _use_new_zipfile_serialization=not legacy)
    got = read_checkpoint(path)
    assert sorted(got) == sorted(src)
    for name, tensor in src.items():
        want = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert tuple(got[name].shape) == tuple(tensor.shape), name
        np.testing.assert_array_equal(np.asarray(got[name]).astype(want.dtype), want, err_msg=name)
    assert got["pooler.dense.weight"].dtype.name == "bfloat16"
    assert got["embeddings.position_embeddings.weight"].dtype == np.float16
    assert got["embeddings.position_ids"].dtype == np.int64


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_malicious_pickle_is_refused_without_running(legacy, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "pytorch_model.bin"
    payload = {"embeddings.word_embeddings.weight": _Exploit(marker)}
    if legacy:
        with open(path, "wb") as f:
            for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
                pickle.dump(header, f, protocol=2)
            pickle.dump(payload, f, protocol=2)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps(payload, protocol=2))
            archive.writestr("archive/version", "3\n")
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value) and "system" in str(e.value) and "refused" in str(e.value)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ other formats
def test_msgpack_we_write_is_byte_identical_to_flax(hf_flax, tmp_path, monkeypatch):
    from flax import serialization
    from flax.traverse_util import unflatten_dict

    params = hf_flax["masked_lm"]["params"]
    path = str(tmp_path / "a.msgpack")
    checkpoint_msgpack.write(path, [(tuple(k.split("/")), v) for k, v in params.items()], None)
    tree = unflatten_dict({tuple(k.split("/")): v for k, v in params.items()})
    assert open_bytes(path) == serialization.msgpack_serialize(tree)
    # Leaves above flax's chunk limit are split the way flax splits them (a small limit stands in for 1 GiB).
    monkeypatch.setattr(checkpoint_msgpack, "MAX_CHUNK_SIZE", 1000)
    monkeypatch.setattr(serialization, "MAX_CHUNK_SIZE", 1000)
    checkpoint_msgpack.write(path, [(tuple(k.split("/")), v) for k, v in params.items()], None)
    assert open_bytes(path) == serialization.msgpack_serialize(tree)
    assert_same(dict(checkpoint_msgpack.read(path)), params)


def test_bfloat16_without_ml_dtypes_widens_exactly_and_rounds_like_torch(hf, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    source = hf["masked_lm"]
    bf16 = {k: v.bfloat16().contiguous() for k, v in fold(source["model"].state_dict()).items()}
    save_file(bf16, tmp_path / "model.safetensors", metadata={"format": "pt"})
    monkeypatch.setattr(checkpoint_base, "BFLOAT16", None)
    got = read_checkpoint(tmp_path)
    for name, tensor in bf16.items():
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], tensor.float().numpy(), err_msg=name)
    out = tmp_path / "out"
    save_pretrained(out, source["config"], fold(source["state"]), source["arch"], dtype="bfloat16")
    for name, tensor in load_file(out / "model.safetensors").items():
        assert tensor.dtype == torch.bfloat16
        assert torch.equal(tensor, source["model"].state_dict()[name].bfloat16()), name


def test_iter_checkpoint_streams_shard_by_shard(hf, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(hf["masked_lm"]["folders"]["safetensors_sharded"], folder)
    weight_map = read_json(folder / INDEX_NAMES["safetensors"])["weight_map"]
    last = sorted(set(weight_map.values()))[-1]
    stream = iter_checkpoint(folder)
    first_name, _ = next(stream)
    assert weight_map[first_name] != last
    (folder / last).write_bytes(b"\x08")  # the last shard breaks after reading has begun
    seen = [first_name]
    with pytest.raises(CheckpointError, match=last):
        for name, _ in stream:
            seen.append(name)
    assert sorted(seen) == sorted(k for k, v in weight_map.items() if v != last)


def test_folder_with_several_formats_is_read_in_hf_precedence(hf, tmp_path):
    source = hf["masked_lm"]
    state = fold(source["state"])
    for fmt in ("flax", "tf", "pt", "safetensors"):  # each lower in precedence than the next, so all four stay
        save_pretrained(tmp_path, source["config"], state, source["arch"], format=fmt)
    for fmt in ("safetensors", "pt", "tf", "flax"):
        assert find_checkpoint(tmp_path)[0] == fmt
        assert_same(fold(read_checkpoint(tmp_path, format=fmt)), state)
        os.remove(tmp_path / WEIGHTS_NAMES[fmt])


def test_saving_removes_stale_shards_and_refuses_weights_that_would_shadow_the_new_ones(hf, tmp_path):
    source = hf["masked_lm"]
    state = fold(source["state"])
    save_pretrained(tmp_path, source["config"], state, source["arch"], max_shard_size="20KB")
    save_pretrained(tmp_path, source["config"], state, source["arch"], format="safetensors")  # stale shards go
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    before = (tmp_path / "model.safetensors").read_bytes()
    # the user's safetensors would be read instead of new pt weights: refused, naming it, nothing written
    with pytest.raises(CheckpointError, match="model.safetensors there would be read instead of pytorch_model.bin"):
        save_pretrained(tmp_path, source["config"], state, source["arch"], format="pt")
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    assert (tmp_path / "model.safetensors").read_bytes() == before
    other = tmp_path / "other"  # weights a reader takes after the new ones are kept
    save_pretrained(other, source["config"], state, source["arch"], format="flax")
    save_pretrained(other, source["config"], state, source["arch"], format="safetensors")
    assert sorted(os.listdir(other)) == ["config.json", "flax_model.msgpack", "model.safetensors"]
    assert find_checkpoint(other)[0] == "safetensors"


def test_crash_while_writing_leaves_the_previous_file_intact(hf, tmp_path, monkeypatch):
    source = hf["masked_lm"]
    save_pretrained(tmp_path, source["config"], fold(source["state"]), source["arch"])
    before = (tmp_path / "model.safetensors").read_bytes()
    calls = []

    def failing_encode(array, dtype):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return checkpoint_base.encode(array, dtype)

    monkeypatch.setattr(checkpoint_safetensors, "encode", failing_encode)
    doubled = {k: v * 2 for k, v in fold(source["state"]).items()}
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(tmp_path, source["config"], doubled, source["arch"])
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]


def test_reading_and_writing_import_no_framework(hf, hf_flax, tmp_path):
    code = (
        "import sys\n"
        "from xlmr.common.checkpoint import read_checkpoint, save_pretrained\n"
        "from xlmr.common.config import XLMRobertaConfig\n"
        f"pt = read_checkpoint({str(hf['masked_lm']['folders']['pt'])!r})\n"
        f"fx = read_checkpoint({str(hf_flax['masked_lm']['root'] / 'flax')!r})\n"
        f"cfg = XLMRobertaConfig.from_pretrained({str(hf['masked_lm']['folders']['pt'])!r})\n"
        "for fmt in ('pt', 'flax', 'tf', 'safetensors'):\n"
        f"    save_pretrained({str(tmp_path)!r} + '/' + fmt, cfg, fx, 'XLMRobertaForMaskedLM', format=fmt)\n"
        "print(len(pt), sorted(m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split(None, 1) == [str(len(hf["masked_lm"]["state"])), "[]\n"]


# ------------------------------------------------------------------------------------------------ errors
def test_missing_path_and_empty_folder_name_what_was_looked_for(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does-not-exist"):
        read_checkpoint(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError):  # also an OSError for callers that catch those
        find_checkpoint(tmp_path / "does-not-exist")
    with pytest.raises(CheckpointError) as e:
        find_checkpoint(tmp_path)
    assert str(tmp_path) in str(e.value)
    for name in list(WEIGHTS_NAMES.values()) + list(INDEX_NAMES.values()):
        assert name in str(e.value)


def test_unknown_format_names_the_file(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="weights.npz.*unknown checkpoint format"):
        read_checkpoint(path)


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep(len(data))])


@pytest.mark.parametrize("fmt,keep", [
    ("safetensors", lambda n: 20), ("safetensors", lambda n: n - 100), ("pt", lambda n: n // 2),
    ("pt", lambda n: n - 30), ("tf", lambda n: n // 2), ("tf", lambda n: 1000), ("flax", lambda n: n - 10),
    ("flax", lambda n: 3), ("pt", lambda n: 0),
], ids=["safetensors-header", "safetensors-data", "zip-half", "zip-end", "h5-half", "h5-head", "msgpack-end",
        "msgpack-head", "empty"])
def test_truncated_file_raises_checkpoint_error_naming_it(hf, fmt, keep, tmp_path):
    source = hf["masked_lm"]
    save_pretrained(tmp_path, source["config"], fold(source["state"]), source["arch"], format=fmt)
    path = tmp_path / WEIGHTS_NAMES[fmt]
    _truncate(path, keep)
    with pytest.raises(CheckpointError, match=str(path)):
        read_checkpoint(tmp_path)


def test_legacy_torch_file_truncated_raises(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"pooler.dense.bias": torch.ones(32)}, path, _use_new_zipfile_serialization=False)
    _truncate(path, lambda n: n - 50)
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(path)


def test_git_lfs_pointer_is_named_as_such(tmp_path):
    (tmp_path / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\n")
    with pytest.raises(CheckpointError, match="Git LFS pointer"):
        read_checkpoint(tmp_path)


def _sharded_copy(hf, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(hf["masked_lm"]["folders"]["safetensors_sharded"], folder)
    index = read_json(folder / INDEX_NAMES["safetensors"])
    return folder, index


def test_shard_listed_in_index_but_missing(hf, tmp_path):
    folder, index = _sharded_copy(hf, tmp_path)
    shard = sorted(set(index["weight_map"].values()))[1]
    os.remove(folder / shard)
    with pytest.raises(CheckpointNotFoundError, match=shard):
        read_checkpoint(folder)


def test_shard_lacking_a_tensor_its_index_lists(hf, tmp_path):
    folder, index = _sharded_copy(hf, tmp_path)
    index["weight_map"]["lm_head.bias"] = sorted(set(index["weight_map"].values()))[0]
    (folder / INDEX_NAMES["safetensors"]).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="lm_head.bias"):
        read_checkpoint(folder)


def test_corrupt_index_names_the_index(hf, tmp_path):
    folder, _ = _sharded_copy(hf, tmp_path)
    (folder / INDEX_NAMES["safetensors"]).write_text("{not json")
    with pytest.raises(CheckpointError, match=INDEX_NAMES["safetensors"]):
        read_checkpoint(folder)


def test_duplicate_tensor_across_shards(hf, tmp_path):
    from safetensors.numpy import save_file

    folder, index = _sharded_copy(hf, tmp_path)
    shards = sorted(set(index["weight_map"].values()))
    extra = {"lm_head.bias": hf["masked_lm"]["state"]["lm_head.bias"]}
    first = {k: np.array(v) for k, v in read_checkpoint(folder / shards[0]).items()}
    save_file({**first, **extra}, folder / shards[0], metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"lm_head\.bias.*in both"):
        read_checkpoint(folder)


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "flax"])
def test_tensor_that_is_no_xlmr_weight_names_file_and_tensor(fmt, tmp_path):
    path = tmp_path / WEIGHTS_NAMES[fmt]
    value = np.ones((2, 3), np.float32)
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file({"encoder.layer.0.attention.self.query.weight": value, "decoder.proj.weight": value}, path)
    elif fmt == "pt":
        torch.save({"decoder.proj.weight": torch.ones(2, 3)}, path)
    else:
        checkpoint_msgpack.write(str(path), [(("decoder", "proj", "kernel"), value)], None)
    with pytest.raises(UnknownTensorError) as e:
        read_checkpoint(tmp_path)
    assert isinstance(e.value, UnknownWeightError) and isinstance(e.value, CheckpointError)
    assert str(path) in str(e.value) and "decoder" in str(e.value)


def test_saving_refuses_incomplete_misshapen_or_foreign_state(hf, tmp_path):
    source = hf["masked_lm"]
    state = fold(source["state"])
    missing = {k: v for k, v in state.items() if k != "roberta.encoder.layer.1.output.dense.weight"}
    with pytest.raises(CheckpointError, match="missing weight roberta.encoder.layer.1.output.dense.weight"):
        save_pretrained(tmp_path, source["config"], missing, source["arch"])
    wrong = {**state, "lm_head.dense.bias": np.zeros(31, np.float32)}
    with pytest.raises(CheckpointError, match=r"lm_head.dense.bias has shape \(31,\)"):
        save_pretrained(tmp_path, source["config"], wrong, source["arch"])
    with pytest.raises(CheckpointError, match="foo.weight"):
        save_pretrained(tmp_path, source["config"], {**state, "foo.weight": np.zeros(3)}, source["arch"])
    with pytest.raises(CheckpointError, match="bfloat16"):
        save_pretrained(tmp_path, source["config"], state, source["arch"], format="tf", dtype="bfloat16")
    assert os.listdir(tmp_path) == []
    with pytest.warns(UserWarning, match="lm_head.dense.weight"):  # a missing head only warns: HF initialises it
        save_pretrained(tmp_path, source["config"], {k: v for k, v in state.items() if k != "lm_head.dense.weight"},
                        source["arch"])


def test_parse_size_follows_hf_units():
    assert parse_size("20KB") == 20_000 and parse_size("5GB") == 5 * 10 ** 9 and parse_size("2GiB") == 2 ** 31
    assert parse_size(1234) == 1234
    with pytest.raises(ValueError, match="max_shard_size"):
        parse_size("lots")
