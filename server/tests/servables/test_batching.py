"""--enable_batching: concurrent requests merged into one run, each request gets its own rows back."""

import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from testing.server_client import Client, model_config, rpc_error, values, with_request_log

from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from testing.paths import TESTDATA
from tfsclient import tfrecord
from tfsclient.prometheus import parse_metrics
from testing.server import EXECUTABLE, ServerProcess, connection_refused, free_port, wait_until

KERNEL = np.array([[1.5377980470657349], [3.204693078994751]], np.float32)  # Toy version 1, linear
BIAS = np.float32(2.858245849609375)


@pytest.fixture(scope="module")
def server(toy_models, tmp_path_factory):
    parameters = tmp_path_factory.mktemp("batching") / "batching.config"
    parameters.write_text("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 20000 }\n"
                          "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 1 }\n"
                          "allowed_batch_sizes: 2\nallowed_batch_sizes: 4\n")
    with ServerProcess(f"--model_config_file={toy_models}/toy_labels.config",
                       "--allow_version_labels_for_unavailable_models", "--enable_batching",
                       f"--batching_parameters_file={parameters}") as s:
        yield s


def test_each_request_gets_its_own_rows_in_order(server):
    client = Client(server.target)
    errors, checked = [], []

    def send(worker):
        rng = np.random.default_rng(worker)
        try:
            for _ in range(15):
                rows = int(rng.integers(1, 4))
                x = rng.uniform(-10, 10, size=(rows, 2)).astype(np.float32)
                got = np.array(values(client.predict(version=1, inputs={"input_1": x}), "output_1"))
                np.testing.assert_allclose(got, (x @ KERNEL + BIAS).ravel(), rtol=1e-5, atol=1e-5)
                checked.append(rows)
        except Exception as e:  # asserted below
            errors.append(e)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(checked) == 120 and set(checked) == {1, 2, 3}
    client.close()


def test_guide_outputs_unchanged_with_batching(server):
    client = Client(server.target)
    assert values(client.predict(version=1), "output_1") == [10.805429458618164, 14.010123252868652]
    client.close()


def test_too_large_a_request(server):
    client = Client(server.target)
    assert rpc_error(client.predict, version=1, inputs={"input_1": np.zeros((5, 2), np.float32)}) == (
        "INVALID_ARGUMENT", "Task size 5 is larger than maximum input batch size 4")
    client.close()


def test_garbage_bytes_are_invalid_argument(server):
    """The event loop's Predict answers a request that does not parse as the sync one does."""
    client = Client(server.target)
    raw = client.channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                     request_serializer=None, response_deserializer=None)
    assert rpc_error(raw, b"\x0a\xff\xff\xff\xff\x0f", timeout=10) == (
        "INVALID_ARGUMENT", "Could not parse the request (6 bytes) as a tensorflow.serving.PredictRequest: "
                            "Wire format was corrupt")
    assert values(client.predict(version=1), "output_1") == [10.805429458618164, 14.010123252868652]
    client.close()


def test_full_queue_is_unavailable(toy_models, tmp_path):
    parameters = tmp_path / "small.config"
    parameters.write_text("max_batch_size { value: 2 }\nbatch_timeout_micros { value: 1000000 }\n"
                          "max_enqueued_batches { value: 1 }\nnum_batch_threads { value: 1 }\n")
    with ServerProcess("--model_name=Toy", f"--model_base_path={toy_models}/Toy", "--enable_batching",
                       f"--batching_parameters_file={parameters}") as server:
        client = Client(server.target)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "Toy"
        request.inputs["input_1"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 2), np.float32)))
        seen = set()
        for _ in range(20):  # a round: a 1-row request waits up to 1 s for company; 2-row probes overflow it
            waiting = client.predictions.Predict.future(request, timeout=30)
            deadline = time.monotonic() + 30
            while not waiting.done() and time.monotonic() < deadline:
                try:
                    client.predict(inputs={"input_1": np.zeros((2, 2), np.float32)}, timeout=30)
                except grpc.RpcError as e:
                    seen.add((e.code().name, e.details()))
                    break
            try:  # whichever of the two came second found the queue full
                waiting.result()
            except grpc.RpcError as e:
                seen.add((e.code().name, e.details()))
            if seen:
                break
        assert seen == {("UNAVAILABLE", "The batch scheduling queue to which this task was submitted is full; "
                                         "currently 1 batches enqueued and max_enqueued_batches is 1")}
        client.close()


