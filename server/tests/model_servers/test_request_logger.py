"""The request logger in-process: which configs it takes, what a record holds, how often it samples.
(Through the real server: test_warmup_and_logs.py; a disk that fills: test_log_faults.py.)"""

import io
import math
import os
import random

import pytest
from testing.server_client import model_config, with_request_log
from testing.faults import FullDisk, open_files
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from server.model_servers import request_log
from tfsclient import tfrecord  # the project's TFRecord framing (the scripts' module)


def logger_for(tmp_path, rate, **fields):
    config = with_request_log(model_config(("Toy", tmp_path / "Toy")), tmp_path / "logs" / "toy", rate)
    for name, value in fields.items():
        setattr(config.model_config_list.config[0].logging_config.log_collector_config, name, value)
    logger = request_log.RequestLogger()
    logger.validate(config)
    logger.update(config)
    return logger


def predict(logger, times):
    request, response = predict_pb2.PredictRequest(), predict_pb2.PredictResponse()
    request.model_spec.name = "Toy"
    request.inputs["x"].float_val.append(1.5)
    response.outputs["y"].float_val.append(3.0)
    response.model_spec.name, response.model_spec.version.value = "Toy", 2
    for _ in range(times):
        logger.log("Predict", "Toy", request, response, response.model_spec)


def records(tmp_path):
    return [prediction_log_pb2.PredictionLog.FromString(data)
            for _, data in tfrecord.read(str(tmp_path / "logs" / "toy.tfrecord"))]


def test_a_logged_predict_is_the_request_and_response_with_their_metadata(tmp_path):
    logger = logger_for(tmp_path, 1.0)
    assert logger.logs("Toy") and not logger.logs("Other")
    predict(logger, 2)
    first, second = records(tmp_path)
    assert first == second
    assert first.log_metadata.model_spec.name == "Toy" and first.log_metadata.model_spec.version.value == 2
    assert first.log_metadata.sampling_config.sampling_rate == 1.0
    assert list(first.log_metadata.saved_model_tags) == ["serve"]
    assert list(first.predict_log.request.inputs["x"].float_val) == [1.5]
    assert list(first.predict_log.response.outputs["y"].float_val) == [3.0]


@pytest.mark.parametrize("rate, low, high", [(0.0, 0, 0), (0.01, 1, 60), (0.2, 300, 520), (0.9, 1700, 1900),
                                             (1.0, 2000, 2000)])
def test_each_request_is_sampled_on_its_own_at_the_configured_rate(tmp_path, rate, low, high):
    """2,000 Predicts: the count logged is within 5 standard deviations of 2,000 x rate."""
    logger = logger_for(tmp_path, rate)
    assert logger.logs("Toy") == (rate > 0)
    random.seed(27)
    draws = [random.random() for _ in range(2000)]
    random.seed(27)
    request, response = predict_pb2.PredictRequest(), predict_pb2.PredictResponse()
    for i in range(2000):
        request.model_spec.signature_name = str(i)  # which request each record is
        logger.log("Predict", "Toy", request, response, response.model_spec)
    logged = [int(r.predict_log.request.model_spec.signature_name) for r in records(tmp_path)]
    assert low <= len(logged) <= high, len(logged)
    assert abs(len(logged) - 2000 * rate) <= 5 * math.sqrt(2000 * rate * (1 - rate)) + 1e-9
    if 0 < rate < 1:  # one uniform draw a request, as TF Serving's sampler: not every 1/rate-th request
        assert logged == [i for i, draw in enumerate(draws) if draw < rate]


@pytest.mark.parametrize("rate", [-0.1, 1.01, math.nan])
def test_a_rate_outside_0_to_1_is_refused(tmp_path, rate):
    config = with_request_log(model_config(("Toy", tmp_path / "Toy")), tmp_path / "toy", rate)
    with pytest.raises(Exception) as caught:
        request_log.RequestLogger().validate(config)
    assert (caught.value.code.name, caught.value.message) == (
        "INVALID_ARGUMENT", f"Model Toy: sampling_rate must be in [0, 1], not {rate}")


def test_validate_creates_nothing_and_names_what_is_wrong(tmp_path):
    config = with_request_log(model_config(("Toy", tmp_path / "Toy")), tmp_path / "a" / "b" / "toy", 1.0)
    request_log.RequestLogger().validate(config)
    assert not (tmp_path / "a").exists()
    for kind, prefix, message in [
        ("kafka", tmp_path / "x", ("NOT_FOUND", "Cannot find LogCollector::Factory for type: kafka")),
        ("file", "", ("INVALID_ARGUMENT", "Model Toy: logging_config.log_collector_config.filename_prefix is empty")),
        ("file", tmp_path / "dir", ("INVALID_ARGUMENT", f"Cannot open request log {tmp_path}/dir.tfrecord: "
                                                        "Is a directory")),
        ("file", f"{tmp_path}/to\0y", ("INVALID_ARGUMENT", "Model Toy: logging_config.log_collector_config."
                                                             "filename_prefix holds a NUL byte")),  # was ValueError
    ]:
        (tmp_path / "dir.tfrecord").mkdir(exist_ok=True)
        bad = with_request_log(model_config(("Toy", tmp_path / "Toy")), prefix, 1.0, kind=kind)
        with pytest.raises(Exception) as caught:
            request_log.RequestLogger().validate(bad)
        assert (caught.value.code.name, caught.value.message) == message


