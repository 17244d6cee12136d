"""The HTTP server under the REST API and the metrics page: aiohttp's, on an event loop in its own thread.

The event loop only moves bytes: it reads whole requests (chunked or with a Content-Length, a gzip
body decompressed) and writes answers, keeps connections alive (HTTP/1.1 and 1.0) and closes idle ones.
Every request is handled by `RestApi.handle` on a pool of --rest_api_num_threads threads, so at most
that many run at once, and a hundred slow or idle clients hold no thread at all.
"""

import asyncio
import logging
import socket
import threading
import weakref
import zlib
from concurrent import futures

# aiohttp over uvicorn (both measured with wrk on 2 CPUs, keep-alive POST, a thread-pool handler:
# 5.8k vs 6.2k req/s at c=1, 9.3k vs 9.9k at c=8): as fast as we need, and it decompresses gzip
# bodies and caps their size itself, where uvicorn would leave both to us.
from aiohttp import http_exceptions, http_parser, web, web_protocol

from ...util import memory
from .json_writer import error as json_error

log = logging.getLogger("tensorflow_serving.model_servers")

# A body larger than this is refused with 413 before it is parsed: JSON costs ~10x its size in memory.
MAX_BODY_BYTES = 256 * 2**20
# A gzip body may inflate to 100 MiB, TF Serving's bound (util/net_http/compression/gzip_zlib.h).
MAX_GZIP_BODY_BYTES = 100 * 2**20
INFLATE_STEP_BYTES = 4 * 2**20  # a gzip body inflates this much at a time, and stops at the bound
IDLE_TIMEOUT_SECONDS = 60.0  # a kept-alive connection with no request for this long is closed
# At a stop, a connection that has not sent its first request yet is given this long (within the grace) to
# send it: its client connected before the port closed, and would otherwise see it closed unanswered.
FIRST_REQUEST_SECONDS = 1.0


class _ClientFaultFilter(logging.Filter):
    """A client's fault is one line in the log, never a traceback: bad framing (answered 400 by aiohttp) is
    a warning, a client that went away is not logged at all."""

    def filter(self, record):
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (ConnectionError, asyncio.CancelledError, web.RequestPayloadError)):
            return False  # gone, or a body already answered 400 (aiohttp meets it again draining the connection)
        if isinstance(error, http_exceptions.HttpProcessingError):
            reason = " ".join(str(error.message).split())
            record.msg, record.args, record.exc_info, record.exc_text = "Bad HTTP request: %s", (reason,), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _route_aiohttp_logs():
    """aiohttp's own log lines (a request it could not handle) in the server's log format, errors only."""
    ours = logging.getLogger("tensorflow_serving")
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.internal", "asyncio"):
        logger = logging.getLogger(name)
        logger.handlers[:] = ours.handlers
        logger.setLevel(logging.ERROR)
        logger.propagate = False
        if not any(isinstance(f, _ClientFaultFilter) for f in logger.filters):
            logger.addFilter(_ClientFaultFilter())


class _FirstPacketParser:
    """aiohttp's request parser (llhttp), but a connection's first packet that holds a request saying
    `Connection: close` with more bytes behind it is read as libevent under TF Serving reads it: the requests
    up to that one are handled, and the rest is dropped. llhttp refuses the whole packet (`Data after
    Connection: close`, the requests in it unanswered), and aiohttp gives no way to turn that check off (its
    pure-Python parser refuses it too). So the packet is read once more by a new parser that pauses after each
    whole request, and the reading stops after the one that says close: one pass over the packet. Only the first
    packet: there the parser surely stands at the start of a request, so no byte of a body can be read as one;
    after it, the refusal stays. (The first parser reached the close request without pausing, so at most
    aiohttp's queue of requests come before it.)"""

    _REFUSAL = "Data after `Connection: close`"

    def __init__(self, parser, new_parser):
        self._parser, self._new_parser = parser, new_parser  # new_parser() -> a parser that pauses after each
        self._first, self._done = True, False

    def feed_data(self, data):
        first, self._first = self._first, False
        if self._done:
            return (), False, b""  # behind the Connection: close request: dropped
        try:
            return self._parser.feed_data(data)
        except http_exceptions.BadHttpMessage as refusal:
            # The reason alone (the message goes on to quote the request's bytes, which a client chooses).
            if not first or not str(refusal.message).startswith(self._REFUSAL):
                raise
            parser, kept = self._new_parser(), []
            messages, _, _ = parser.feed_data(data)
            while messages and len(kept) <= web_protocol.MAX_MSG_QUEUE_SIZE:
                kept += messages
                if kept[-1][0].should_close:
                    self._parser, self._done = parser, True
                    return kept, False, b""
                parser.message_consumed()
                messages, _, _ = parser.feed_data(b"")
            raise  # a body too large to read ahead of its handler: the refusal stands

    def __getattr__(self, name):  # the rest of the parser's interface, as it is
        return getattr(self._parser, name)