@pytest.mark.parametrize("flags, last_line", [
    (["--batching_parameters_file=/x"], "Failed to start server. Error: INVALID_ARGUMENT: "
     "server_options.batching_parameters_file is set without setting server_options.enable_batching to true."),
    (["--enable_batching", "--batching_parameters_file=/nope"],
     "Failed to start server. Error: NOT_FOUND: /nope; No such file or directory"),
])
def test_batching_start_up_errors(toy_models, flags, last_line):
    result = subprocess.run([EXECUTABLE, "--model_name=Toy", f"--model_base_path={toy_models}/Toy", *flags],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 255 and result.stderr.splitlines()[-1] == last_line


def test_shared_batching_config_and_a_bad_one(toy_models, tmp_path):
    with ServerProcess("--model_name=Toy", f"--model_base_path={toy_models}/Toy", "--enable_batching",
                       f"--batching_parameters_file={TESTDATA}/batching_config.txt") as server:
        client = Client(server.target)
        assert values(client.predict(), "dense") == [0.9901617765426636, 0.9934704303741455]
        client.close()
    bad = tmp_path / "bad.config"
    bad.write_text("max_batch_size: 4\n")
    result = subprocess.run([EXECUTABLE, "--model_name=Toy", f"--model_base_path={toy_models}/Toy",
                             "--enable_batching", f"--batching_parameters_file={bad}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 255
    assert result.stderr.splitlines()[-2].startswith(
        "Error parsing text-format tensorflow.serving.BatchingParameters: 1:")


# -- per-model parameters, splitting and the batching metrics --------------------------------------------

def copy_model(source, target, versions=(1,)):
    for version in versions:
        shutil.copytree(f"{source}/{version}", f"{target}/{version}")
    return target


def test_per_model_parameters_come_from_the_version_folder(toy_models, tmp_path):
    own = copy_model(f"{toy_models}/Toy", tmp_path / "Own")
    (own / "1" / "batching_params.pbtxt").write_text(
        "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 0 }\n"
        "enable_large_batch_splitting { value: true }\n"
        "max_execution_batch_size { value: 2 }\nmax_enqueued_batches { value: 100 }\n")
    copy_model(f"{toy_models}/Toy", tmp_path / "Plain")
    broken = copy_model(f"{toy_models}/Toy", tmp_path / "Broken")
    (broken / "1" / "batching_params.pbtxt").write_text("max_batch_size: 4\n")
    config = tmp_path / "models.config"
    config.write_text(text_format.MessageToString(model_config(*((n, tmp_path / n) for n in ("Own", "Plain")))))
    global_parameters = tmp_path / "global.config"  # ignored for the models, but for its thread pool
    global_parameters.write_text("max_batch_size { value: 1 }\nnum_batch_threads { value: 1 }\n"
                                 "thread_pool_name { value: 'shared_pool' }\n")
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    rest_port = free_port()
    with ServerProcess(f"--model_config_file={config}", "--enable_batching",
                       f"--batching_parameters_file={global_parameters}", "--enable_per_model_batching_parameters",
                       f"--rest_api_port={rest_port}", f"--monitoring_config_file={monitoring}",
                       "--max_num_load_retries=0") as server:
        client = Client(server.target)
        x = np.arange(14, dtype=np.float32).reshape(7, 2)
        for model in ("Own", "Plain"):  # Own: 7 rows split into runs of 2; Plain: not batched at all
            got = np.array(values(client.predict(model, inputs={"input_1": x}), "output_1"))
            np.testing.assert_allclose(got, (x @ KERNEL + BIAS).ravel(), rtol=1e-5)
        page = metrics_page(rest_port)
        assert ":tensorflow:serving:batching_session:processed_batch_size_count 4.0" in page  # 2 + 2 + 2 + 1
        assert ":tensorflow:serving:batching_session:processed_batch_size_sum 7.0" in page
        assert ":tensorflow:serving:batching_session:input_batch_size_count 1.0" in page
        assert ':tensorflow:serving:batching_session:queuing_latency_count{thread_pool_name="shared_pool"} 4.0' \
            in page
        assert ":tensorflow:serving:batching_session:wrapped_run_count 4" in page
        assert ':tensorflow:serving:batching_session:padding_size_count{execution_batch_size="1"} 1.0' in page
        code, details = rpc_error(client.reload, model_config(*((n, tmp_path / n) for n in ("Own", "Plain", "Broken"))))
        assert code == "UNKNOWN" and details.startswith(
            "1 model(s) did not become available: {{name: Broken version: 1 due to error: INVALID_ARGUMENT: "
            "Invalid protobuf file: "), details
        assert client.states("Broken") == {1: "END"}
        assert values(client.predict("Own", inputs={"input_1": x[:1]}), "output_1")  # the others go on
        client.close()


def metrics_page(rest_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=30) as answer:
        return answer.read().decode()


# -- a request's deadline in a batch (batching_session.cc, ProcessBatch) ------------------------------


def build_slow_batch_model(path):
    """y = 2x after test_hardening's slept_double sleep of the batch's largest `sleep_us`. Both inputs have
    a 0th dimension, so requests batch."""
    from testing.slow_model import slept_double

    class Slow(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x"),
                                      tf.TensorSpec([None], tf.int64, name="sleep_us")])
        def serve(self, x, sleep_us):
            return {"y": slept_double(x, tf.reduce_max(sleep_us))}

    model = Slow()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """One batch thread, a batch per request: a request queues while the one before it runs."""
    root = tmp_path_factory.mktemp("slow_batching")
    build_slow_batch_model(root / "Slow" / "1")
    (root / "batching.config").write_text("max_batch_size { value: 1 }\nbatch_timeout_micros { value: 0 }\n"
                                          "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 1 }\n")
    (root / "monitoring.config").write_text("prometheus_config { enable: true }\n")
    rest_port = free_port()
    with ServerProcess("--model_name=Slow", f"--model_base_path={root / 'Slow'}", "--enable_batching",
                       f"--batching_parameters_file={root / 'batching.config'}", f"--rest_api_port={rest_port}",
                       f"--monitoring_config_file={root / 'monitoring.config'}",
                       "--rest_api_timeout_in_ms=3000") as server:
        server.rest_port = rest_port
        with Client(server.target) as client:
            yield server, client


def slow_request(sleep_us):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "Slow"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    request.inputs["sleep_us"].CopyFrom(tf.make_tensor_proto(np.array([sleep_us], np.int64)))
    return request


QUEUED = ":tensorflow:serving:batching_session:queuing_latency_count"
PROCESSED = ":tensorflow:serving:batching_session:processed_batch_size_count"
PROCESSED_SUM = ":tensorflow:serving:batching_session:processed_batch_size_sum"


def batch_counts(server):
    """(batches dequeued, batches run) so far, from the metrics page (read by the scripts' parser)."""
    samples = parse_metrics(metrics_page(server.rest_port), {QUEUED, PROCESSED})
    return tuple(sum(value for _, value in samples.get(name, [])) for name in (QUEUED, PROCESSED))


def test_requests_whose_deadline_passed_in_the_queue_are_not_run(slow_server):
    """Two requests give up while a 1.5 s run holds the only batch thread: their batches are dropped
    (TF Serving's "Run() timeout exceeded while waiting in batching queue"), not run for nobody, and the
    request behind them is served as soon as the first run ends. Before, both ran their 1.5 s."""
    server, client = slow_server
    dequeued, ran = batch_counts(server)
    first = client.predictions.Predict.future(slow_request(750_000), timeout=30)
    wait_until(lambda: batch_counts(server)[0] > dequeued, what="the first run to start")
    late = [client.predictions.Predict.future(slow_request(750_000), timeout=0.3) for _ in range(2)]
    behind = client.predictions.Predict.future(slow_request(0), timeout=30)
    assert list(first.result(timeout=30).outputs["y"].float_val) == [2.0]
    for future in late:
        assert future.exception(timeout=30).code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert list(behind.result(timeout=30).outputs["y"].float_val) == [2.0]
    assert batch_counts(server) == (dequeued + 4, ran + 2)  # all four dequeued; the late two never ran


def test_a_batched_run_ends_at_its_requests_deadline(slow_server):
    """A 10 s batch whose only request waits 1 s is cancelled by TensorFlow at that deadline (TF Serving
    bounds a batch's run by its latest task deadline), so the request queued behind it, which waits 8 s,
    is served. Before, the batch ran its 10 s for nobody and the one behind it timed out."""
    server, client = slow_server
    dequeued, _ = batch_counts(server)
    slow = client.predictions.Predict.future(slow_request(5_000_000), timeout=1)
    wait_until(lambda: batch_counts(server)[0] > dequeued, what="the slow run to start")
    behind = client.predictions.Predict.future(slow_request(0), timeout=8)
    assert slow.exception(timeout=30).code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert list(behind.result(timeout=30).outputs["y"].float_val) == [2.0]


def test_a_rest_timeout_bounds_its_batch_too(slow_server):
    """--rest_api_timeout_in_ms=3000: a 10 s batch of one REST request (two 5 s sleeps) is cancelled at 3 s,
    so a REST request sent 2.8 s later, queued behind it, is served (200). Before, the batch ran its 10 s
    and both got 504. (Under load TensorFlow sometimes ends the cancelled run only when its first 5 s
    sleep does; the second request's own 3 s outlast that too.)"""
    server, _ = slow_server
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/Slow:predict"

    def post(sleep_us):
        body = json.dumps({"inputs": {"x": [1.0], "sleep_us": [sleep_us]}}).encode()
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    dequeued, _ = batch_counts(server)
    results = {}
    slow = threading.Thread(target=lambda: results.update(slow=post(5_000_000)))
    slow.start()
    wait_until(lambda: batch_counts(server)[0] > dequeued, what="the slow batch to start")
    time.sleep(2.8)  # the scenario, not a wait for readiness: the second request's 3 s end after the first's
    assert post(0) == (200, {"outputs": [2.0]})
    slow.join(30)
    assert results["slow"][0] == 504


# -- the event loop's inference (aio_server.py, services.AsyncInference) -----------------------------------

INPUTS = ":tensorflow:serving:batching_session:input_batch_size_count"
REQUESTS = ":tensorflow:serving:request_count"


def metric(server, name, labels=None):
    """The sum of a metric's samples on the server's page (those with `labels`, a dict, if given)."""
    samples = parse_metrics(metrics_page(server.rest_port), {name}).get(name, [])
    return sum(value for sample_labels, value in samples if labels is None or labels.items() <= sample_labels.items())


@pytest.fixture
def wide_batch_server(toy_models, tmp_path):
    """Two gRPC threads; a batch of up to 8 rows waits 10 s for company; request logs, metrics."""
    (tmp_path / "batching.config").write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 10000000 }\n"
                                              "max_enqueued_batches { value: 10 }\nnum_batch_threads { value: 1 }\n")
    (tmp_path / "monitoring.config").write_text("prometheus_config { enable: true }\n")
    (tmp_path / "models.config").write_text(text_format.MessageToString(
        with_request_log(model_config(("Toy", f"{toy_models}/Toy", [1])), tmp_path / "log" / "toy", 1.0)))
    rest_port = free_port()
    with ServerProcess(f"--model_config_file={tmp_path / 'models.config'}", "--enable_batching",
                       f"--batching_parameters_file={tmp_path / 'batching.config'}", "--grpc_max_threads=2",
                       f"--rest_api_port={rest_port}", f"--monitoring_config_file={tmp_path / 'monitoring.config'}") \
            as server:
        server.rest_port, server.log_path = rest_port, tmp_path / "log" / "toy.tfrecord"
        with Client(server.target) as client:
            yield server, client


