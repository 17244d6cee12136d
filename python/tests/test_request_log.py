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


def _log_file(path, count):
    from tfsclient import codec, protos, tfrecord

    log = protos.prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = "Toy"
    log.predict_log.request.inputs["input_1"].CopyFrom(codec.make_tensor_proto([[1.0, 2.0], [1.0, 3.0]]))
    with open(path, "wb") as f:
        f.write(tfrecord.frame(log.SerializeToString()) * count)
    return path


def _peak_rss_mb(*args):
    """grpcRequestLog's peak RSS (MB), stdout to /dev/null."""
    import subprocess
    import sys

    from script_helpers import PYTHON_DIR

    code = ("import atexit, resource, runpy, sys\n"
            "atexit.register(lambda: print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
            "sys.argv = ['grpcRequestLog.py', *sys.argv[1:]]\n"
            "runpy.run_path('grpcRequestLog.py', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=PYTHON_DIR, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    return int(done.stderr.split()[-1]) / 1024


def test_reading_a_log_stays_flat_in_memory(tmp_path):
    # Before, the one message parsed again for every record kept each record's memory (upb's arena): 83 MB at 20k
    # records, 177 MB at 80k.
    small = _log_file(tmp_path / "small.tfrecord", 2_000)
    large = _log_file(tmp_path / "large.tfrecord", 40_000)
    grown = _peak_rss_mb("--read", str(large)) - _peak_rss_mb("--read", str(small))
    assert grown < 5, f"{grown:.0f} MB more for 20x the records"  # (before: 25 MB more)


def test_the_file_limit_holds_while_the_log_grows(tmp_path):
    # A log being written while it is read: the limit counts the bytes read, not the size at open. Before,
    # --max-file-size 1K let 479 MB through in 283 s. The reader is held mid-file by its own stdout (a pipe not
    # read yet) while the file grows past the limit; then its output is drained.
    import subprocess
    import sys

    from script_helpers import PYTHON_DIR
    from tfsclient import tfrecord

    path = _log_file(tmp_path / "growing.tfrecord", 1_000)  # ~100 KB of records, ~400 KB of text
    record = next(tfrecord.read(str(path)))[1]
    reader = subprocess.Popen([sys.executable, "grpcRequestLog.py", "--read", str(path), "--max-file-size", "200K"],
                              cwd=PYTHON_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert reader.stdout.readline().startswith(b"*")  # its first record's banner: the file is open, and read
        with open(path, "ab") as f:  # grows to ~10 MB, past the limit, while the reader waits on its stdout
            f.write(tfrecord.frame(record) * 100_000)
        out, err = reader.communicate(timeout=120)
    finally:
        reader.kill()
    assert reader.returncode == 2, err[-300:]
    assert b"more than the 204800 a TFRecord file may be" in err and len(err.splitlines()) == 1, err