def test_a_reload_without_logging_lets_go_of_the_file_and_logs_nothing(tmp_path):
    logger = logger_for(tmp_path, 1.0)
    path = str(tmp_path / "logs" / "toy.tfrecord")
    assert open_files(os.getpid(), path) == [path]
    predict(logger, 1)
    logger.update(model_config(("Toy", tmp_path / "Toy")))
    assert open_files(os.getpid(), path) == []
    assert not logger.logs("Toy")
    predict(logger, 3)
    assert len(records(tmp_path)) == 1


class Trickle(FullDisk):
    """A file whose every write takes at most 7 bytes (a pipe-like short write), or none when `stuck`."""

    stuck = False

    def write(self, b):
        if self.stuck:
            return 0
        return super().write(bytes(b)[:7])


def test_short_writes_still_append_whole_records_and_no_progress_is_a_full_disk(caplog):
    disk = Trickle(room=10_000)
    collector = request_log.FileCollector("/fake/trickle.tfrecord", disk)
    assert collector.write(b"first record") and collector.write(b"second")
    assert [data for _, data in tfrecord.read(io.BytesIO(bytes(disk.data)))] == [b"first record", b"second"]
    assert caplog.text == ""  # nothing was dropped: no "again" line for the first writes
    disk.stuck = True
    assert not collector.write(b"third")
    assert "Failed to write the request log /fake/trickle.tfrecord: No space left on device. 1 record(s) " \
           "dropped since the last report" in caplog.text
    disk.stuck = False
    assert collector.write(b"fourth")
    assert "Writing the request log /fake/trickle.tfrecord again; 1 record(s) were dropped while it failed." \
        in caplog.text
    assert [data for _, data in tfrecord.read(io.BytesIO(bytes(disk.data)))] == [b"first record", b"second",
                                                                               b"fourth"]
    collector.close()
    assert not collector.write(b"after close")  # a reload closed it while a request was running


# -- the file at the configured path: a FIFO or a device is refused; a deleted one is written again ----------

@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_log_path_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path, kind):
    path = tmp_path / "logs" / "toy.tfrecord"
    path.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(path)  # opened for writing, a FIFO with no reader blocks (the reload, and every later one)
    else:
        os.symlink("/dev/zero", path)
    what = "a FIFO" if kind == "fifo" else "a character device"
    config = with_request_log(model_config(("Toy", tmp_path / "Toy")), tmp_path / "logs" / "toy", 1.0)
    with pytest.raises(request_log.status.ServingError) as refused:
        request_log.RequestLogger().validate(config)
    assert refused.value.message == f"Cannot open request log {path}: not a regular file ({what})"
    # Swapped in between the validation and the commit: the open is refused too, at once.
    with pytest.raises(OSError, match=rf"not a regular file \({what}\)"):
        request_log.FileCollector.open(str(path))


@pytest.mark.parametrize("how", ["folder removed", "file removed", "file replaced"])
def test_a_log_removed_or_replaced_under_the_server_is_written_again_at_its_path(tmp_path, how, caplog):
    logger = logger_for(tmp_path, 1.0)
    predict(logger, 2)
    folder = tmp_path / "logs"
    if how == "folder removed":
        os.system(f"rm -rf {folder}")  # as an operator would
    elif how == "file removed":
        os.unlink(folder / "toy.tfrecord")
    else:
        os.rename(folder / "toy.tfrecord", folder / "toy.tfrecord.1")  # logrotate without copytruncate
        (folder / "toy.tfrecord").write_bytes(b"")
    predict(logger, 3)
    assert len(records(tmp_path)) == 3  # before, they went to the deleted file: lost without a word
    assert "was removed or replaced; writing to a new file at that path" in caplog.text
    assert open_files(os.getpid(), folder) == [str(folder / "toy.tfrecord")]  # the old one let go
    if how == "file replaced":
        assert len(list(tfrecord.read(str(folder / "toy.tfrecord.1")))) == 2


def test_a_log_path_that_cannot_be_opened_again_drops_and_reports_until_it_can(tmp_path, caplog):
    logger = logger_for(tmp_path, 1.0)
    folder = tmp_path / "logs"
    os.system(f"rm -rf {folder}")
    folder.write_text("a file where the folder was")  # the folder cannot be made again
    predict(logger, 3)
    assert "Failed to write the request log" in caplog.text and "toy.tfrecord: File exists. 1 record(s)" in caplog.text
    folder.unlink()
    predict(logger, 2)
    assert len(records(tmp_path)) == 2
    assert "Writing the request log" in caplog.text and "3 record(s) were dropped" in caplog.text
