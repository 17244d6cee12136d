"""Request logging under faults: a full disk, reloads that come and go, configs that fail validation."""

import errno
import logging
import os
import shutil
import subprocess

import pytest
from google.protobuf import text_format
from testing.server_client import Client, model_config, rpc_error
from tensorflow_serving.apis import prediction_log_pb2

from server.model_servers import request_log
from testing.faults import FullDisk, open_files
from testing.server import EXECUTABLE, ServerProcess

from tfsclient import tfrecord  # the project's TFRecord framing (the scripts' module)


def read_all(path):
    """Every record of a request log, as PredictionLogs; CorruptRecord if one does not read back."""
    return [prediction_log_pb2.PredictionLog.FromString(data) for _, data in tfrecord.read(str(path))]


def with_logging(config, prefix, models=None, rate=1.0):
    for model in config.model_config_list.config:
        if models is None or model.name in models:
            model.logging_config.log_collector_config.type = "file"
            model.logging_config.log_collector_config.filename_prefix = str(prefix)
            model.logging_config.sampling_config.sampling_rate = rate
    return config


# -- a full disk, in-process: a file whose write fails with ENOSPC after N bytes ------------------

def entry(i):
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = f"Toy{i:04d}"
    return log.SerializeToString()


def test_a_full_disk_drops_whole_records_and_logging_resumes(tmp_path, caplog):
    now = [100.0]
    disk = FullDisk(room=1000)
    collector = request_log.FileCollector("/fake/toy.tfrecord", disk, clock=lambda: now[0])
    record = len(tfrecord.frame(entry(0)))  # 1000 is not a multiple of it
    assert 1000 % record
    fits = 1000 // record
    caplog.set_level(logging.WARNING, logger="tensorflow_serving.core")
    written = [collector.write(entry(i)) for i in range(fits + 5)]
    assert written == [True] * fits + [False] * 5  # the first one that did not fit was written short
    assert len(disk.data) == fits * record  # ... and rolled back
    now[0] += 3.0
    assert not collector.write(entry(999))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["Failed to write the request log /fake/toy.tfrecord: No space left on device. "
                      "1 record(s) dropped since the last report; the file keeps whole records only."]
    now[0] += request_log.REPORT_INTERVAL
    assert not collector.write(entry(999))  # 10 s later: one more line, with the count since the last one
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "6 record(s) dropped since the last report" in errors[1]

    disk.room = 10 ** 6  # space freed
    assert collector.write(entry(2000))
    assert caplog.records[-1].getMessage() == (
        "Writing the request log /fake/toy.tfrecord again; 7 record(s) were dropped while it failed.")
    for i in range(2001, 2010):
        assert collector.write(entry(i))
    path = tmp_path / "toy.tfrecord"
    path.write_bytes(bytes(disk.data))
    names = [e.predict_log.request.model_spec.name for e in read_all(path)]
    assert names == [f"Toy{i:04d}" for i in range(fits)] + [f"Toy{i:04d}" for i in range(2000, 2010)]


def test_a_failed_rollback_is_retried_before_the_next_record(tmp_path):
    record = len(tfrecord.frame(entry(0)))
    disk = FullDisk(room=record + 10)
    truncate = disk.truncate
    failures = [OSError(errno.EIO, os.strerror(errno.EIO))]

    def flaky_truncate(size):
        if failures:
            raise failures.pop()
        return truncate(size)

    disk.truncate = flaky_truncate
    collector = request_log.FileCollector("/fake/toy.tfrecord", disk)
    assert collector.write(entry(0))
    assert not collector.write(entry(1))  # 10 bytes written, the rollback fails
    assert len(disk.data) == record + 10
    disk.room = 10 ** 6
    assert collector.write(entry(2))  # cuts the torn record off first
    path = tmp_path / "toy.tfrecord"
    path.write_bytes(bytes(disk.data))
    assert [e.predict_log.request.model_spec.name for e in read_all(path)] == ["Toy0000", "Toy0002"]


# -- a full disk, for real: the server logging to a 256 KB tmpfs -----------------------------------

