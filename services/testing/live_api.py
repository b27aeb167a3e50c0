"""The API served for real on 127.0.0.1 for a test: a store, the ingest worker on it, the app under
uvicorn on a thread and an httpx client that sends a token, stopped in reverse order on leaving.

>>> from services.settings import load_settings
>>> settings = load_settings(data_dir=getfixture("tmp_path"), embedding={"backend": "hashing"},
...                          api={"tokens": ["t0ken"]})
>>> with live_api(settings, batch_size=8) as api:
...     api.client.get("/v1/clusters").json()["count"]
0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from services.api import create_app, serve_in_thread
from services.ingest import EmbeddedIngestor
from services.metrics import Metrics
from services.settings import Settings
from services.store import Store, open_store
from services.wiring import build_pipeline


@dataclass
class LiveApi:
    url: str
    client: httpx.Client  # base_url ``url``, bearer ``token`` (none when the API has no tokens)
    store: Store
    settings: Settings
    metrics: Metrics  # shared by the ingestor and the app
    ingestor: EmbeddedIngestor
    app: FastAPI


@contextmanager
def live_api(settings: Settings, store: Store | None = None, *, seed: Callable[[Store], None] | None = None,
             metrics: Metrics | None = None, token: str | None = None, timeout: float = 60,
             **ingestor_options) -> Iterator[LiveApi]:
    """Serve ``settings``' API over ``store`` (or a store opened from ``settings``, migrated, then
    ``seed``-ed, closed on leaving) with a fresh pipeline in an :class:`EmbeddedIngestor` given
    ``ingestor_options`` (``batch_size``, ``cluster_refresh_seconds``, ...). The client sends
    ``token`` (by default the first of ``settings.api.tokens``) and waits ``timeout`` seconds.
    On leaving: the client closes, the server stops, held OTLP traces go to the ingestor, the
    ingestor drains, then the store closes."""
    with ExitStack() as stack:
        if store is None:
            store = stack.enter_context(open_store(settings))
            store.migrate()
            if seed is not None:
                seed(store)
        metrics = metrics or Metrics()
        ingestor = stack.enter_context(EmbeddedIngestor(build_pipeline(settings), store, metrics,
                                                        **ingestor_options))
        app = create_app(settings.api, store, ingestor, metrics)
        stack.callback(app.state.otlp.close)
        url = stack.enter_context(serve_in_thread(app))
        if token is None and settings.api.tokens:
            token = settings.api.tokens[0].get_secret_value()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = stack.enter_context(httpx.Client(base_url=url, timeout=timeout, headers=headers))
        yield LiveApi(url=url, client=client, store=store, settings=settings, metrics=metrics, ingestor=ingestor,
                      app=app)
