"""Hand-crafted hostile checkpoint files: every reader refuses them in one line, in seconds, without allocating
what the file does not hold, and without changing anything a later load in the same process relies on.

The files are built from raw pickle opcodes, zip records, safetensors headers, msgpack bytes and HDF5 through
h5py: no torch is needed to make them.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from xlmr.common.checkpoint import CheckpointError, WEIGHTS_NAMES, read_checkpoint
from xlmr.common.checkpoint import pytorch as checkpoint_pytorch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAME = "roberta.embeddings.LayerNorm.bias"  # any canonical name the readers accept


# ------------------------------------------------------------------------------------------------ crafting
def _str(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(i: int) -> bytes:
    if 0 <= i < 2 ** 31:
        return b"J" + struct.pack("<i", i)
    data = i.to_bytes((i.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _pid(key: str, numel: int, storage: str = "FloatStorage") -> bytes:
    return _tuple(_str("storage"), _global("torch", storage), _str(key), _str("cpu"), _int(numel)) + b"Q"


def _tensor(pid: bytes, shape: tuple, stride: tuple, offset: int = 0) -> bytes:
    return (_global("torch._utils", "_rebuild_tensor_v2")
            + _tuple(pid, _int(offset), _tuple(*map(_int, shape)), _tuple(*map(_int, stride)), b"\x89",
                     _global("collections", "OrderedDict") + b")R") + b"R")


def _state_dict(*entries: tuple[str, bytes], prefix: bytes = b"") -> bytes:
    body = b"".join(_str(name) + value for name, value in entries)
    return b"\x80\x02" + prefix + b"}" + (b"(" + body + b"u" if entries else b"") + b"."


def _torch_zip(path, pickled: bytes, storages: dict[str, bytes], compress_pickle: bool = False) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("archive/data.pkl"), pickled,
                         zipfile.ZIP_DEFLATED if compress_pickle else zipfile.ZIP_STORED)
        archive.writestr("archive/byteorder", b"little")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
    return str(path)


def _good_bin(path, values: np.ndarray) -> str:
    pickled = _state_dict((NAME, _tensor(_pid("0", values.size), values.shape, (1,))))
    return _torch_zip(path, pickled, {"0": values.astype("<f4").tobytes()})


def _isolated(code: str, limit_bytes: int | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter, with an address-space limit when given, and a timeout."""
    prelude = "import resource\n"
    if limit_bytes:
        prelude += f"resource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes}))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def _refused_within_limits(path: str, needle: str, limit_bytes: int = 1536 * 2 ** 20) -> None:
    """read_checkpoint(path) in a subprocess under a memory limit and a timeout: one CheckpointError naming it."""
    result = _isolated(f"""
        from xlmr.common.checkpoint import read_checkpoint, CheckpointError
        try:
            read_checkpoint({path!r})
        except CheckpointError as e:
            print("REFUSED", e)
        else:
            print("READ")
        """, limit_bytes)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout.strip()
    assert out.startswith("REFUSED") and len(out.splitlines()) == 1, out
    assert path in out and needle in out, out


# ------------------------------------------------------------------------------------------------ pickles
def test_build_making_a_storage_its_own_root_is_refused_without_hanging(tmp_path):
    # the storage is memoised, then BUILD {"root": itself}: an endless root chain for a naive reader
    pid = _tuple(_str("storage"), _global("torch", "FloatStorage"), _str("0"), _str("cpu"), _int(4)) + b"Q"
    cyclic = pid + b"q\x01" + b"}" + _str("root") + b"h\x01" + b"s" + b"b"
    pickled = _state_dict((NAME, _tensor(cyclic, (4,), (1,))))
    path = _torch_zip(tmp_path / WEIGHTS_NAMES["pt"], pickled, {"0": bytes(16)})
    _refused_within_limits(path, "BUILD on Storage")


