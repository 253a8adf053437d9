"""``xlmr serve``: a real server on 127.0.0.1, real HTTP clients (httpx), concurrent requests.

The model test runs ``xlmr serve`` in a subprocess on the embedded checkpoint and compares every answer with a
direct pipeline call. The limit, queue and shutdown tests serve a stand-in pipeline (a function of the texts)
from uvicorn in a thread, so that they can hold the model call and fill the queue deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from xlmr.serving import Limits, create_app  # noqa: E402

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "xlmr", "assets", "default")
SENTENCES = [
    "Everyone has the right to <mask>.", "Toute personne a droit à la <mask>.", "Jeder hat das Recht auf <mask>.",
    "Всякий человек имеет право на <mask>.", "Todo individuo tiene derecho a la <mask>.",
    "Kila mtu ana haki ya <mask>.", "Ognuno ha diritto alla <mask>.", "Iedereen heeft recht op <mask>.",
]


class Echo:
    """A stand-in pipeline: uppercases texts, records each call's batch, and can be held at a gate."""

    task, backend, tokenizer = "echo", "none", None

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def settings(self, **params):
        unknown = sorted(set(params) - {"suffix"})
        if unknown:
            raise ValueError(f"echo pipeline got unknown argument(s) {', '.join(unknown)}; it takes suffix")
        return params

    def __call__(self, texts, suffix=""):
        self.holding = len(texts)  # inputs in the call held at the gate
        self.entered.set()
        self.gate.wait(30)
        self.calls.append(list(texts))
        for t in texts:
            if t == "boom":
                raise ValueError("inputs holds 'boom', which this pipeline refuses")
        return [{"text": t.upper() + suffix} for t in texts]


@contextlib.contextmanager
def serving(app):
    """Run ``app`` with uvicorn on a free port of 127.0.0.1 in a thread; yields (base url, server)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(30)


async def queued(app, depth: int) -> None:
    """Wait until ``depth`` inputs wait in the batcher's queue (requests sent are not yet received on a busy CPU)."""
    deadline = time.time() + 30
    while app.state.batcher.depth < depth:
        assert time.time() < deadline, f"queue depth {app.state.batcher.depth}, expected {depth}"
        await asyncio.sleep(0.01)


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


