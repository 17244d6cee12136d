"""A stop under load, over gRPC: the calls in flight are answered, later ones get UNAVAILABLE, none CANCELLED."""

import collections
import os
import signal
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from testing.paths import TESTDATA
from testing.server import ServerProcess, wait_until
from testing.server_client import tensor_proto

HALF_PLUS_TWO = os.path.join(TESTDATA, "saved_model_half_plus_two_cpu")
CLIENTS = 12


@pytest.mark.parametrize("flags", [[], ["--enable_batching"]], ids=["thread pool", "batching (grpc.aio)"])
def test_a_stop_under_load_cancels_no_call(flags):
    """12 clients loop small Predicts, backing off 50 ms after UNAVAILABLE as retry policies do; then SIGTERM.
    Before the stop's admission gate (servicers.Admission), gRPC's core cancelled the calls it held but the
    server had not taken yet: 7-10 CANCELLED per stop on the batching server, 1-2 on the thread pool."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "h"
    request.inputs["x"].CopyFrom(tensor_proto(np.arange(500, dtype=np.float32)))
    codes, done = collections.Counter(), threading.Event()
    server = ServerProcess("--model_name=h", f"--model_base_path={HALF_PLUS_TWO}", *flags).start()
    try:
        def client():
            with grpc.insecure_channel(server.target) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                while not done.is_set():
                    try:
                        stub.Predict(request, timeout=30)
                        codes["OK"] += 1
                    except grpc.RpcError as e:
                        codes[e.code().name] += 1
                        if e.code() == grpc.StatusCode.UNAVAILABLE:
                            time.sleep(0.05)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        wait_until(lambda: codes["OK"] >= 200, timeout=60, what="the clients to be under way")
        codes.clear()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0
        time.sleep(0.5)  # the clients see the port closed
        done.set()
        for thread in threads:
            thread.join(30)
    finally:
        done.set()
        server.__exit__()
    assert codes["CANCELLED"] == 0, dict(codes)
    assert codes["OK"] > 0 and codes["UNAVAILABLE"] > 0, dict(codes)
    assert set(codes) <= {"OK", "UNAVAILABLE"}, dict(codes)


@pytest.mark.parametrize("flags", [[], ["--enable_batching"]], ids=["thread pool", "batching (grpc.aio)"])
def test_an_open_health_watch_does_not_keep_the_process_alive(flags):
    """A load balancer's Health.Watch stream is open when SIGTERM comes: the process exits 0 within the grace and
    a little. Before, on the batching server, the Watch's thread never ended and Python waited for it at exit:
    the process stayed alive after "Server stopped." (60 s and more)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server = ServerProcess("--model_name=h", f"--model_base_path={HALF_PLUS_TWO}",
                           "--enable_grpc_healthcheck_service", *flags).start()
    seen = []
    try:
        with grpc.insecure_channel(server.target) as channel:
            stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=120)

            def watch():
                try:
                    for answer in stream:
                        seen.append(answer.status)
                except grpc.RpcError as e:
                    seen.append(e.code())

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            wait_until(lambda: seen, timeout=30, what="the first health answer")
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(30) == 0
            took = time.monotonic() - started
            watcher.join(10)
    finally:
        server.__exit__()
    assert took < 15, f"the stop took {took:.1f} s"
    assert seen[0] == health_pb2.HealthCheckResponse.SERVING