def test_a_crafted_bin_cannot_change_what_later_loads_read(tmp_path):
    good = _good_bin(tmp_path / "good.bin", np.arange(4, dtype=np.float32) + 0.5)
    # BUILD on the whitelisted globals: the storage class (to read later float32 files as float16), the tensor
    # builder and OrderedDict. Each is refused, and the objects it targeted belong to that load only.
    attacks = {
        "storage_class": _global("torch", "FloatStorage") + b"}" + _str("dtype") + _str("float16") + b"sb0",
        "builder": _global("torch._utils", "_rebuild_tensor_v2") + b"}" + _str("function") + _str("x") + b"sb0",
        "ordered_dict": _global("collections", "OrderedDict") + b"}" + _str("x") + _str("y") + b"sb0",
    }
    for label, prefix in attacks.items():
        bad = _torch_zip(tmp_path / f"{label}.bin", _state_dict(prefix=prefix), {})
        with pytest.raises(CheckpointError, match=f"{bad}: corrupt or truncated pickle .*BUILD"):
            read_checkpoint(bad)
        back = read_checkpoint(good)[NAME]
        assert back.dtype == np.float32 and back.tolist() == [0.5, 1.5, 2.5, 3.5], label
    # and nothing module-level was touched
    assert checkpoint_pytorch._GLOBALS["torch", "FloatStorage"] == "float32"


def test_stride_zero_view_asking_for_gigabytes_is_refused_under_a_memory_limit(tmp_path):
    # 4 bytes of storage, a (2**17, 2**17) view of stride 0: 64 GiB if materialised
    pickled = _state_dict((NAME, _tensor(_pid("0", 1), (2 ** 17, 2 ** 17), (0, 0))))
    path = _torch_zip(tmp_path / WEIGHTS_NAMES["pt"], pickled, {"0": bytes(4)})
    assert os.path.getsize(path) < 1024
    _refused_within_limits(path, "asks for 17179869184 elements from a storage of 1")


def test_overlapping_strided_views_cannot_multiply_memory(tmp_path):
    # one 1 MiB storage viewed transposed many times: each copy is paid for, the total is bounded by the file
    n = 512
    view = _tensor(_pid("0", n * n), (n, n), (1, n))
    entries = [(f"roberta.encoder.layer.{i}.output.dense.weight", view) for i in range(8)]
    path = _torch_zip(tmp_path / WEIGHTS_NAMES["pt"], _state_dict(*entries), {"0": bytes(4 * n * n)})
    with pytest.raises(CheckpointError, match="copying out strided views would take more memory"):
        read_checkpoint(path)


def test_storage_larger_than_its_record_is_refused(tmp_path):
    pickled = _state_dict((NAME, _tensor(_pid("0", 2 ** 40), (4,), (1,))))
    path = _torch_zip(tmp_path / WEIGHTS_NAMES["pt"], pickled, {"0": bytes(16)})
    with pytest.raises(CheckpointError, match=r"storage record archive/data/0 holds 16 bytes, its tensors need"):
        read_checkpoint(path)


def test_compressed_pickle_inflating_to_a_bomb_is_refused_under_a_memory_limit(tmp_path):
    big = checkpoint_pytorch.MAX_PICKLE_BYTES + 2 ** 20
    path = str(tmp_path / WEIGHTS_NAMES["pt"])
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open(zipfile.ZipInfo("archive/data.pkl"), "w") as f:  # deflated by default below
            pass
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data.pkl", "w", force_zip64=True) as f:
            chunk = bytes(2 ** 20)
            for _ in range(big // len(chunk)):
                f.write(chunk)
    assert os.path.getsize(path) < big // 100
    _refused_within_limits(path, "more than the", limit_bytes=1024 * 2 ** 20)
    # the same bomb with the header's size rewritten small: the read is bounded anyway
    data = bytearray(open(path, "rb").read())
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", 1000)
    lying = tmp_path / "lying.bin"
    lying.write_bytes(bytes(data))
    _refused_within_limits(str(lying), "lying.bin", limit_bytes=1024 * 2 ** 20)


def test_sized_pickle_opcode_past_the_end_is_refused_before_allocating(tmp_path):
    # legacy format: BINBYTES8 declaring a terabyte, followed by 3 bytes
    path = tmp_path / WEIGHTS_NAMES["pt"]
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 40) + b"abc.")
    _refused_within_limits(str(path), "corrupt or truncated pickle", limit_bytes=1024 * 2 ** 20)


