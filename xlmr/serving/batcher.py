"""Dynamic batching: inputs of concurrent requests run through the model together, grouped by length bucket.

Each input of a request becomes one queued item. A single batcher task takes the oldest item, waits until its
deadline (``max_wait_ms`` after it arrived) for others of the same length bucket and parameters, and hands up to
``max_batch_tokens`` of them (bucket width x inputs, the padded size) to the pipeline in a worker thread. One
model call runs at a time: on a CPU one call already uses every core, and while it runs the next batch fills. The
queue is bounded (``max_queue`` inputs); a full queue refuses new requests (the app answers 503). ``close()``
stops taking requests and finishes every queued one before returning (graceful shutdown).

Example:
    >>> import asyncio
    >>> from xlmr.serving.batcher import Batcher, Limits
    >>> calls = []
    >>> def upper(texts):  # stands for a pipeline: a list in, a list out
    ...     calls.append(len(texts))
    ...     return [t.upper() for t in texts]
    >>> async def main():
    ...     batcher = Batcher(upper, Limits(max_wait_ms=50))
    ...     await batcher.start()
    ...     answers = await asyncio.gather(*(batcher.submit([t], {}) for t in ["a", "b", "c"]))
    ...     await batcher.close()
    ...     return answers
    >>> asyncio.run(main()), calls
    ([['A'], ['B'], ['C']], [3])
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import json
import time
from typing import Any, Callable

from xlmr.serving.metrics import Metrics

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclasses.dataclass
class Limits:
    """What one server accepts; each limit is named in the error that enforces it."""

    max_body_bytes: int = 1 << 20       # request body
    max_inputs: int = 64                # inputs in one request
    max_text_chars: int = 20_000        # characters in one text
    max_queue: int = 256                # inputs waiting for the model, all requests together
    max_batch_tokens: int = 8192        # padded tokens in one model call (bucket width x inputs)
    max_wait_ms: float = 5.0            # how long the oldest input waits for others to batch with


class QueueFull(Exception):
    """The queue holds ``max_queue`` inputs: the request is refused (503 with Retry-After)."""


class InputError(ValueError):
    """The pipeline refused an input or a parameter (422); the message names it."""


@dataclasses.dataclass
class _Item:
    value: Any
    params: dict[str, Any]
    key: str            # parameters and length bucket: items with equal keys may share a model call
    width: int          # the length bucket: tokens, rounded up to a power of two
    arrived: float
    future: asyncio.Future


def length_bucket(tokens: int, smallest: int = 16) -> int:
    """The power of two (at least ``smallest``) that ``tokens`` rounds up to."""
    width = smallest
    while width < tokens:
        width *= 2
    return width


class Batcher:
    """Queue, batch and run ``pipe(list_of_inputs, **params) -> list_of_outputs`` (see the module docstring).

    ``count_tokens(input) -> int`` sorts inputs into length buckets (default: one token per 4 characters).
    """

    def __init__(self, pipe: Callable[..., list], limits: Limits | None = None, metrics: Metrics | None = None,
                 count_tokens: Callable[[Any], int] | None = None):
        self.pipe, self.limits = pipe, limits or Limits()
        self.metrics = metrics or Metrics()
        self.count_tokens = count_tokens or (lambda value: max(1, len(json.dumps(value)) // 4))
        self._pending: collections.deque[_Item] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.closing = False

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="xlmr-model")
        self._task = asyncio.create_task(self._loop())

    async def submit(self, inputs: list[Any], params: dict[str, Any]) -> list[Any]:
        """Queue ``inputs`` and return their outputs, in order; raises QueueFull, InputError or the pipeline's
        error."""
        if self.closing or self._task is None:
            raise QueueFull("the server is shutting down")
        if len(self._pending) + len(inputs) > self.limits.max_queue:
            raise QueueFull(f"the queue holds {len(self._pending)} inputs; {len(inputs)} more would pass its limit "
                            f"of {self.limits.max_queue} (--max-queue)")
        loop = asyncio.get_running_loop()
        settings = json.dumps(params, sort_keys=True, default=str)
        items = []
        for value in inputs:
            width = length_bucket(self.count_tokens(value))
            items.append(_Item(value, params, f"{width}|{settings}", width, loop.time(), loop.create_future()))
        self._pending.extend(items)
        self._gauge()
        self._wakeup.set()
        return list(await asyncio.gather(*(item.future for item in items)))

    async def close(self) -> None:
        """Refuse new requests, finish the queued ones, stop the worker."""
        self.closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
            self._executor.shutdown(wait=True)
            self._task = None

    # -------------------------------------------------------------------------------------------- the loop
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self.closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            first = self._pending[0]
            while not self.closing and self._tokens(first.key) < self.limits.max_batch_tokens:
                remaining = first.arrived + self.limits.max_wait_ms / 1000 - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            await self._run(self._take(first))

    def _tokens(self, key: str) -> int:
        return sum(item.width for item in self._pending if item.key == key)

    def _take(self, first: _Item) -> list[_Item]:
        """``first`` and the oldest items sharing its key, up to the token budget; the rest keep their places."""
        batch, kept, used = [], collections.deque(), 0
        for item in self._pending:
            if item.key == first.key and (not batch or used + item.width <= self.limits.max_batch_tokens):
                batch.append(item)
                used += item.width
            else:
                kept.append(item)
        self._pending = kept
        self._gauge()
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        values, params = [item.value for item in batch], batch[0].params
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._call, values, params)
        except Exception as error:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(error)
                return
            for item in batch:  # one bad input must not fail the others it was batched with: run each alone
                await self._run([item])
            return
        self.metrics.observe("xlmr_batch_size", "Inputs per model call.", len(batch), BATCH_SIZE_BUCKETS)
        self.metrics.observe("xlmr_batch_tokens", "Padded tokens (bucket width x inputs) per model call.",
                             sum(item.width for item in batch), tuple(64 * 2 ** i for i in range(10)))
        self.metrics.observe("xlmr_model_seconds", "Seconds per model call.", time.perf_counter() - start,
                             SECONDS_BUCKETS)
        self.metrics.counter("xlmr_batches_total", "Model calls.")
        self.metrics.counter("xlmr_inputs_total", "Inputs run through the model.", len(batch))
        for item, result in zip(batch, results):
            if not item.future.done():  # a client that went away leaves a cancelled future
                item.future.set_result(result)

    def _call(self, values: list[Any], params: dict[str, Any]) -> list[Any]:
        try:
            results = self.pipe(values, **params)
        except (ValueError, TypeError, KeyError) as error:
            raise InputError(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__) \
                from error
        if not isinstance(results, list) or len(results) != len(values):
            raise RuntimeError(f"the pipeline returned {type(results).__name__} for {len(values)} inputs")
        return results

    def _gauge(self) -> None:
        self.metrics.gauge("xlmr_queue_depth", "Inputs waiting for the model.", len(self._pending))
