"""httpx2's request functions with a timeout a loaded two-core CI machine can meet: its
default of 5 s fails a test whose server merely answered late (several servers, a browser
and PostgreSQL share the cores)."""

from __future__ import annotations

from functools import partial

import httpx2

TIMEOUT = 30.0

get = partial(httpx2.get, timeout=TIMEOUT)
post = partial(httpx2.post, timeout=TIMEOUT)
Client = partial(httpx2.Client, timeout=TIMEOUT)
HTTPTransport = httpx2.HTTPTransport
TransportError = httpx2.TransportError
