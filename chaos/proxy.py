"""A fault-injecting HTTP proxy between the operator and the real API server.

The operator's kubeconfig points at the proxy (plain HTTP on 127.0.0.1); the proxy
forwards each request to the real server over TLS, streaming the response (watches
included), except for a seeded share of requests, which get one of:

- `409`: a Conflict Status (writes only; a read gets `500` instead);
- `429`: TooManyRequests with `Retry-After: 1`, as API Priority and Fairness sends it;
- `500` and `503`: InternalError and ServiceUnavailable Status bodies;
- `reset`: the connection is closed without a response;
- `slow`: forwarded after 0.5 to 2 s;
- on watch requests, `drop` (the stream is closed after its first 1-5 events, between
  two events), `abort` (the connection is reset after them, half-way through the next
  event) and `gone` (one ERROR event with a 410 Expired Status, as a server whose
  history has moved on sends).

The choice of each request's fault comes from one generator seeded with the run's
seed, drawn in the order requests arrive. Watches are few (kopf holds one per
namespace and resource for minutes), so they are faulted at four times the share (at
most half of them). `counts` says how many of each were sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import threading
from collections import Counter
from typing import Optional

import aiohttp
from aiohttp import web

from tests.support.helpers import free_port

STATUS_FAULTS = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}
REQUEST_FAULTS = ("409", "429", "500", "503", "reset", "slow")
WATCH_FAULTS = ("429", "500", "503", "reset", "drop", "abort", "gone")
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


def status_body(code: int, message: str) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": STATUS_FAULTS.get(code, "Expired" if code == 410 else "InternalError"), "code": code}
    if code == 429:
        body["details"] = {"retryAfterSeconds": 1}
    return body


class FaultProxy:
    def __init__(self, upstream: str, ca_path: str, seed: int, share: float = 0.1) -> None:
        self.upstream = upstream
        self.ca_path = ca_path
        self.rng = random.Random(seed)
        self.share = share
        self.counts: Counter = Counter()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fault-proxy")
        self._runner: Optional[web.AppRunner] = None
        self._client: Optional[aiohttp.ClientSession] = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "FaultProxy":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        # A client that goes away mid-response (a reset it caused, a cut watch) is expected.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        context = ssl.create_default_context(cafile=self.ca_path)
        self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=200),
                                             timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        async def _stop() -> None:
            # Upstream first: that ends the watches being forwarded, which the server's
            # clean-up would otherwise wait for.
            if self._client is not None:
                await self._client.close()
            if self._runner is not None:
                await self._runner.cleanup()
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=90)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ requests

    def _draw(self, watch: bool) -> Optional[str]:
        if self.rng.random() >= (min(0.5, 4 * self.share) if watch else self.share):
            return None
        return self.rng.choice(WATCH_FAULTS if watch else REQUEST_FAULTS)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        watch = request.query.get("watch") in ("true", "1")
        fault = self._draw(watch)
        self.counts["requests"] += 1
        if fault is None:
            return await self._forward(request)
        if fault == "409" and request.method == "GET":
            fault = "500"
        self.counts[fault] += 1
        if fault in ("409", "429", "500", "503"):
            code = int(fault)
            headers = {"Retry-After": "1"} if code == 429 else {}
            return web.json_response(status_body(code, f"chaos proxy: injected {code}"), status=code,
                                     headers=headers)
        if fault == "reset":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError()
        if fault == "slow":
            await asyncio.sleep(self.rng.uniform(0.5, 2.0))
            return await self._forward(request)
        if fault == "gone":
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await response.prepare(request)
            event = {"type": "ERROR", "object": status_body(410, "too old resource version (chaos proxy)")}
            await response.write(json.dumps(event).encode() + b"\n")
            await response.write_eof()
            return response
        return await self._forward(request, cut=(fault, self.rng.randint(1, 5)))

    async def _forward(self, request: web.Request,
                       cut: Optional[tuple[str, int]] = None) -> web.StreamResponse:
        assert self._client is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = await request.read() if request.can_read_body else None
        async with self._client.request(request.method, self.upstream + request.path_qs, headers=headers,
                                        data=body, allow_redirects=False) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS})
            await response.prepare(request)
            lines, pending = 0, b""
            try:
                async for chunk in upstream.content.iter_any():
                    if cut is None:
                        await response.write(chunk)
                        continue
                    # A cut stream ends between events, as a server or a load balancer
                    # closes it ("drop"), or mid-event with the connection reset ("abort").
                    pending += chunk
                    complete, _, pending = pending.rpartition(b"\n")
                    if complete:
                        await response.write(complete + b"\n")
                        lines += complete.count(b"\n") + 1
                    if lines >= cut[1]:
                        if cut[0] == "abort":
                            assert request.transport is not None
                            await response.write(pending[: len(pending) // 2] or b"{")
                            request.transport.abort()
                            return response
                        break
                await response.write_eof()
            except (aiohttp.ClientError, ConnectionResetError):
                pass  # the operator closed it (a watch it gave up on, a process killed)
            return response
