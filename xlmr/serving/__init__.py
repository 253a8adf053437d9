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

from xlmr.serving.app import create_app
from xlmr.serving.batcher import Batcher, Limits
from xlmr.serving.metrics import Metrics

__all__ = ["Batcher", "Limits", "Metrics", "create_app"]
