"""Counters, gauges and histograms rendered in Prometheus' text exposition format (version 0.0.4).

Written here rather than with ``prometheus_client``: the format is a few lines, and that library keeps one global
registry per process, which two apps in one process (tests, or two models behind one server) would share.

Example:
    >>> from xlmr.serving.metrics import Metrics
    >>> m = Metrics()
    >>> m.counter("xlmr_requests_total", "Requests answered.", code="200")
    >>> m.observe("xlmr_batch_size", "Inputs per model call.", 3, buckets=(1, 2, 4))
    >>> print(m.render())  # doctest: +NORMALIZE_WHITESPACE
    # HELP xlmr_requests_total Requests answered.
    # TYPE xlmr_requests_total counter
    xlmr_requests_total{code="200"} 1
    # HELP xlmr_batch_size Inputs per model call.
    # TYPE xlmr_batch_size histogram
    xlmr_batch_size_bucket{le="1"} 0
    xlmr_batch_size_bucket{le="2"} 0
    xlmr_batch_size_bucket{le="4"} 1
    xlmr_batch_size_bucket{le="+Inf"} 1
    xlmr_batch_size_sum 3
    xlmr_batch_size_count 1
"""

from __future__ import annotations

import threading
from typing import Any


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    escaped = (f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
               for k, v in sorted(labels.items()))
    return "{" + ",".join(escaped) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """A thread-safe set of metrics, each created on first use with its help text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meta: dict[str, tuple[str, str]] = {}            # name -> (type, help)
        self._values: dict[str, dict[str, Any]] = {}            # name -> {label string: value}
        self._bounds: dict[str, tuple[float, ...]] = {}         # histogram name -> upper bounds of its buckets

    def _entry(self, name: str, kind: str, help: str) -> dict[str, Any]:
        if name not in self._meta:
            self._meta[name] = (kind, help)
            self._values[name] = {}
        return self._values[name]

    def counter(self, name: str, help: str, amount: float = 1, **labels: str) -> None:
        with self._lock:
            values = self._entry(name, "counter", help)
            key = _labels(labels)
            values[key] = values.get(key, 0) + amount

    def gauge(self, name: str, help: str, value: float, **labels: str) -> None:
        with self._lock:
            self._entry(name, "gauge", help)[_labels(labels)] = value

    def observe(self, name: str, help: str, value: float, buckets: tuple[float, ...], **labels: str) -> None:
        with self._lock:
            values = self._entry(name, "histogram", help)
            bounds = self._bounds.setdefault(name, tuple(buckets))
            key = _labels(labels)
            counts, total, n = values.get(key, ([0] * len(bounds), 0.0, 0))
            values[key] = ([c + (value <= b) for c, b in zip(counts, bounds)], total + value, n + 1)

    def render(self) -> str:
        lines = []
        with self._lock:
            for name, (kind, help) in self._meta.items():
                lines += [f"# HELP {name} {help}", f"# TYPE {name} {kind}"]
                for key, value in self._values[name].items():
                    if kind != "histogram":
                        lines.append(f"{name}{key} {_number(value)}")
                        continue
                    counts, total, n = value
                    inner = key[1:-1]
                    for bound, count in zip(self._bounds[name], counts):
                        le = ",".join(x for x in (inner, f'le="{_number(bound)}"') if x)
                        lines.append(f"{name}_bucket{{{le}}} {count}")
                    le = ",".join(x for x in (inner, 'le="+Inf"') if x)
                    lines += [f"{name}_bucket{{{le}}} {n}", f"{name}_sum{key} {_number(total)}",
                              f"{name}_count{key} {n}"]
        return "\n".join(lines) + "\n"