def test_a_predict_waiting_for_its_batch_holds_no_grpc_thread(wide_batch_server):
    """With two gRPC threads, eight 1-row Predicts wait together and run as one batch of 8, while the
    threads stay free for GetModelStatus; each request gets its own row, and is counted and logged as a
    sync one. Before, the first two held both threads: the rest and GetModelStatus waited out the 10 s."""
    server, client = wide_batch_server
    rows = np.arange(16, dtype=np.float32).reshape(8, 2)
    futures = [client.predictions.Predict.future(one_row_request(row), timeout=30) for row in rows[:4]]
    wait_until(lambda: metric(server, INPUTS) == 4, timeout=10, what="four requests to queue")
    assert client.states("Toy") == {1: "AVAILABLE"}  # a thread is free (timeout=30 s, but answered now)
    futures += [client.predictions.Predict.future(one_row_request(row), timeout=30) for row in rows[4:]]
    for row, future in zip(rows, futures):
        np.testing.assert_allclose(values(future.result(timeout=5), "output_1"), row @ KERNEL + BIAS, rtol=1e-5)
    assert (metric(server, PROCESSED), metric(server, PROCESSED_SUM)) \
        == (1, 8)
    assert rpc_error(client.predict, inputs={"input_1": np.zeros((9, 2), np.float32)}) == (
        "INVALID_ARGUMENT", "Task size 9 is larger than maximum input batch size 8")
    assert metric(server, REQUESTS, {"model_name": "Toy", "status": "OK"}) == 8
    assert metric(server, REQUESTS, {"model_name": "Toy", "status": "INVALID_ARGUMENT"}) == 1
    logged = [prediction_log_pb2.PredictionLog.FromString(data)
              for _, data in tfrecord.read(str(server.log_path))]
    assert sorted(tf.make_ndarray(e.predict_log.request.inputs["input_1"])[0, 0] for e in logged) == list(rows[:, 0])
    assert all(e.predict_log.response.outputs["output_1"].float_val for e in logged)


