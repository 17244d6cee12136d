"""The gRPC server of a batching server: a grpc.aio server on an event loop thread of its own, behind the
part of grpc.Server's interface server.py uses.

Its inference methods await batches on the loop (servicers.AsyncInference); the others are sync servicers,
run unchanged in `executor` (grpc.aio's migration_thread_pool). Only a batching server uses it: a call
that does not batch pays a hop from the loop to the pool and back. A model served unbatched by a
batching server (per-model parameters, none for it) costs about the same either way: on grpc.server it
would need a thread a waiting request (figures: README.md, "Speed"; benchmarks/bench_batching.py).
"""

import asyncio
import threading

import grpc


class AioServer:
    def __init__(self, executor, options):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="grpc-aio")
        self._thread.start()
        self._server = self._call(self._build(executor, options))

    @staticmethod
    async def _build(executor, options):  # grpc.aio.server binds to the running loop
        return grpc.aio.server(migration_thread_pool=executor, options=options)

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def add_generic_rpc_handlers(self, handlers):
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name, method_handlers):
        self._server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address):
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address, credentials):
        return self._server.add_secure_port(address, credentials)

    def start(self):
        self._call(self._server.start())

    def stop(self, grace):
        """As grpc.Server.stop: refuse new calls now, cancel those still running after `grace` seconds; a
        threading.Event set once stopped."""
        stopped = threading.Event()
        asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop).add_done_callback(
            lambda _: stopped.set())
        return stopped
