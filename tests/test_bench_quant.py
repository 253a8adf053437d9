"""tools/bench_quant.py's arithmetic: the mixed-length batches hold bench.py's sequences, accuracy counts only
unmasked positions, and the table's ratios are the anchors' time over the path's (no benchmark runs here)."""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))

import bench  # noqa: E402
import bench_quant  # noqa: E402
from xlmr.common.config import XLMRobertaConfig  # noqa: E402


def test_mixed_batches_hold_the_bench_sequences_sorted_and_padded():
    config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=37)
    seqs = bench.mixed_sequences(config, 64)
    inputs = bench_quant.batches("mixed", config, int32=True)
    assert len(inputs) == 8 and all(ids.dtype == np.int32 and len(ids) == 8 for ids, _ in inputs)
    assert bench_quant.real_tokens(inputs) == sum(len(s) for s in seqs)
    widths = [ids.shape[1] for ids, _ in inputs]
    assert widths == sorted(widths) and widths[-1] == max(len(s) for s in seqs)
    for ids, mask in inputs:
        assert (ids[mask == 0] == config.pad_token_id).all()


def test_agreement_counts_only_kept_positions():
    want = np.zeros((1, 3, 4))
    want[..., 0] = 1.0
    got = want.copy()
    got[0, 2, 1] = 2.0  # a flip at a padded position: not counted
    got[0, 0, 0] = 0.9
    result = bench_quant.merge_accuracy([bench_quant.agreement(want, got, np.array([[1, 1, 0]]))])
    assert result == {"max_abs": 2.0, "agree": 2, "counted": 2, "top1": 1.0}


def test_table_ratios_are_anchor_time_over_path_time():
    rows = [{"size": "8x128", "path": p, "tokens": 1024, "flop": 2e11, "seconds": s}
            for p, s in (("pt float32", 2.0), (bench_quant.HF, 4.0), (bench_quant.OPT_INT8, 1.0), ("ort int8", 0.5))]
    rows.append({"size": "8x128", "path": "tf int8", "tokens": 1024, "flop": 2e11, "error": "no module"})
    report = {"rows": rows, "peak": 200.0,
              "accuracy": {"ort int8": {"max_abs": 0.05, "top1": 0.99, "counted": 347}}}
    lines = {line.split(" | ")[0].strip("| "): line for line in bench_quant.table(report).splitlines()[2:]}
    assert "| 512 | 2.00x | 0.50x | 50% |" in lines["pt float32"]  # 2e11 flop / 2 s = 100 of 200 GFLOP/s
    assert "| 2,048 | 8.00x | 2.00x |  | 5.00e-02 | 99.0% of 347 |" in lines["ort int8"]
    assert "n/a: no module" in lines["tf int8"]