def one_row_request(row):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "Toy"
    request.inputs["input_1"].CopyFrom(tf.make_tensor_proto(row.reshape(1, 2)))
    return request


def test_a_client_that_gives_up_on_a_queued_predict(wide_batch_server):
    """Three requests wait for their batch; one client cancels, one's deadline passes. The batch runs when
    five more fill it, the six left get their rows, and the server logs no error and goes on serving."""
    server, client = wide_batch_server
    rows = np.arange(16, dtype=np.float32).reshape(8, 2)
    kept = client.predictions.Predict.future(one_row_request(rows[0]), timeout=30)
    cancelled = client.predictions.Predict.future(one_row_request(rows[1]), timeout=30)
    expiring = client.predictions.Predict.future(one_row_request(rows[2]), timeout=1)
    wait_until(lambda: metric(server, INPUTS) == 3, timeout=10, what="three requests to queue")
    assert cancelled.cancel()
    assert expiring.exception(timeout=10).code() == grpc.StatusCode.DEADLINE_EXCEEDED
    rest = [client.predictions.Predict.future(one_row_request(row), timeout=30) for row in rows[3:]]
    for row, future in zip(rows[[0, 3, 4, 5, 6, 7]], [kept, *rest]):
        np.testing.assert_allclose(values(future.result(timeout=10), "output_1"), row @ KERNEL + BIAS, rtol=1e-5)
    assert len(values(client.predict(inputs={"input_1": rows}), "output_1")) == 8  # a full batch: runs at once
    # As TF Serving's: the two abandoned runs ended, and are counted and logged with the others.
    wait_until(lambda: metric(server, REQUESTS, {"model_name": "Toy", "status": "OK"}) == 9, timeout=10,
               what="nine requests counted OK")
    assert len(list(tfrecord.read(str(server.log_path)))) == 9
    assert "Traceback" not in server.log() and "Predict failed" not in server.log()