# ------------------------------------------------------------------------------------------------ the model
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_concurrent_requests_are_batched_and_equal_direct_pipeline_calls():
    xlmr = pytest.importorskip("xlmr")
    pytest.importorskip("xlmr.pipelines")
    pytest.importorskip("torch")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "xlmr", "serve", DEFAULT, "--task", "fill-mask", "--backend",
                                "pt", "--port", str(port), "--max-wait-ms", "100"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            assert process.poll() is None, process.stderr.read()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            assert time.time() < deadline, "server did not come up"
            time.sleep(0.2)

        async def send_all():
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                return await asyncio.gather(*(client.post("/predict", json={"inputs": s}) for s in SENTENCES * 2))

        responses = asyncio.run(send_all())
        assert [r.status_code for r in responses] == [200] * 16
        pipe = xlmr.pipeline("fill-mask", model=DEFAULT, backend="pt")
        direct = pipe(SENTENCES)
        for response, expected in zip(responses, direct * 2):
            got = response.json()
            assert [c["token"] for c in got] == [c["token"] for c in expected]
            assert [c["sequence"] for c in got] == [c["sequence"] for c in expected]
            for a, b in zip(got, expected):
                assert abs(a["score"] - b["score"]) < 1e-5

        text = httpx.get(f"{base}/metrics").text
        batches, inputs = metric(text, "xlmr_batches_total"), metric(text, "xlmr_inputs_total")
        assert inputs == 16 and batches < 16  # some model call took more than one input
        assert metric(text, 'xlmr_batch_size_bucket{le="1"}') < batches
        assert metric(text, 'xlmr_requests_total{code="200"}') == 16
        assert "xlmr_queue_depth 0" in text

        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught (so the status is -SIGTERM)
        assert process.wait(60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ------------------------------------------------------------------------------------------------ batching
def test_requests_of_one_length_bucket_share_a_model_call():
    pipe = Echo()
    pipe.gate.clear()
    app = create_app(pipe, limits=Limits(max_wait_ms=20))
    with serving(app) as (base, _):
        async def send():
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                first = asyncio.ensure_future(client.post("/predict", json={"inputs": "hold"}))
                await asyncio.to_thread(pipe.entered.wait, 10)  # the model is busy with the first request
                rest = [asyncio.ensure_future(client.post("/predict", json={"inputs": f"text {i}"}))
                        for i in range(6)]
                long = asyncio.ensure_future(client.post("/predict", json={"inputs": "x" * 400}))
                await queued(app, 7)
                pipe.gate.set()
                return await asyncio.gather(first, *rest, long)

        responses = asyncio.run(send())
    assert [r.json() for r in responses[1:7]] == [{"text": f"TEXT {i}"} for i in range(6)]
    assert pipe.calls[0] == ["hold"]
    # six short requests in one call, the long one (another length bucket) in its own; either may go first
    assert sorted(sorted(call) for call in pipe.calls[1:]) == [[f"text {i}" for i in range(6)], ["x" * 400]]


def test_a_bad_input_fails_alone_with_422():
    pipe = Echo()
    with serving(create_app(pipe, limits=Limits(max_wait_ms=50))) as (base, _):
        async def send():
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                return await asyncio.gather(*(client.post("/predict", json={"inputs": t})
                                              for t in ["good", "boom", "fine"]))

        good, bad, fine = asyncio.run(send())
    assert (good.status_code, fine.status_code, bad.status_code) == (200, 200, 422)
    assert bad.json() == {"error": "inputs holds 'boom', which this pipeline refuses"}


# ------------------------------------------------------------------------------------------------ limits
def test_full_queue_answers_503_with_retry_after():
    pipe = Echo()
    pipe.gate.clear()
    app = create_app(pipe, limits=Limits(max_queue=2, max_wait_ms=0))
    with serving(app) as (base, _):
        async def send():
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                busy = asyncio.ensure_future(client.post("/predict", json={"inputs": "a"}))
                await asyncio.to_thread(pipe.entered.wait, 10)
                waiting = asyncio.ensure_future(client.post("/predict", json={"inputs": ["b", "c"]}))
                await queued(app, 2)
                refused = await client.post("/predict", json={"inputs": "d"})
                pipe.gate.set()
                return refused, await busy, await waiting

        refused, busy, waiting = asyncio.run(send())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "limit of 2 (--max-queue)" in refused.json()["error"]
    assert (busy.status_code, waiting.json()) == (200, [{"text": "B"}, {"text": "C"}])


@pytest.mark.parametrize("body,status,message", [
    ({"inputs": ["a"] * 9}, 413, "9 inputs are over the limit of 8 per request (--max-inputs)"),
    ({"inputs": ["ok", "y" * 101]}, 413, "inputs[1] has 101 characters, over the limit of 100 (--max-text-chars)"),
    ({"inputs": {"question": "q", "context": "z" * 150}}, 413, "inputs.context has 150 characters"),
    ({"text": "a"}, 422, 'the body must be a JSON object {"inputs": ..., "parameters": {...}}'),
    ({"inputs": 5}, 422, "inputs must be a string or an object, got int"),
    ({"inputs": []}, 422, "inputs is an empty list"),
    ({"inputs": ["a", "  "]}, 422, "inputs[1] is empty"),
    ({"inputs": "a", "parameters": {"top_k": 2}}, 422, "unknown argument(s) top_k"),
    ({"inputs": "a", "parameters": [1]}, 422, "parameters must be an object, got list"),
])
def test_bad_requests_get_4xx_naming_the_problem(body, status, message):
    pipe = Echo()
    with serving(create_app(pipe, limits=Limits(max_inputs=8, max_text_chars=100))) as (base, _):
        response = httpx.post(f"{base}/predict", json=body)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert pipe.calls == []


def test_body_size_and_json_are_checked():
    with serving(create_app(Echo(), limits=Limits(max_body_bytes=200))) as (base, _):
        big = httpx.post(f"{base}/predict", json={"inputs": "a" * 300})
        broken = httpx.post(f"{base}/predict", content=b'{"inputs": ', headers={"content-type": "application/json"})
        ok = httpx.post(f"{base}/predict", json={"inputs": "a", "parameters": {"suffix": "!"}})
    assert big.status_code == 413 and "over the limit of 200 bytes (--max-body-bytes)" in big.json()["error"]
    assert broken.status_code == 400 and broken.json()["error"].startswith("the body is not JSON")
    assert ok.json() == {"text": "A!"}


# ------------------------------------------------------------------------------------------------ shutdown
def test_shutdown_drains_requests_in_flight():
    pipe = Echo()
    pipe.gate.clear()
    app = create_app(pipe, limits=Limits(max_wait_ms=0))
    with serving(app) as (base, server):
        async def send():
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                calls = [asyncio.ensure_future(client.post("/predict", json={"inputs": f"t{i}"})) for i in range(4)]
                await asyncio.to_thread(pipe.entered.wait, 10)
                await queued(app, 4 - pipe.holding)  # the rest of the four wait behind the held call
                server.should_exit = True  # as on SIGTERM, with four requests received and unanswered
                await asyncio.sleep(0.2)
                pipe.gate.set()
                return await asyncio.gather(*calls)

        responses = asyncio.run(send())
    assert [r.json() for r in responses] == [{"text": f"T{i}"} for i in range(4)]


def test_health_and_metrics_are_served():
    with serving(create_app(Echo())) as (base, _):
        httpx.post(f"{base}/predict", json={"inputs": ["a", "b"]})
        health = httpx.get(f"{base}/health").json()
        text = httpx.get(f"{base}/metrics").text
    assert health == {"status": "ok", "task": "echo", "backend": "none", "queue": 0}
    assert "# TYPE xlmr_batch_size histogram" in text and metric(text, "xlmr_inputs_total") == 2
    assert metric(text, 'xlmr_batch_size_bucket{le="2"}') == 1


def test_the_command_line_loads_no_server_stack_until_serving():
    code = ("import sys, xlmr.cli.main as m; m.build_parser(); "
            "print(sorted(x for x in ('starlette', 'uvicorn', 'httpx', 'torch', 'tensorflow', 'jax') "
            "if x in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          timeout=120).stdout.strip() == "[]"


def test_serve_without_the_server_stack_names_the_extra(monkeypatch, capsys):
    import importlib.util

    from xlmr.cli.main import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "uvicorn" else real(n, *a))
    assert main(["serve", DEFAULT, "--task", "fill-mask"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "xlmr serve: error: xlmr serve needs uvicorn, not installed; install with: pip install 'xlmr[serve]'"