class _Connection(web_protocol.RequestHandler):
    """aiohttp's connection, with two of libevent's ways (TF Serving's HTTP server):
    - a client that half-closes (shutdown(SHUT_WR)) right after its request still gets its answer, then the
      connection closes; aiohttp's closed the whole connection at the client's EOF, unanswered;
    - a first packet with requests pipelined behind one saying `Connection: close` (_FirstPacketParser)."""

    def __init__(self, manager, *, loop, **kwargs):
        super().__init__(manager, loop=loop, **kwargs)
        self._parser = _FirstPacketParser(self._parser, lambda: http_parser.HttpRequestParser(
            self, loop, self._read_bufsize, max_line_size=self.max_line_size, max_headers=self.max_headers,
            max_field_size=self.max_field_size, payload_exception=web_protocol.RequestPayloadError,
            auto_decompress=False, max_msg_queue_size=1))

    def eof_received(self):
        self.close()  # no request can follow: close once those received are answered
        return True  # keep our side open to write them


class _StoppingServer(web.Server):
    """aiohttp's Server, but a stop answers every client that connected before it: kept-alive connections
    between requests close at once (their clients resend on a new connection), those that have not sent
    their first request yet get FIRST_REQUEST_SECONDS to send it, and each then closes after its answer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._silent = set()  # the open connections that have not sent a request yet
        self.stopping = False  # answers then say "Connection: close"

    def __call__(self):
        return _Connection(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler, transport):
        super().connection_made(handler, transport)
        self._silent.add(handler)

    def request_started(self, protocol):
        self._silent.discard(protocol)

    def connection_lost(self, handler, exc=None):
        self._silent.discard(handler)
        super().connection_lost(handler, exc)

    def pre_shutdown(self):
        self.stopping = True
        for connection in self.connections:
            if connection not in self._silent:
                connection.close()

    async def shutdown(self, timeout):
        """The connections yet to send a request get FIRST_REQUEST_SECONDS (within `timeout` seconds, the
        runner's grace) to send it; then each closes once answered, as in aiohttp's."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        first_request = min(loop.time() + FIRST_REQUEST_SECONDS, end)
        while self._silent and loop.time() < first_request:
            await asyncio.sleep(0.01)
        for connection in self.connections:
            connection.close()
        await super().shutdown(max(0.0, end - loop.time()))


class RestServer:
    """`api` (a rest.RestApi) served on `port`; `start()` binds (OSError if it cannot), `stop(grace)` drains."""

    def __init__(self, api, port, threads, host="0.0.0.0", grace=5.0, idle_timeout=IDLE_TIMEOUT_SECONDS,
                 guard_timeouts=False):
        self.api, self.host, self.requested_port = api, host, port
        self._guard_timeouts = guard_timeouts
        self.port = None
        self._grace, self._idle_timeout = grace, idle_timeout
        self._pool = futures.ThreadPoolExecutor(threads, thread_name_prefix="httprestserver")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rest-io", daemon=True)
        self._runner = self._socket = None
        self._adopting = set()  # connections being handed to aiohttp's protocol
        self._grace_over = None  # a future of the loop's, done when a stop's grace ends (_stop)

    def start(self):
        _route_aiohttp_logs()
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        except BaseException:
            self._close_loop()
            raise
        return self

    async def _start(self):
        # auto_decompress off: aiohttp would inflate a body on the event loop, and any encoding it knows (deflate,
        # br, zstd). As TF Serving (util/net_http/server/internal/evhttp_request.cc), only gzip is inflated, on the
        # pool, in bounded steps (_inflate); another encoding's bytes reach the JSON parser as they came.
        server = _StoppingServer(self._handle, request_factory=self._make_request, handler_cancellation=False,
                                 keepalive_timeout=self._idle_timeout, access_log=None, auto_decompress=False)
        self._runner = web.ServerRunner(server, shutdown_timeout=self._grace)
        await self._runner.setup()
        self._grace_over = self._loop.create_future()
        # The port is ours, not an aiohttp site's: asyncio (3.11) drops a connection it accepted just before its
        # server closed (its transport cannot attach to a closed server), and closing a listening socket resets
        # the connections still in its backlog. A stop here takes them all in first (_stop).
        # SO_REUSEADDR (create_server's default), as the gRPC port: a restart binds at once over the last
        # run's TIME_WAIT sockets, while a port another process listens on still fails.
        try:
            family = socket.getaddrinfo(self.host, self.requested_port, type=socket.SOCK_STREAM,
                                        flags=socket.AI_PASSIVE)[0][0]
            self._socket = socket.create_server((self.host, self.requested_port), family=family, backlog=1024)
        except BaseException:
            await self._runner.cleanup()
            raise
        self._socket.setblocking(False)
        self.port = self._socket.getsockname()[1]
        self._loop.add_reader(self._socket, self._accept)

    def _accept(self):
        """Every connection waiting in the listen backlog, served by aiohttp's protocol."""
        while True:
            try:
                connection, _ = self._socket.accept()
            except ConnectionAbortedError:  # its client gave up while it waited
                continue
            except BlockingIOError:  # none left
                return
            except OSError as e:  # out of descriptors or memory: those waiting wait, as asyncio does
                log.error("HTTP server cannot accept a connection for now: %s", e.strerror)
                self._loop.remove_reader(self._socket)
                self._loop.call_later(1.0, self._resume_accepting)
                return
            connection.setblocking(False)
            adopt = self._loop.create_task(self._loop.connect_accepted_socket(self._runner.server, connection))
            self._adopting.add(adopt)
            adopt.add_done_callback(self._adopted)

    def _resume_accepting(self):
        if self._socket.fileno() >= 0:  # not closed by a stop meanwhile
            self._loop.add_reader(self._socket, self._accept)

    def _adopted(self, adopt):
        self._adopting.discard(adopt)
        if not adopt.cancelled() and adopt.exception() is not None:  # the client went at once: nothing to do
            log.debug("HTTP connection not taken in: %s", adopt.exception())

    def stop(self):
        """Stop accepting, let the requests in flight finish (at most `grace` seconds), close every connection."""
        if self._runner is not None and self._thread.is_alive():
            try:
                stopped = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
                stopped.result(self._grace + FIRST_REQUEST_SECONDS + 5)
            except (futures.TimeoutError, RuntimeError) as e:
                log.error("HTTP server did not stop cleanly: %s", e)
        self._close_loop()

    async def _stop(self):
        # A request still running when the grace ends is answered 503 (its thread runs on; _call): aiohttp would
        # wait for it twice the grace, then close its connection unanswered.
        self._loop.call_later(self._grace, lambda: self._grace_over.done() or self._grace_over.set_result(None))
        # The clients in the backlog connected before the stop: taken in, in the same step of the loop as the
        # close, they are answered like those already open.
        self._loop.remove_reader(self._socket)
        self._accept()
        self._socket.close()  # new connections are refused from here
        await asyncio.gather(*self._adopting, return_exceptions=True)
        await self._runner.cleanup()

    def _close_loop(self):
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def _make_request(self, message, payload, protocol, writer, task):
        return web.BaseRequest(message, payload, protocol, writer, task, self._loop, client_max_size=MAX_BODY_BYTES)

    async def _handle(self, request):
        self._runner.server.request_started(request.protocol)
        _let_go_when_done(request.task)
        try:
            if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
                raise _TooLarge(MAX_BODY_BYTES)
            expect = request.headers.get("Expect")
            if expect is not None and request.version >= (1, 1):
                # As libevent's evhttp under TF Serving: "100 Continue" before the body is read (curl waits 1 s for
                # it before every large body), and 417 for any other expectation.
                if expect.lower() != "100-continue":
                    return _error(417, f"Unknown expectation: {expect}")
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0  # the answer has not started
            body = await request.read()
            if _gzipped(request.headers):
                body = await asyncio.get_running_loop().run_in_executor(self._pool, _inflate, body)
        except (_TooLarge, web.HTTPRequestEntityTooLarge) as e:  # aiohttp's: a chunked body past the limit
            limit, how = (e.limit, e.how) if isinstance(e, _TooLarge) else (MAX_BODY_BYTES, "")
            # The rest of the body is not read: the connection closes after this answer.
            return _error(413, f"Request body is larger than the REST API's limit of {limit} bytes{how}; "
                               "send large tensors over gRPC")
        except web.RequestPayloadError as e:  # bad chunk framing
            detail = " ".join(str(getattr(e.__cause__, "message", e)).split())
            return _error(400, f"Could not read the request body: {detail}")
        except zlib.error:  # a gzip body that does not inflate (TF Serving reads it as empty: "The document is
            # empty"; this says why)
            return _error(400, "Could not read the request body: Can not decode content-encoding: gzip")
        except RuntimeError:  # the pool is shut down: the server is stopping
            return _error(503, "Server is shutting down")
        code, text, content_type, headers = await self._call(request.method, request.raw_path, body,
                                                             request.headers.get("Origin"))
        if len(body) >= memory.LARGE_BYTES or len(text) >= memory.LARGE_BYTES:
            memory.after_large_request()
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text  # the JSON modules carry
        # bytes that are not UTF-8 (as rapidjson passes them through) as surrogates
        response = web.Response(status=code, body=data, headers=headers)
        if content_type:
            response.content_type = content_type
        if self._runner.server.stopping:
            response.force_close()
        return response

    async def _call(self, method, path, body, origin):
        """`api.handle` on the pool. --rest_api_timeout_in_ms bounds each session run (TensorFlow cancels it);
        waiting for a thread does not count, as in TF Serving. With `guard_timeouts` (batching: a batched
        run is not cancelled), a call still running at the timeout is answered 504 while its thread finishes
        it; without, the answer needs no second wake-up of the event loop."""
        loop = asyncio.get_running_loop()
        started = asyncio.Event() if self._guard_timeouts else None

        def run():
            if started is not None:
                loop.call_soon_threadsafe(started.set)
            try:
                return self.api.handle(method, path, body, origin)
            except Exception as e:  # a bug of ours: INTERNAL (500), logged, and the server serves on
                log.exception("REST %s %s failed", method, path)
                return 500, json_error(f"Internal error: {type(e).__name__}: {e}"), "application/json", {}

        try:
            call = asyncio.wrap_future(self._pool.submit(run))
        except RuntimeError:  # the pool is shut down: the server is stopping
            return _SHUTTING_DOWN
        timeout = self.api.timeout_seconds
        if not timeout or started is None:  # TensorFlow cancels a run that overstays it: nothing to guard
            await asyncio.wait({call, self._grace_over}, return_when=asyncio.FIRST_COMPLETED)
            return call.result() if call.done() else _SHUTTING_DOWN
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait({call, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        # a little slack: TensorFlow's own cancellation answers first when it can
        await asyncio.wait({call, self._grace_over}, timeout=timeout + 0.25, return_when=asyncio.FIRST_COMPLETED)
        if call.done():
            return call.result()
        return _SHUTTING_DOWN if self._grace_over.done() else self.api.timed_out()


_SHUTTING_DOWN = (503, json_error("Server is shutting down"), "application/json", {})


_WATCHED = weakref.WeakSet()  # the connection tasks _let_go_when_done already watches


def _let_go_when_done(task):
    """When `task` (aiohttp's for a connection, which runs its requests one after another) ends cancelled, as it
    does when its connection closes, take its CancelledError out of it. Left in, that error's traceback holds the
    task's last frame, and with it the connection's last request, body included; on Python 3.11 the garbage
    collector never frees them (it does not see the error a cancelled task keeps), so every connection kept
    its last request for good: 32 MB more for each 32 MB body."""
    if task is not None and task not in _WATCHED:
        _WATCHED.add(task)
        task.add_done_callback(_take_cancellation)


def _take_cancellation(task):
    if task.cancelled():
        try:
            task.exception()  # raises the CancelledError it held, and lets go of it
        except asyncio.CancelledError:
            pass


class _TooLarge(Exception):
    """A body past `limit` bytes (`how`: " once decompressed" for an inflated one)."""

    def __init__(self, limit, how=""):
        super().__init__(limit)
        self.limit, self.how = limit, how


def _gzipped(headers):
    """Whether TF Serving would inflate the body: a Content-Encoding that names gzip (evhttp_request.cc)."""
    return "gzip" in headers.get("Content-Encoding", "").lower()


def _inflate(data, limit=MAX_GZIP_BODY_BYTES):
    """The gzip body `data` inflated, INFLATE_STEP_BYTES at a time, never past `limit` bytes (_TooLarge) however
    far it would inflate; zlib.error if it is not gzip. On the pool: a bomb costs one thread at most `limit`
    bytes, and no other client waits for it. A large body's memory is given back after it (util/memory.py)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip's framing only, as TF Serving's gzip_zlib
    parts, size, pending = [], 0, data
    while not inflater.eof:
        part = inflater.decompress(pending, INFLATE_STEP_BYTES)
        size += len(part)
        if size > limit:
            parts.clear()
            memory.after_large_request()
            raise _TooLarge(limit, " once decompressed")
        parts.append(part)
        pending = inflater.unconsumed_tail
        if not part and not pending:  # no input left and none to come: cut short
            raise zlib.error("incomplete gzip stream")
    if size >= memory.LARGE_BYTES:
        memory.after_large_request()
    return b"".join(parts)


def _error(code, message):
    """An answer to a request whose body could not be read, in TF Serving's error JSON; the connection closes."""
    response = web.Response(status=code, text=json_error(message), content_type="application/json")
    response.force_close()
    return response