def test_a_signal_lets_the_running_batch_and_the_queued_one_finish(tmp_path):
    """SIGTERM while a batch runs (~1 s) and a request waits for the next: new calls are refused at once,
    both requests are answered, and the server unloads and exits 0."""

    build_slow_batch_model(tmp_path / "Slow" / "1")
    (tmp_path / "batching.config").write_text("max_batch_size { value: 1 }\nbatch_timeout_micros { value: 0 }\n"
                                              "num_batch_threads { value: 1 }\n")
    (tmp_path / "monitoring.config").write_text("prometheus_config { enable: true }\n")
    rest_port = free_port()
    server = ServerProcess("--model_name=Slow", f"--model_base_path={tmp_path / 'Slow'}", "--enable_batching",
                           f"--batching_parameters_file={tmp_path / 'batching.config'}", f"--rest_api_port={rest_port}",
                           f"--monitoring_config_file={tmp_path / 'monitoring.config'}")
    with server:
        server.rest_port = rest_port
        client = Client(server.target)
        running = client.predictions.Predict.future(slow_request(500_000), timeout=30)
        wait_until(lambda: batch_counts(server)[0] == 1, what="the first batch to run")
        queued = client.predictions.Predict.future(slow_request(0), timeout=30)
        wait_until(lambda: metric(server, INPUTS) == 2, what="the second request to queue")
        server.process.send_signal(signal.SIGTERM)
        wait_until(lambda: connection_refused(server.port), timeout=5, what="the port to refuse connections")
        assert not running.done()
        for future in (running, queued):
            assert list(future.result(timeout=30).outputs["y"].float_val) == [2.0]
        assert server.process.wait(timeout=30) == 0
        assert "Done unloading servable version {name: Slow version: 1}" in server.log()
        client.close()


