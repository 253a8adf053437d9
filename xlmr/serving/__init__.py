"""An HTTP server for xlmr pipelines: Starlette + uvicorn, with dynamic batching of concurrent requests.

``create_app(pipe)`` builds the ASGI app (tests and embedding); ``xlmr serve DIR --task TASK`` runs it. See
``xlmr.serving.app`` for the endpoints and ``xlmr.serving.batcher`` for how requests are batched.

Example:
    >>> from xlmr.serving import Limits, create_app
    >>> app = create_app(lambda texts: [len(t) for t in texts], limits=Limits(max_inputs=8))
    >>> app.state.limits.max_inputs
    8
"""

from __future__ import annotations

from typing import Any

from xlmr.serving.batcher import Batcher, Limits
from xlmr.serving.metrics import Metrics

__all__ = ["Batcher", "Limits", "Metrics", "create_app"]


def __getattr__(name: str) -> Any:
    # The app needs Starlette; ``xlmr --help`` imports this package through ``xlmr serve``'s defaults and must not.
    if name == "create_app":
        from xlmr.serving.app import create_app

        return create_app
    raise AttributeError(f"module 'xlmr.serving' has no attribute {name!r}")
