"""grpcRequestLog.py: PredictionLog records appended as TFRecord, read back by us and by TensorFlow."""

import json
import os

import pytest
from script_helpers import run_script


def test_log_file_is_appended_and_read_back(run, tmp_path):
    log = tmp_path / "assets.extra" / "tf_serving_warmup_requests"
    log.parent.mkdir()
    first = run("grpcRequestLog.py", "-v", "1", "--log-file", str(log))
    assert (first.code, first.err) == (0, "")
    size = os.path.getsize(log)
    second = run("grpcRequestLog.py", "-m", "Toy_double", "-i", "input_1=[[1.0, 2.0]]", "--log-file", str(log))
    assert second.code == 0 and os.path.getsize(log) > size  # appended, never rewritten
    text = run("grpcRequestLog.py", "--read", str(log))
    assert text.code == 0 and text.err == ""
    assert text.out.count("predict_log {") == 2 and "record at offset 0" in text.out
    assert f"record at offset {size}" in text.out
    records = [json.loads(line)
               for line in run("grpcRequestLog.py", "--read", str(log), "--format", "json").out.splitlines()]
    assert [r["predict_log"]["request"]["model_spec"]["name"] for r in records] == ["Toy", "Toy_double"]
    assert records[0]["predict_log"]["response"]["model_spec"]["version"] == "1"


def test_tensorflow_reads_our_records(run, tmp_path):
    tf = pytest.importorskip("tensorflow")  # the oracle: skipped where TensorFlow is not installed
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")

    log = tmp_path / "requests.tfrecord"
    for version in ("1", "2"):
        assert run("grpcRequestLog.py", "-v", version, "--log-file", str(log)).code == 0
    versions = []
    for record in tf.data.TFRecordDataset(str(log)):
        entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        versions.append(entry.predict_log.response.model_spec.version.value)
    assert versions == [1, 2]


def test_we_read_tensorflows_records(tmp_path):
    tf = pytest.importorskip("tensorflow")  # the oracle: skipped where TensorFlow is not installed
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")

    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = "Toy"
    log.predict_log.request.inputs["input_1"].CopyFrom(tf.make_tensor_proto([[1.0, 2.0]]))
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(log.SerializeToString())
        writer.write(log.SerializeToString())
    result = run_script("grpcRequestLog.py", "--read", path)
    assert result.code == 0 and result.out.count('name: "Toy"') == 2


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-3], "truncated record at offset "),
    (lambda data: data[:20] + b"X" + data[21:], "corrupt record data at offset 0 (CRC mismatch)"),
    (lambda data: b"\xff" + data[1:], "corrupt record length at offset 0 (CRC mismatch)"),
])
def test_corrupt_records_are_reported_with_their_offset(run, tmp_path, damage, message):
    path = tmp_path / "log"
    assert run("grpcRequestLog.py", "--log-file", str(path)).code == 0
    path.write_bytes(damage(path.read_bytes()))
    result = run("grpcRequestLog.py", "--read", str(path))
    assert result.code == 2 and result.out == ""
    assert result.err.startswith(f"grpcRequestLog.py: error: {path}: ") and message in result.err
    assert len(result.err.splitlines()) == 1


def test_unwritable_log_file_is_a_clear_error(run, tmp_path):
    result = run("grpcRequestLog.py", "--log-file", str(tmp_path / "no" / "such" / "dir" / "log"))
    assert result.code == 2 and result.out == ""
    assert result.err == (f"grpcRequestLog.py: error: --log-file: cannot write {tmp_path}/no/such/dir/log: "
                          f"the folder {tmp_path}/no/such/dir does not exist\n")  # (before the Predict is sent)
