"""Inference speed of xlmr.pt against HF transformers' PyTorch class, same weights, same inputs.

Run ``python -m pt_benchmark [--cls XLMRobertaModel] [--shape base] [--batch 8] [--length 128]
[--threads 2] [--reps 9] [--dtype float32]``. The three contenders (HF, ours with the oneDNN fast path, ours
on the plain path) run interleaved, one call each per round, so that load from other processes falls on all of
them alike; the report gives the median and the minimum wall time of each, the process CPU time per call, and
the max-abs differences of the outputs. Needs ``transformers`` (it is the reference) and a few GB of memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cls", default="XLMRobertaModel")
    parser.add_argument("--shape", default="base")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args(argv)

    os.environ.setdefault("USE_TF", "0")
    os.environ.setdefault("USE_FLAX", "0")
    import torch
    import transformers

    import xlmr.pt as xpt
    from xlmr.common.config import XLMRobertaConfig

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    config = XLMRobertaConfig.named(args.shape)
    data = config.to_dict()
    data.pop("model_type")
    torch.manual_seed(0)
    hf = getattr(transformers, args.cls)(transformers.XLMRobertaConfig(**data)).eval().to(dtype)
    with torch.device("meta"):
        ours = getattr(xpt, args.cls)(config, dtype=dtype)
    ours.load_canonical_state({k: v.float().numpy() for k, v in hf.state_dict().items() if k in dict(
        ours.named_parameters())})
    ours.eval()

    ids = torch.randint(3, config.vocab_size, (args.batch, args.length), generator=torch.Generator().manual_seed(0))
    if args.cls == "XLMRobertaForMultipleChoice":
        ids = ids[:, None]
    mask = torch.ones_like(ids)

    def call(model, fast=True):
        xpt.set_fast_path(fast)
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask)[0]

    reference, fast, plain = call(hf), call(ours), call(ours, fast=False)
    diffs = {"hf_vs_fast": (reference.float() - fast.float()).abs().max().item(),
             "hf_vs_plain": (reference.float() - plain.float()).abs().max().item(),
             "fast_vs_plain": (fast.float() - plain.float()).abs().max().item(),
             "max_abs_output": reference.float().abs().max().item()}
    contenders = {"hf": lambda: call(hf), "ours": lambda: call(ours), "ours_plain": lambda: call(ours, fast=False)}
    wall = {k: [] for k in contenders}
    cpu = {k: [] for k in contenders}
    for _ in range(args.reps):
        for name, run in contenders.items():
            c, t = _cpu_seconds(), time.perf_counter()
            run()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(_cpu_seconds() - c)
    xpt.set_fast_path(True)
    report = {"median_s": {k: statistics.median(v) for k, v in wall.items()},
              "min_s": {k: min(v) for k, v in wall.items()},
              "cpu_s_median": {k: statistics.median(v) for k, v in cpu.items()},
              "max_abs_diff": diffs}
    for key in ("median_s", "min_s", "cpu_s_median"):
        row = report[key]
        report[key]["ratio_ours_hf"] = row["ours"] / row["hf"]
        report[key]["ratio_plain_hf"] = row["ours_plain"] / row["hf"]
    print(f"{args.cls} {args.shape} {args.batch}x{args.length} {args.dtype}, {args.threads} threads, "
          f"{args.reps} interleaved rounds, load average {os.getloadavg()[0]:.1f}")
    for key, row in report.items():
        print(f"  {key:14s} " + "  ".join(f"{k} {v:.3g}" for k, v in row.items()))
    return report


if __name__ == "__main__":
    main()
