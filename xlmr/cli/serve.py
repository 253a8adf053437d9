"""``xlmr serve``: serve a checkpoint's pipeline over HTTP, batching concurrent requests.

    xlmr serve CKPT --task fill-mask --backend pt [--host 127.0.0.1] [--port 8000] [--max-batch-tokens 8192]

    curl -s localhost:8000/predict -d '{"inputs": "Paris is the <mask> of France."}'
    curl -s localhost:8000/health
    curl -s localhost:8000/metrics          # Prometheus text: requests, batch sizes, queue depth, latency

Endpoints, limits and status codes: ``xlmr.serving.app``. Batching: ``xlmr.serving.batcher``. On SIGINT or
SIGTERM the server stops accepting connections, answers every request already received, then exits.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging

from xlmr.serving.batcher import Limits

HELP = "serve a checkpoint's pipeline over HTTP (POST /predict, GET /health, GET /metrics), batching requests"
# Seconds uvicorn waits for in-flight requests after SIGTERM before closing their connections.
GRACEFUL_SECONDS = 30


def build_app(checkpoint: str, task: str, backend: str | None = None, limits: Limits | None = None) -> object:
    """The app for ``xlmr.pipeline(task, model=checkpoint, backend=backend)``."""
    import xlmr
    from xlmr.serving.app import create_app

    pipe = xlmr.pipeline(task, model=checkpoint, backend=backend)
    return create_app(pipe, limits=limits, task=task)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Limits()
    parser.add_argument("checkpoint", help="checkpoint folder with its tokenizer")
    parser.add_argument("--task", required=True, help="pipeline task: fill-mask, text-classification, "
                                                      "token-classification, question-answering, ...")
    parser.add_argument("--backend", default=None, help="pt, tf or flax (default: the first installed)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--max-batch-tokens", type=int, default=defaults.max_batch_tokens,
                        help="padded tokens per model call")
    parser.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms,
                        help="how long an input waits for others to batch with")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue, help="inputs waiting, at most")
    parser.add_argument("--max-inputs", type=int, default=defaults.max_inputs, help="inputs per request, at most")
    parser.add_argument("--max-text-chars", type=int, default=defaults.max_text_chars, help="characters per text")
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes, help="request body size")


def run(args: argparse.Namespace) -> int:
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"xlmr serve needs {' and '.join(missing)}, not installed; install with: "
                          f"pip install 'xlmr[serve]'")
    import uvicorn

    for name in ("max_batch_tokens", "max_queue", "max_inputs", "max_text_chars", "max_body_bytes"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.max_wait_ms < 0:
        raise ValueError(f"--max-wait-ms must be 0 or more, got {args.max_wait_ms}")
    limits = Limits(max_body_bytes=args.max_body_bytes, max_inputs=args.max_inputs,
                    max_text_chars=args.max_text_chars, max_queue=args.max_queue,
                    max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms)
    app = build_app(args.checkpoint, args.task, args.backend, limits)
    logging.getLogger("xlmr").info("serving %s (%s) on http://%s:%d", args.checkpoint, args.task, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=GRACEFUL_SECONDS, log_level="info")
    return 0