def test_deeply_nested_pickle_is_refused(tmp_path):
    pickled = b"\x80\x02" + b"(" * 10_000 + b"."
    path = _torch_zip(tmp_path / WEIGHTS_NAMES["pt"], pickled, {})
    with pytest.raises(CheckpointError, match="nests deeper than 64 levels"):
        read_checkpoint(path)


def test_a_large_genuine_pickle_is_not_mistaken_for_deep_nesting(tmp_path):
    # torch pickles an OrderedDict with BUILD {"_metadata": {...}}; 70,000 entries take 70 MARK ... SETITEMS
    # batches, each closing its mark
    import pickle

    metadata = pickle.dumps({"_metadata": {f"layer.{i}": {"version": 1} for i in range(70_000)}}, protocol=2)
    values = np.arange(4, dtype=np.float32)
    pickled = (b"\x80\x02" + _global("collections", "OrderedDict") + b")R"
               + b"(" + _str(NAME) + _tensor(_pid("0", 4), (4,), (1,)) + b"u" + metadata[2:-1] + b"b.")
    path = _torch_zip(tmp_path / WEIGHTS_NAMES["pt"], pickled, {"0": values.tobytes()})
    assert read_checkpoint(path)[NAME].tolist() == values.tolist()


def test_pickle_that_is_not_a_state_dict_never_runs_code(tmp_path):
    pickled = b"\x80\x02" + _global("os", "system") + _tuple(_str("touch pwned")) + b"R."
    path = _torch_zip(tmp_path / WEIGHTS_NAMES["pt"], pickled, {})
    with pytest.raises(CheckpointError, match="refused to unpickle global os.system"):
        read_checkpoint(path)
    assert not os.path.exists(os.path.join(ROOT, "pwned"))


# ------------------------------------------------------------------------------------------------ safetensors
def _safetensors(path, header: dict, data: bytes) -> str:
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    return str(path)


def test_safetensors_shape_whose_size_overflows_is_one_line(tmp_path):
    path = _safetensors(tmp_path / "model.safetensors", {NAME: {"dtype": "F32", "shape": [0, 2 ** 62],
                                                                "data_offsets": [0, 0]}}, b"")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    text = str(info.value)
    assert path in text and NAME in text and "over the limit" in text and "\n" not in text


def test_safetensors_tensors_sharing_bytes_are_refused(tmp_path):
    header = {"roberta.encoder.layer.0.attention.self.query.bias": {"dtype": "F32", "shape": [4],
                                                                    "data_offsets": [0, 16]},
              "roberta.encoder.layer.0.attention.self.key.bias": {"dtype": "F32", "shape": [4],
                                                                  "data_offsets": [0, 16]}}
    path = _safetensors(tmp_path / "model.safetensors", header, bytes(16))
    with pytest.raises(CheckpointError, match="overlaps the tensor before it"):
        read_checkpoint(path)
    header["roberta.encoder.layer.0.attention.self.key.bias"]["data_offsets"] = [20, 36]  # a gap instead
    path = _safetensors(tmp_path / "model.safetensors", header, bytes(36))
    with pytest.raises(CheckpointError, match="leaves a gap before it"):
        read_checkpoint(path)


def test_safetensors_header_length_bomb_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 2 ** 63) + b"{}")
    with pytest.raises(CheckpointError, match="header length .* exceeds"):
        read_checkpoint(str(path))
    deep = b"[" * 100_000 + b"]" * 100_000
    path.write_bytes(struct.pack("<Q", len(deep)) + deep)
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        read_checkpoint(str(path))


def test_safetensors_bytes_after_the_last_tensor_are_refused(tmp_path):
    path = _safetensors(tmp_path / "model.safetensors", {NAME: {"dtype": "F32", "shape": [2],
                                                                "data_offsets": [0, 8]}}, bytes(12))
    with pytest.raises(CheckpointError, match="4 bytes after the last tensor"):
        read_checkpoint(path)


