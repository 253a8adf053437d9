"""The HTTP app: ``POST /predict``, ``GET /health``, ``GET /metrics`` on Starlette, batched by ``Batcher``.

Starlette (with uvicorn as the server) is a small, well-kept ASGI toolkit: routing, requests, responses and a
lifespan are all this server needs; FastAPI's validation layer on top would add a dependency for one endpoint.

``POST /predict`` takes ``{"inputs": X, "parameters": {...}}`` (HF's inference-API shape): X is one input or a
list of them, as the pipeline takes them (a text; ``{"question", "context"}``; ``{"prompt", "choices"}``), and
``parameters`` are the pipeline's call arguments (``top_k``, ...). The answer is the pipeline's output for X as
JSON. Errors are ``{"error": message}``: 400 for a body that is not JSON, 413 for a body, input count or text
over a limit (the message names the limit and its flag), 422 for an input or parameter the pipeline refuses,
503 with ``Retry-After`` when the queue is full or the server is shutting down.

Example:
    >>> from starlette.testclient import TestClient
    >>> from xlmr.serving.app import create_app
    >>> app = create_app(lambda texts: [{"length": len(t)} for t in texts])
    >>> with TestClient(app) as client:
    ...     client.post("/predict", json={"inputs": ["abc", "de"]}).json()
    [{'length': 3}, {'length': 2}]
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from typing import Any, Callable

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from xlmr.serving.batcher import SECONDS_BUCKETS, Batcher, InputError, Limits, QueueFull
from xlmr.serving.metrics import Metrics

RETRY_AFTER_SECONDS = 1


class _TooLarge(Exception):
    pass


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, default=_jsonable, separators=(",", ":")).encode("utf-8")


def _error(status: int, message: str, **headers: str) -> Response:
    return _JSON({"error": message}, status_code=status, headers=headers or None)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(f"request body of {int(declared)} bytes is over the limit of {limit} bytes (--max-body-bytes)")
    body = bytearray()
    async for chunk in request.stream():  # a body sent without Content-Length is cut off at the limit too
        body += chunk
        if len(body) > limit:
            raise _TooLarge(f"request body is over the limit of {limit} bytes (--max-body-bytes)")
    return bytes(body)


def _texts(value: Any) -> list[tuple[str, str]]:
    """(where, text) for every string inside one input (a dict's fields, a list of choices)."""
    if isinstance(value, str):
        return [("", value)]
    if isinstance(value, dict):
        return [(f".{k}{where}", text) for k, v in value.items() for where, text in _texts(v)]
    if isinstance(value, list):
        return [(f"[{i}]{where}", text) for i, v in enumerate(value) for where, text in _texts(v)]
    return []


def parse_request(payload: Any, limits: Limits) -> tuple[list[Any], bool, dict[str, Any]]:
    """(inputs, whether a list was sent, parameters) of a /predict body; ValueError (422) or _TooLarge (413)."""
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise ValueError('the body must be a JSON object {"inputs": ..., "parameters": {...}}')
    unknown = sorted(set(payload) - {"inputs", "parameters"})
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; the body takes inputs and parameters")
    inputs, params = payload["inputs"], payload.get("parameters") or {}
    if not isinstance(params, dict):
        raise ValueError(f"parameters must be an object, got {type(params).__name__}")
    batched = isinstance(inputs, list)
    items = inputs if batched else [inputs]
    if not items:
        raise ValueError("inputs is an empty list")
    if len(items) > limits.max_inputs:
        raise _TooLarge(f"{len(items)} inputs are over the limit of {limits.max_inputs} per request (--max-inputs)")
    for i, item in enumerate(items):
        name = f"inputs[{i}]" if batched else "inputs"
        if not isinstance(item, (str, dict)):
            raise ValueError(f"{name} must be a string or an object, got {type(item).__name__}")
        for where, text in _texts(item):
            if len(text) > limits.max_text_chars:
                raise _TooLarge(f"{name}{where} has {len(text)} characters, over the limit of "
                                f"{limits.max_text_chars} (--max-text-chars)")
        if isinstance(item, str) and not item.strip():
            raise ValueError(f"{name} is empty")
    return items, batched, params


def create_app(pipe: Callable[..., list], *, limits: Limits | None = None, task: str | None = None,
               count_tokens: Callable[[Any], int] | None = None, metrics: Metrics | None = None) -> Starlette:
    """The app serving ``pipe`` (``pipe(list_of_inputs, **parameters) -> list_of_outputs``).

    ``count_tokens`` sorts inputs into length buckets; by default the pipeline's tokenizer counts them when it
    has one (``pipe.tokenizer``). Parameters are checked by ``pipe.settings(**parameters)`` when it exists.
    """
    limits = limits or Limits()
    metrics = metrics or Metrics()
    if count_tokens is None and getattr(pipe, "tokenizer", None) is not None:
        count_tokens = _tokenizer_counter(pipe.tokenizer)
    batcher = Batcher(pipe, limits, metrics, count_tokens)
    task = task or getattr(pipe, "task", None)

    def answer(status: int, response: Response, start: float) -> Response:
        metrics.counter("xlmr_requests_total", "Requests answered, by status code.", code=str(status))
        metrics.observe("xlmr_request_seconds", "Seconds from request to answer.", time.perf_counter() - start,
                        SECONDS_BUCKETS)
        return response

    async def predict(request: Request) -> Response:
        start = time.perf_counter()
        try:
            body = await _read_body(request, limits.max_body_bytes)
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                return answer(400, _error(400, f"the body is not JSON: {e}"), start)
            items, batched, params = parse_request(payload, limits)
            settings = getattr(pipe, "settings", None)
            if settings is not None:
                settings(**params)  # a bad parameter is refused before it is queued
            outputs = await batcher.submit(items, params)
        except _TooLarge as e:
            return answer(413, _error(413, str(e)), start)
        except QueueFull as e:
            return answer(503, _error(503, str(e), **{"Retry-After": str(RETRY_AFTER_SECONDS)}), start)
        except (InputError, ValueError, TypeError) as e:
            return answer(422, _error(422, str(e).strip().splitlines()[0] if str(e).strip() else repr(e)), start)
        return answer(200, _JSON(outputs if batched else outputs[0]), start)

    async def health(request: Request) -> Response:
        status = "draining" if batcher.closing else "ok"
        return _JSON({"status": status, "task": task, "backend": getattr(pipe, "backend", None),
                      "queue": batcher.depth}, status_code=503 if batcher.closing else 200)

    async def prometheus(request: Request) -> Response:
        metrics.gauge("xlmr_queue_depth", "Inputs waiting for the model.", batcher.depth)
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @asynccontextmanager
    async def lifespan(app: Starlette):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.close()  # uvicorn has stopped accepting; finish what is queued

    app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health),
                            Route("/metrics", prometheus)], lifespan=lifespan)
    app.state.batcher, app.state.metrics, app.state.limits = batcher, metrics, limits
    return app


def _tokenizer_counter(tokenizer: Any) -> Callable[[Any], int]:
    """Counts tokens with a private copy of the pipeline's Rust tokenizer: the pipeline uses its own in the model
    thread, and a ``tokenizers.Tokenizer`` used from two threads at once fails ("Already borrowed")."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return lambda value: max(1, sum(len(text) for _, text in _texts(value)) // 4)
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(backend.to_str())
    counter.no_truncation()
    counter.no_padding()

    def count(value: Any) -> int:
        texts = [text for _, text in _texts(value)]
        return sum(len(e.ids) for e in counter.encode_batch(texts)) if texts else 1

    return count
