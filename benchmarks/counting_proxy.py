"""A loopback HTTP proxy in front of Azurite that counts what clients ask of blob storage.

Both ncrefs (obstore, azure-storage-blob) and kerchunk (adlfs) talk to the proxy's endpoint,
so requests and bytes are counted the same way for both: at the wire.

Optionally (``latency_s``) every request waits that long before it is forwarded, as a cloud
round trip would, without holding up the others (requests still run concurrently). A client
in another process can read the counts so far with ``GET /_proxy/counts`` (answered by the
proxy itself, never forwarded or counted).

Round trips that overlap cost one latency, not one each. So the proxy also counts *waves* of the
source requests (the watched container's blob GETs and HEADs): a wave starts when such a request
arrives while none is in flight (from its arrival until its answer is written), and
``max_in_flight`` is the most of them in flight at once. Requests made one after the other are one
wave each; N requests made at once are one wave, whatever N.

A wave says nothing of how long it lasts: 1,300 requests kept 32 in flight never leave the proxy
idle (one wave), yet take ~41 round trips. ``rounds`` counts those: a request is one round deeper
than the deepest one that had finished when it arrived (it may have waited for it), so ``rounds``
is the longest such chain, and no client can have spent less than ``rounds x latency`` waiting.
Serial requests: one round each; N at once: one round; N at most K at a time: about N / K.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import asdict, dataclass

from aiohttp import ClientSession, web
from yarl import URL

COUNTS_PATH = "/_proxy/counts"
HOP_BY_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}


@dataclass
class Counts:
    """Requests for the watched container's blobs (the sources); everything else is ``other``."""

    gets: int = 0
    heads: int = 0
    other: int = 0
    bytes_out: int = 0  # response body bytes of those GETs
    waves: int = 0  # times a GET/HEAD of a source arrived while no other was in flight (0 -> 1)
    max_in_flight: int = 0  # the most source GETs/HEADs in flight at once
    rounds: int = 0  # the longest chain of source GETs/HEADs each arriving after the one before had finished


class CountingProxy:
    def __init__(self, upstream_port: int, watched_container: str, latency_s: float = 0.0):
        self.upstream = f"http://127.0.0.1:{upstream_port}"
        self.watched = f"/{watched_container}/"
        self.latency_s = latency_s
        self.counts = Counts()
        self.in_flight = 0  # source GETs/HEADs now in flight (kept across reset: it is the proxy's state)
        self._done_depth = 0  # the deepest round among the source requests finished since the last reset
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> CountingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def reset(self) -> Counts:
        counts, self.counts = self.counts, Counts()
        self._done_depth = 0
        return counts

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.run_forever()

    async def _serve(self) -> None:
        self._session = ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1 << 31)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if request.path == COUNTS_PATH:
            return web.json_response(asdict(self.counts))
        if not self._is_source(request):
            return await self._answer(request)
        # One event loop serves every request: these counters need no lock.
        if self.in_flight == 0:
            self.counts.waves += 1
        self.in_flight += 1
        self.counts.max_in_flight = max(self.counts.max_in_flight, self.in_flight)
        depth = self._done_depth + 1
        self.counts.rounds = max(self.counts.rounds, depth)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1
            self._done_depth = max(self._done_depth, depth)

    def _is_source(self, request: web.Request) -> bool:
        return (request.method in ("GET", "HEAD") and self.watched in request.path
                and "comp=list" not in request.query_string)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        url = URL(self.upstream + request.raw_path, encoded=True)
        # No Content-Type of aiohttp's own: it is signed (Shared Key), so only the client's may go upstream.
        async with self._session.request(request.method, url, headers=headers, data=body or None, allow_redirects=False,
                                         skip_auto_headers=("Content-Type",)) as upstream:
            data = await upstream.read()
            source = self.watched in request.path and "comp=list" not in request.query_string
            if source and request.method == "GET":
                self.counts.gets += 1
                self.counts.bytes_out += len(data)
            elif source and request.method == "HEAD":
                self.counts.heads += 1
            else:
                self.counts.other += 1
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            if request.method == "HEAD":
                response.headers["Content-Length"] = upstream.headers.get("Content-Length", "0")
                await response.prepare(request)
                return response
            response.content_length = len(data)
            await response.prepare(request)
            await response.write(data)
            await response.write_eof()
            return response


def fetch_counts(port: int) -> Counts:
    """The counts so far of the proxy listening on ``port`` (from any process)."""
    from urllib.request import ProxyHandler, build_opener

    with build_opener(ProxyHandler({})).open(f"http://127.0.0.1:{port}{COUNTS_PATH}", timeout=10) as answer:
        return Counts(**json.loads(answer.read()))
