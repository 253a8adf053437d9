#!/usr/bin/env python
"""Throughput and latency of ``xlmr serve`` on this machine: requests/s, p50 and p99, at 1 and 16 clients.

    python tools/bench_serve.py                               # the embedded checkpoint, fill-mask, pt
    python tools/bench_serve.py --backend flax --requests 400 --clients 1,4,16 --json

Starts ``xlmr serve`` in a child process on a free port of 127.0.0.1, warms it up, then for each client count
runs that many httpx clients in a loop, each sending one sentence per request (the UDHR-like multilingual
sentences below, cycled), until ``--requests`` answers came back. Latency is per request, from send to answer.
The server's /metrics give the mean batch size the dynamic batcher reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, "xlmr", "assets", "default")
SENTENCES = [
    "All human beings are born free and equal in dignity and <mask>.",
    "Tous les êtres humains naissent libres et égaux en dignité et en <mask>.",
    "Alle Menschen sind frei und gleich an Würde und <mask> geboren.",
    "Todos los seres humanos nacen libres e iguales en dignidad y <mask>.",
    "Все люди рождаются свободными и равными в своем достоинстве и <mask>.",
    "Watu wote wamezaliwa huru, hadhi na <mask> zao ni sawa.",
    "Tutti gli esseri umani nascono liberi ed eguali in dignità e <mask>.",
    "Alle mennesker er født frie og med samme menneskeverd og menneskerettigheter. De er utstyrt med <mask>.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def load(base: str, clients: int, requests: int) -> dict:
    import httpx

    latencies: list[float] = []
    counter = iter(range(requests))

    async def client(k: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            for i in counter:
                text = SENTENCES[(i + k) % len(SENTENCES)]
                start = time.perf_counter()
                response = await http.post("/predict", json={"inputs": text})
                latencies.append(time.perf_counter() - start)
                response.raise_for_status()

    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    seconds = time.perf_counter() - start
    return {"clients": clients, "requests": len(latencies), "seconds": round(seconds, 2),
            "requests_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p99_ms": round(1000 * percentile(latencies, 0.99), 1)}


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=DEFAULT)
    parser.add_argument("--task", default="fill-mask")
    parser.add_argument("--backend", default="pt")
    parser.add_argument("--clients", default="1,16", help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=300, help="requests per client count")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    log = tempfile.TemporaryFile("w+")
    server = subprocess.Popen([sys.executable, "-m", "xlmr", "serve", args.checkpoint, "--task", args.task,
                               "--backend", args.backend, "--port", str(port), "--max-wait-ms", str(args.max_wait_ms)],
                              env=env, stdout=subprocess.DEVNULL, stderr=log)
    rows = []
    try:
        deadline = time.time() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit(f"xlmr serve exited with status {server.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            if time.time() > deadline:
                raise SystemExit("xlmr serve did not come up in 300 s")
            time.sleep(0.2)
        asyncio.run(load(base, 4, 40))  # warm-up: every length bucket compiled / packed
        for clients in (int(c) for c in args.clients.split(",")):
            before = httpx.get(f"{base}/metrics").text
            row = asyncio.run(load(base, clients, args.requests))
            after = httpx.get(f"{base}/metrics").text
            calls = metric(after, "xlmr_batches_total") - metric(before, "xlmr_batches_total")
            inputs = metric(after, "xlmr_inputs_total") - metric(before, "xlmr_inputs_total")
            row["mean_batch_size"] = round(inputs / calls, 2) if calls else None
            rows.append(row)
    except BaseException:
        log.seek(0)
        print("".join([line for line in log.readlines() if " 200 OK" not in line][-60:]), file=sys.stderr)
        raise
    finally:
        server.terminate()
        server.wait(60)
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "checkpoint": args.checkpoint,
              "task": args.task, "backend": args.backend, "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['machine']}, {report['date']}: {args.task} on {args.backend}, {args.checkpoint}")
        print(f"{'clients':>7} {'requests/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'mean batch':>10}")
        for r in rows:
            print(f"{r['clients']:>7} {r['requests_per_s']:>10} {r['p50_ms']:>8} {r['p99_ms']:>8} "
                  f"{r['mean_batch_size']!s:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
