"""Model warmup (assets.extra/tf_serving_warmup_requests) and request logging (ModelConfig.logging_config)."""

import os
import shutil
import struct
import threading

import numpy as np
import pytest
from testing.server_client import Client, model_config, rpc_error, values, with_request_log
from tensorflow_serving.apis import classification_pb2, prediction_log_pb2

from testing.paths import TESTDATA
from testing.server import ServerProcess, wait_until

from tfsclient import tfrecord  # the project's TFRecord framing (the scripts' module)



def counter_log(signature, delta=None):
    entry = prediction_log_pb2.PredictionLog()
    request = entry.predict_log.request
    request.model_spec.name = "counter"
    request.model_spec.signature_name = signature
    if delta is not None:
        import tensorflow as tf
        request.inputs["delta"].CopyFrom(tf.make_tensor_proto(np.float32(delta)))
    return entry.SerializeToString()


def counter_version(root, version, records=None, raw=None):
    """A copy of TF Serving's counter model as `version`, with a warmup file of `records` (or raw bytes)."""
    path = root / "counter" / str(version)
    shutil.copytree(os.path.join(TESTDATA, "saved_model_counter", "00000123"), path)
    if records is not None or raw is not None:
        os.makedirs(path / "assets.extra")
        warmup = path / "assets.extra" / "tf_serving_warmup_requests"
        if raw is not None:
            warmup.write_bytes(raw)
        else:
            tfrecord.append(str(warmup), records)
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("warm")


@pytest.fixture(scope="module")
def server(root):
    counter_version(root, 1)
    with ServerProcess("--model_name=counter", f"--model_base_path={root}/counter", "--max_num_load_retries=0",
                       "--num_request_iterations_for_warmup=3", "--file_system_poll_wait_seconds=1") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with Client(server.target) as c:
        yield c


def counter(client, version):
    return values(client.predict("counter", version=version, signature="get_counter", inputs={}), "output")[0]


def test_no_warmup_file(server, client, root):
    assert counter(client, 1) == 0.0
    assert f"No warmup data file found at {root}/counter/1/assets.extra/tf_serving_warmup_requests" in server.log()


def test_records_replayed_n_times_before_available(server, client, root):
    counter_version(root, 2, [counter_log("incr_counter"), counter_log("incr_counter_by", 10.0)])
    wait_until(lambda: client.states("counter").get(2) == "AVAILABLE")
    assert counter(client, 2) == 33.0  # (1 + 10) x 3 iterations, all before the version served
    server.wait_for_log(rf"Finished reading warmup data for model at {root}/counter/2/assets.extra/"
                        r"tf_serving_warmup_requests. Number of warmup records read: 2. Elapsed time \(microseconds\)")


@pytest.mark.parametrize("version, records, raw, code, message", [
    (3, None, b"not a tfrecord file at all", 15, "Please verify your warmup data is in TFRecord format."),
    (4, [counter_log("nope")], None, 9, 'Serving signature key "nope" not found.'),
    (5, [b"\xff\xff\xff"], None, 3, "Failed to parse warmup record: "),
    (6, [prediction_log_pb2.PredictionLog(session_run_log={}).SerializeToString()], None, 12,
     "Unsupported log_type for warmup: 5"),
    (7, [counter_log("incr_counter")] * 1001, None, 3, "Number of warmup records exceeds the maximum (1000) at "),
    # record 1001 is refused before it runs: its bad signature is never looked up
    (8, [counter_log("incr_counter")] * 1000 + [counter_log("nope")], None, 3,
     "Number of warmup records exceeds the maximum (1000) at "),
])
def test_a_bad_warmup_file_fails_the_load(client, root, version, records, raw, code, message):
    counter_version(root, version, records, raw)
    wait_until(lambda: client.states("counter").get(version) == "END")
    status = {s.version: s.status for s in client.status("counter").model_version_status}[version]
    assert status.error_code == code and message in status.error_message, status
    shutil.rmtree(root / "counter" / str(version))


def test_a_fifo_as_the_warmup_file_fails_the_load_at_once(client, root):
    # TensorFlow would open it and wait for a writer: the load, and the version, blocked for good.
    path = counter_version(root, 9)
    os.makedirs(path / "assets.extra")
    os.mkfifo(path / "assets.extra" / "tf_serving_warmup_requests")
    wait_until(lambda: client.states("counter").get(9) == "END")
    status = {s.version: s.status for s in client.status("counter").model_version_status}[9]
    assert (status.error_code, status.error_message) == (3, f"Cannot read warmup data file {path}/assets.extra/"
                                                             "tf_serving_warmup_requests: not a regular file (a FIFO)")
    assert client.predict("counter", signature="get_counter", inputs={}).model_spec.version.value < 9  # serving on
    shutil.rmtree(path)


def test_warmup_replays_no_record_beyond_the_limit(tmp_path):
    """In-process, counting replays: 1001 records x 2 iterations run the first 1000 only, then refuse."""
    from server.util import status
    from server.servables import warmup

    class Counting:
        """A servable whose Predict is one run, counted."""
        calls = 0

        def predict_steps(self, request, name):
            yield [], []

        def run(self, feeds, fetch_names, timeout_ms=0):
            Counting.calls += 1
            return []

    counter_version(tmp_path, 1, [counter_log("incr_counter")] * 1001)
    with pytest.raises(status.ServingError, match=r"Number of warmup records exceeds the maximum \(1000\) at "):
        warmup.run_warmup(Counting(), str(tmp_path / "counter" / "1"), iterations=2)
    assert Counting.calls == 2000
    shutil.rmtree(tmp_path / "counter" / "1")
    counter_version(tmp_path, 1, [counter_log("incr_counter")] * 1000)
    assert warmup.run_warmup(Counting(), str(tmp_path / "counter" / "1"), iterations=2) == 1000
    assert Counting.calls == 4000


