"""faithwatch-client: send model interactions to a faithwatch server from a Python product.

>>> from faithwatch_client import Client
>>> with Client("http://127.0.0.1:8000", token="...") as fw:          # doctest: +SKIP
...     fw.log({"interaction_id": "a-1", "timestamp": "2026-11-02T10:00:00Z", "query": "fee?",
...             "response": "2%", "session_id": "s-1", "confidence": 0.9})

See :class:`Client` for batching, the buffer policy and retries.
"""

from faithwatch_client._client import (
    BufferFull,
    Client,
    FaithwatchClientError,
    SendFailed,
    Stats,
    retry_after,
)

__all__ = ["BufferFull", "Client", "FaithwatchClientError", "SendFailed", "Stats", "retry_after"]
__version__ = "0.1.0"