# ------------------------------------------------------------------------------------------------ msgpack
def test_msgpack_nesting_and_count_bombs_are_refused(tmp_path):
    path = tmp_path / "flax_model.msgpack"
    path.write_bytes(b"\x81\xa1a" * 100_000 + b"\xc0")  # maps nested 100,000 deep
    with pytest.raises(CheckpointError, match="nested deeper than 64"):
        read_checkpoint(str(path))
    path.write_bytes(b"\x81\xa1a\xdd\xff\xff\xff\xff")  # a list declaring 4 billion items in 0 bytes
    with pytest.raises(CheckpointError, match="truncated msgpack"):
        read_checkpoint(str(path))
    path.write_bytes(b"\x81\xa1a\xdf\xff\xff\xff\xff")  # a map declaring 4 billion entries
    with pytest.raises(CheckpointError, match="truncated msgpack"):
        read_checkpoint(str(path))


def test_msgpack_array_shape_whose_size_overflows_is_refused(tmp_path):
    import msgpack

    payload = msgpack.packb([[0, 2 ** 62], "float32", b""])
    leaf = msgpack.packb(msgpack.ExtType(1, payload))
    path = tmp_path / "flax_model.msgpack"
    path.write_bytes(b"\x81\xa1a" + leaf)
    with pytest.raises(CheckpointError, match=f"{path}: .* over the limit"):
        read_checkpoint(str(path))


# ------------------------------------------------------------------------------------------------ h5
def _keras_h5(path, make) -> str:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.asarray([b"roberta"])
        group = f.create_group("roberta")
        name = "tfxlm_roberta_for_masked_lm/roberta/embeddings/LayerNorm/beta:0"
        make(f, group, name)
        group.attrs["weight_names"] = np.asarray([name.encode()])
    return str(path)


def test_h5_dataset_declared_without_data_is_refused_under_a_memory_limit(tmp_path):
    # a 4 TiB dataset that HDF5 would "read" as its fill value
    path = _keras_h5(tmp_path / "tf_model.h5", lambda f, g, n: g.create_dataset(n, shape=(2 ** 20, 2 ** 20),
                                                                                dtype="f4"))
    assert os.path.getsize(path) < 100_000
    _refused_within_limits(path, "a declared size with no data")


def test_h5_compressed_external_and_linked_datasets_are_refused(tmp_path):
    path = _keras_h5(tmp_path / "a.h5", lambda f, g, n: g.create_dataset(n, data=np.zeros(1000, "f4"),
                                                                         compression="gzip"))
    with pytest.raises(CheckpointError, match="compressed or filtered"):
        read_checkpoint(path)
    (tmp_path / "secret").write_bytes(bytes(4096))
    path = _keras_h5(tmp_path / "b.h5", lambda f, g, n: g.create_dataset(
        n, shape=(16,), dtype="f4", external=[(str(tmp_path / "secret"), 0, 64)]))
    with pytest.raises(CheckpointError, match="stored outside the file"):
        read_checkpoint(path)

    def external_link(f, g, n):
        import h5py
        g[n] = h5py.ExternalLink(str(tmp_path / "b.h5"), "/roberta/" + n)
    path = _keras_h5(tmp_path / "c.h5", external_link)
    with pytest.raises(CheckpointError, match="listed but absent"):
        read_checkpoint(path)


# ------------------------------------------------------------------------------------------------ folders
def test_folder_with_two_formats_logs_which_file_is_read(tmp_path, caplog):
    from xlmr.common.checkpoint import find_checkpoint

    _good_bin(tmp_path / WEIGHTS_NAMES["pt"], np.ones(4, np.float32))
    _safetensors(tmp_path / "model.safetensors", {NAME: {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                 np.zeros(4, "<f4").tobytes())
    with caplog.at_level(logging.INFO, logger="xlmr"):
        fmt, files = find_checkpoint(tmp_path)
        values = read_checkpoint(tmp_path)[NAME]
    assert fmt == "safetensors" and values.tolist() == [0, 0, 0, 0]  # safetensors comes first, as documented
    said = [r.getMessage() for r in caplog.records]
    assert any("reading the safetensors weights (model.safetensors); also present and not read: "
               "pytorch_model.bin" in m for m in said), said