def test_warmup_can_be_turned_off(tmp_path):
    counter_version(tmp_path, 1, [counter_log("incr_counter")])
    with ServerProcess("--model_name=counter", f"--model_base_path={tmp_path}/counter",
                       "--enable_model_warmup=false") as server:
        client = Client(server.target)
        assert counter(client, 1) == 0.0
        client.close()


# -- request logging ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def logging_server(toy_models):
    with ServerProcess(f"--model_config_file={toy_models}/toy_labels.config",
                       "--allow_version_labels_for_unavailable_models") as s:
        yield s


def logging_config(toy_models, prefix, rate, kind="file"):
    return with_request_log(model_config(("Toy", f"{toy_models}/Toy", [1, 2]),
                                         ("MultiTask", f"{toy_models}/MultiTask")),
                            prefix, rate, kind)


def read_log(path):
    entries = []
    for _, data in tfrecord.read(str(path)):
        entries.append(prediction_log_pb2.PredictionLog.FromString(data))
    return entries


def test_requests_logged_whole_under_concurrent_clients(logging_server, toy_models, tmp_path):
    client = Client(logging_server.target)
    client.reload(logging_config(toy_models, tmp_path / "logs" / "toy", 1.0))
    errors = []

    def send(version):
        try:
            for _ in range(25):
                client.predict(version=version)
        except Exception as e:  # asserted below
            errors.append(e)

    threads = [threading.Thread(target=send, args=(1 + i % 2,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "MultiTask"
    request.model_spec.signature_name = "classify"
    example = request.input.example_list.examples.add()
    example.features.feature["age"].float_list.value.append(31.0)
    example.features.feature["income"].float_list.value.append(5.2)
    client.predictions.Classify(request, timeout=30)
    assert not errors
    entries = read_log(tmp_path / "logs" / "toy.tfrecord")
    predicts = [e for e in entries if e.WhichOneof("log_type") == "predict_log"]
    assert len(predicts) == 100
    assert {e.log_metadata.model_spec.version.value for e in predicts} == {1, 2}
    first = predicts[0]
    assert first.log_metadata.model_spec.name == "Toy" and first.log_metadata.sampling_config.sampling_rate == 1.0
    assert list(first.log_metadata.saved_model_tags) == ["serve"]
    assert first.predict_log.request.model_spec.name == "Toy"
    assert first.predict_log.response.outputs["output_1"].float_val
    classify = [e for e in entries if e.WhichOneof("log_type") == "classify_log"]
    assert len(classify) == 1 and len(classify[0].classify_log.response.result.classifications[0].classes) == 3
    client.close()


def test_sampling_rate_zero_logs_nothing(logging_server, toy_models, tmp_path):
    client = Client(logging_server.target)
    client.reload(logging_config(toy_models, tmp_path / "none", 0.0))
    for _ in range(20):
        client.predict()
    assert os.path.getsize(tmp_path / "none.tfrecord") == 0
    client.close()


def test_a_sampling_rate_between_0_and_1_logs_about_that_share_of_requests(logging_server, toy_models, tmp_path):
    """TF Serving samples each request on its own (sampler.h): at 0.2, 400 Predicts log about 80. The bounds
    are 5 standard deviations (8) below and 6 above, far from 0, 320 (the rate inverted) and 400."""
    client = Client(logging_server.target)
    client.reload(logging_config(toy_models, tmp_path / "fifth", 0.2))
    for _ in range(400):
        client.predict()
    entries = read_log(tmp_path / "fifth.tfrecord")
    assert 40 <= len(entries) <= 130, len(entries)
    assert all(e.log_metadata.sampling_config.sampling_rate == pytest.approx(0.2) for e in entries)
    client.close()


def test_unknown_collector_type_is_refused(logging_server, toy_models, tmp_path):
    client = Client(logging_server.target)
    assert rpc_error(client.reload, logging_config(toy_models, tmp_path / "x", 1.0, kind="kafka")) == (
        "NOT_FOUND", "Cannot find LogCollector::Factory for type: kafka")
    assert client.predict().model_spec.version.value == 2
    client.close()


def test_a_killed_server_loses_no_logged_record(toy_models, tmp_path):
    config_file = tmp_path / "logging.config"
    from google.protobuf import text_format
    config_file.write_text(text_format.MessageToString(logging_config(toy_models, tmp_path / "killed", 1.0)))
    server = ServerProcess(f"--model_config_file={config_file}")
    server.start()
    client = Client(server.target)
    for _ in range(30):
        client.predict()
    client.close()
    server.process.kill()  # SIGKILL: no flush, no clean-up
    server.process.wait()
    assert len(read_log(tmp_path / "killed.tfrecord")) == 30
    server.stop()


def test_truncated_log_is_read_up_to_the_damage(tmp_path):
    path = tmp_path / "log.tfrecord"
    entry = prediction_log_pb2.PredictionLog()
    entry.predict_log.request.model_spec.name = "Toy"
    tfrecord.append(str(path), [entry.SerializeToString()] * 3)
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    records = []
    with pytest.raises(tfrecord.CorruptRecord, match=r"truncated record at offset \d+"):
        for offset, _ in tfrecord.read(str(path)):
            records.append(offset)
    assert len(records) == 2
    assert struct.unpack("<Q", data[:8])[0] == len(entry.SerializeToString())