def test_regress_waits_for_its_batch_without_a_thread_too(tmp_path):
    """Classify, Regress and MultiInference take the event loop's path as Predict does: with two gRPC
    threads, four 1-example Regress calls on half_plus_two run as one batch of 4, while GetModelStatus
    is answered, and each gets 0.5x + 2 for its own x. Before, two of them held both threads."""
    from tensorflow_serving.apis import regression_pb2

    (tmp_path / "batching.config").write_text("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 10000000 }\n"
                                              "num_batch_threads { value: 1 }\n")
    (tmp_path / "monitoring.config").write_text("prometheus_config { enable: true }\n")
    rest_port = free_port()
    with ServerProcess("--model_name=hpt", f"--model_base_path={TESTDATA}/saved_model_half_plus_two_cpu",
                       "--enable_batching", f"--batching_parameters_file={tmp_path / 'batching.config'}",
                       "--grpc_max_threads=2", f"--rest_api_port={rest_port}",
                       f"--monitoring_config_file={tmp_path / 'monitoring.config'}") as server, \
            Client(server.target) as client:
        server.rest_port = rest_port

        def regress(x):
            request = regression_pb2.RegressionRequest()
            request.model_spec.name, request.model_spec.signature_name = "hpt", "regress_x_to_y"
            request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
            return client.predictions.Regress.future(request, timeout=30)

        futures = [regress(x) for x in (1.0, 2.0, 3.0)]
        wait_until(lambda: metric(server, INPUTS) == 3, timeout=10, what="three calls to queue")
        assert client.states("hpt") == {123: "AVAILABLE"}
        futures.append(regress(4.0))
        assert [f.result(timeout=5).result.regressions[0].value for f in futures] == [2.5, 3.0, 3.5, 4.0]
        assert (metric(server, PROCESSED), metric(server, PROCESSED_SUM)) \
            == (1, 4)
        assert metric(server, REQUESTS, {"model_name": "hpt", "status": "OK"}) == 4


def test_a_large_predict_is_read_and_written_off_the_event_loop(toy_models, tmp_path):
    """A Predict past 1 MB on a batching server: its tensors are made, and its answer serialized, on the
    thread pool (so the event loop serves small calls meanwhile; benchmarks/bench_stall.py). Its rows
    come back whole and are logged; a large request of the wrong dtype gets its error from the pool."""
    (tmp_path / "batching.config").write_text("max_batch_size { value: 1000000 }\nbatch_timeout_micros { value: 0 }\n"
                                              "num_batch_threads { value: 1 }\n")
    (tmp_path / "models.config").write_text(text_format.MessageToString(
        with_request_log(model_config(("Toy", f"{toy_models}/Toy", [1])), tmp_path / "log" / "toy", 1.0)))
    rows = np.random.default_rng(0).random((400_000, 2), dtype=np.float32)  # 3.2 MB in, 1.6 MB out
    with ServerProcess(f"--model_config_file={tmp_path / 'models.config'}", "--enable_batching",
                       f"--batching_parameters_file={tmp_path / 'batching.config'}") as server, \
            Client(server.target) as client:
        got = np.array(values(client.predict(inputs={"input_1": rows}), "output_1"), np.float32)
        np.testing.assert_allclose(got, (rows @ KERNEL + BIAS).ravel(), rtol=1e-5)
        np.testing.assert_allclose(values(client.predict(inputs={"input_1": rows[:1]}), "output_1"),
                                   (rows[:1] @ KERNEL + BIAS).ravel(), rtol=1e-5)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "Toy"
        request.inputs["input_1"].CopyFrom(tf.make_tensor_proto(rows.astype(np.float64)))
        code, message = rpc_error(client.predictions.Predict, request, timeout=30)
        assert (code, message) == ("INVALID_ARGUMENT", "Expects arg[0] to be float but double is provided")
    logged = list(tfrecord.read(str(tmp_path / "log" / "toy.tfrecord")))
    assert len(logged) == 2
    first = prediction_log_pb2.PredictionLog.FromString(logged[0][1]).predict_log.response
    np.testing.assert_allclose(tf.make_ndarray(first.outputs["output_1"]).ravel(), got, rtol=1e-6)