@pytest.fixture
def small_tmpfs(tmp_path):
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {(result.stderr or result.stdout).strip()}")
    yield mount_point
    if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(path):
    """Write to `path` until the file system is full; return the bytes written."""
    size = 0
    with open(path, "wb", buffering=0) as f:
        for chunk in (65536, 4096, 512, 1):
            while True:
                try:
                    written = f.write(b"\0" * chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    break
                size += written
                if written < chunk:
                    break
    return size


def test_a_full_tmpfs_keeps_the_log_readable_and_the_server_serving(toy_models, small_tmpfs, tmp_path):
    config_file = tmp_path / "logging.config"
    config = with_logging(model_config(("Toy", f"{toy_models}/Toy")), small_tmpfs / "toy")
    config_file.write_text(text_format.MessageToString(config))
    log_file = small_tmpfs / "toy.tfrecord"
    with ServerProcess(f"--model_config_file={config_file}") as server:
        client = Client(server.target)
        client.predict()
        record = log_file.stat().st_size
        filler = small_tmpfs / "filler"
        size = fill(filler)
        os.truncate(filler, size - 2 * 4096 - 1000)  # about 9 KB free: a record will be cut short
        for _ in range((2 * 4096 + 1000 + 4096) // record + 20):  # more than fit
            client.predict()  # every one answered
        before = len(read_all(log_file))
        assert log_file.stat().st_size == before * record  # no partial record at the end

        os.unlink(filler)  # space returns
        for _ in range(20):
            client.predict()
        entries = read_all(log_file)  # every record reads back
        assert len(entries) == before + 20
        server.wait_for_log(r"Failed to write the request log .*toy.tfrecord: No space left on device\. "
                            r"\d+ record\(s\) dropped since the last report; the file keeps whole records only\.")
        server.wait_for_log(r"Writing the request log .*toy.tfrecord again; \d+ record\(s\) were dropped "
                            r"while it failed\.")
        assert all(e.predict_log.request.inputs and e.predict_log.response.outputs for e in entries)
        client.close()


# -- reloads: files opened at commit, closed when dropped; validation creates nothing ---------------

@pytest.fixture(scope="module")
def server(toy_models):
    with ServerProcess(f"--model_config_file={toy_models}/models.config", "--max_num_load_retries=0") as s:
        yield s


def test_reloads_close_the_logs_they_drop(server, toy_models, tmp_path):
    client = Client(server.target)
    pid = server.process.pid
    logs = tmp_path / "logs"
    counts = []
    for i in range(12):
        config = model_config(("Toy", f"{toy_models}/Toy"))
        if i % 3 != 2:  # two logging configs in turn, every third reload none
            with_logging(config, logs / f"toy{i % 2}")
        client.reload(config)
        client.predict()
        held = open_files(pid, logs)
        assert held == ([] if i % 3 == 2 else [str(logs / f"toy{i % 2}.tfrecord")]), (i, held)
        counts.append(len(os.listdir(f"/proc/{pid}/fd")))
    assert max(counts[3:]) - min(counts[3:]) <= 2, counts  # flat (gRPC may hold a descriptor more or less)
    assert len(read_all(logs / "toy0.tfrecord")) == 4 and len(read_all(logs / "toy1.tfrecord")) == 4
    client.reload(model_config(("Toy", f"{toy_models}/Toy")))
    client.close()


def test_a_config_that_fails_validation_creates_nothing(server, toy_models, tmp_path):
    client = Client(server.target)
    (tmp_path / "plain").write_text("a file, not a folder")
    config = model_config(("Toy", f"{toy_models}/Toy"), ("MultiTask", f"{toy_models}/MultiTask"))
    with_logging(config, tmp_path / "new" / "toy", models={"Toy"})
    with_logging(config, tmp_path / "plain" / "multi", models={"MultiTask"})
    assert rpc_error(client.reload, config) == (
        "INVALID_ARGUMENT", f"Cannot open request log {tmp_path}/plain/multi.tfrecord: "
                            f"{tmp_path}/plain is not a directory")
    assert not (tmp_path / "new").exists()
    assert open_files(server.process.pid, tmp_path) == []
    assert client.predict().model_spec.name == "Toy"


def test_a_reload_that_fails_to_load_creates_no_log(server, toy_models, tmp_path):
    client = Client(server.target)
    broken = tmp_path / "Broken"
    (broken / "1").mkdir(parents=True)  # a version folder with no SavedModel in it
    config = model_config(("Toy", f"{toy_models}/Toy"), ("Broken", broken))
    with_logging(config, tmp_path / "logs" / "toy")
    code, message = rpc_error(client.reload, config)
    assert code == "UNKNOWN" and message.startswith("1 model(s) did not become available: {{name: Broken version: 1")
    assert not (tmp_path / "logs").exists()
    assert client.predict().model_spec.name == "Toy"
    client.close()


def test_an_existing_log_that_is_not_writable_is_refused(server, toy_models, tmp_path):
    client = Client(server.target)
    (tmp_path / "toy.tfrecord").mkdir()
    config = with_logging(model_config(("Toy", f"{toy_models}/Toy")), tmp_path / "toy")
    assert rpc_error(client.reload, config) == (
        "INVALID_ARGUMENT", f"Cannot open request log {tmp_path}/toy.tfrecord: Is a directory")
    assert client.predict().model_spec.name == "Toy"
    shutil.rmtree(tmp_path / "toy.tfrecord")
    client.close()


# -- a FIFO or a device as the log file, a folder removed under the server ---------------------------

def test_a_fifo_as_the_log_file_is_refused_and_the_server_keeps_serving(server, toy_models, tmp_path):
    # Before, the reload never returned (opening a FIFO for writing waits for a reader), later reloads and polls
    # blocked, and SIGTERM left the process running.
    client = Client(server.target)
    os.mkfifo(tmp_path / "log.tfrecord")
    os.symlink("/dev/zero", tmp_path / "zero.tfrecord")
    for name, what in (("log", "a FIFO"), ("zero", "a character device")):
        config = with_logging(model_config(("Toy", f"{toy_models}/Toy")), tmp_path / name)
        assert rpc_error(client.reload, config, timeout=30) == (
            "INVALID_ARGUMENT", f"Cannot open request log {tmp_path}/{name}.tfrecord: not a regular file ({what})")
        assert client.predict().model_spec.name == "Toy"
    client.reload(with_logging(model_config(("Toy", f"{toy_models}/Toy")), tmp_path / "good"), timeout=30)
    client.predict()
    assert len(read_all(tmp_path / "good.tfrecord")) == 1
    client.reload(model_config(("Toy", f"{toy_models}/Toy")))
    client.close()


def test_a_fifo_as_the_log_file_at_start_up_is_one_line_and_exit_255(toy_models, tmp_path):
    os.mkfifo(tmp_path / "log.tfrecord")
    config = tmp_path / "models.config"
    config.write_text(text_format.MessageToString(with_logging(model_config(("Toy", f"{toy_models}/Toy")),
                                                               tmp_path / "log")))
    result = subprocess.run([EXECUTABLE, f"--model_config_file={config}", "--port=0", "--grpc_socket_path=" +
                             str(tmp_path / "grpc.sock")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 255, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == ("Failed to start server. Error: INVALID_ARGUMENT: Cannot open request "
                                              f"log {tmp_path}/log.tfrecord: not a regular file (a FIFO)")


def test_a_log_folder_removed_while_serving_is_made_again_and_logged_to(server, toy_models, tmp_path):
    # Before, every record after `rm -rf` went to the deleted file, lost without a word, even once the folder
    # came back.
    client = Client(server.target)
    logs = tmp_path / "logs"
    client.reload(with_logging(model_config(("Toy", f"{toy_models}/Toy")), logs / "toy"))
    client.predict()
    shutil.rmtree(logs)
    for _ in range(3):
        client.predict()
    assert len(read_all(logs / "toy.tfrecord")) == 3
    server.wait_for_log(rf"The request log {logs}/toy.tfrecord was removed or replaced; writing to a new file at "
                        "that path.")
    assert open_files(server.process.pid, tmp_path) == [str(logs / "toy.tfrecord")]
    client.reload(model_config(("Toy", f"{toy_models}/Toy")))
    client.close()


def test_a_base_path_with_a_nul_byte_is_refused_and_the_server_keeps_serving(server, toy_models):
    # Before: INTERNAL "ValueError: embedded null byte".
    client = Client(server.target)
    config = model_config(("Toy", f"{toy_models}/Toy"), ("Nul", f"{toy_models}/To\0y"))
    assert rpc_error(client.reload, config) == (
        "INVALID_ARGUMENT", f"Could not find base path {toy_models}/To\0y for servable Nul with error embedded null "
                            "byte")
    assert client.predict().model_spec.name == "Toy"
    client.close()

