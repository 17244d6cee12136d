"""The production loop: records written by the scripts warm a model up on its next load."""

import os
import shutil

import numpy as np
import pytest
from script_helpers import run_script

from testing.server import ServerProcess


@pytest.fixture(scope="module")
def models(toy_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    shutil.copytree(os.path.join(toy_models, "Toy"), root / "Toy", ignore=shutil.ignore_patterns("3"))
    shutil.copytree(os.path.join(toy_models, "MultiTask"), root / "MultiTask")
    return root


@pytest.fixture(scope="module")
def server(models):
    config = models / "one.config"
    config.write_text(f"model_config_list {{ config {{ name: 'Toy' base_path: '{models}/Toy' model_platform: "
                      "'tensorflow' model_version_policy { specific { versions: 1 } } } }")
    with ServerProcess(f"--model_config_file={config}") as s:
        yield s


def test_request_log_records_warm_up_the_next_version(server, models):
    warmup = models / "Toy" / "2" / "assets.extra" / "tf_serving_warmup_requests"
    warmup.parent.mkdir()
    for args in (("-v", "1"), ("-v", "1", "-i", "input_1=[[5.0, 6.0]]")):
        result = run_script("grpcRequestLog.py", *args, "--log-file", str(warmup), server=server.target)
        assert result.code == 0, result
    result = run_script("grpcReloadModel.py", "-m", "Toy", "--base-path", str(models / "Toy"), "--versions", "1,2",
                        server=server.target)
    assert result.out == "model Toy reloaded successfully\n"
    server.wait_for_log(rf"Finished reading warmup data for model at {models}/Toy/2/assets.extra/"
                        r"tf_serving_warmup_requests. Number of warmup records read: 2\.")
    status = run_script("grpcModelStatus.py", "-v", "2", "--wait", "30", server=server.target)
    assert status.code == 0 and "state: AVAILABLE" in status.out


def test_warmup_file_from_many_inputs(tmp_path):
    np.savez(tmp_path / "rows.npz", input_1=np.arange(10, dtype=np.float32).reshape(5, 2))
    out = tmp_path / "tf_serving_warmup_requests"
    result = run_script("grpcWarmup.py", "-o", str(out), "--inputs", str(tmp_path / "rows.npz"), "--batch", "2")
    assert (result.code, result.out, result.err) == (0, f"appended 3 warmup records to {out} (3 in all)\n", "")
    read = run_script("grpcRequestLog.py", "--read", str(out))
    assert read.out.count("predict_log {") == 3  # rows 0-1, 2-3, 4
    assert read.out.count("size: 2\n") == 5 and read.out.count("size: 1\n") == 1
    again = run_script("grpcWarmup.py", "-o", str(out), "-m", "MultiTask", "--task", "classify:classify",
                       "--task", "regress:regress", "-e", "age=31.0,income=5.2", "-e", "age=45.0,income=1.0")
    assert again.out == f"appended 2 warmup records to {out} (5 in all)\n"
    sampled = run_script("grpcWarmup.py", "-o", str(tmp_path / "sampled"), "--from-log", str(out), "--sample", "2")
    assert sampled.out.startswith("appended 2 warmup records")


def test_warmup_files_from_the_scripts_warm_a_model(server, models, tmp_path):
    warmup = models / "MultiTask" / "1" / "assets.extra" / "tf_serving_warmup_requests"
    warmup.parent.mkdir()
    assert run_script("grpcWarmup.py", "-o", str(warmup), "-m", "MultiTask", "--task", "classify:classify",
                      "--task", "regress:regress", "--examples", str(_csv(tmp_path))).code == 0
    assert run_script("grpcWarmup.py", "-o", str(warmup), "-m", "MultiTask", "--task", "regress:regress",
                      "-e", "age=31.0,income=5.2").code == 0
    config = tmp_path / "both.config"
    config.write_text(f"model_config_list {{ config {{ name: 'Toy' base_path: '{models}/Toy' model_platform: "
                      f"'tensorflow' }} config {{ name: 'MultiTask' base_path: '{models}/MultiTask' "
                      "model_platform: 'tensorflow' } }")
    result = run_script("grpcReloadModel.py", "-c", str(config), server=server.target)
    assert result.code == 0, result
    server.wait_for_log(r"MultiTask/1/assets.extra/tf_serving_warmup_requests. Number of warmup records read: 4\.")


def _csv(tmp_path):
    path = tmp_path / "examples.csv"
    path.write_text("age,income\n31.0,5.2\n45.0,1.0\n20.0,3.0\n")
    return path


@pytest.mark.parametrize("args, message", [
    (("--inputs", "/nope.npz"), "grpcWarmup.py: error: -i @/nope.npz: file not found: /nope.npz\n"),
    (("--task", "regress"), "grpcWarmup.py: error: no examples: give --example 'name=value,...' or --examples FILE\n"),
    (("--from-log", "/nope"), "grpcWarmup.py: error: cannot read /nope: No such file or directory\n"),
    (("--inputs", "x.npz", "--batch", "0"), "grpcWarmup.py: error: --batch must be >= 1\n"),
])
def test_bad_warmup_input(tmp_path, args, message):
    result = run_script("grpcWarmup.py", "-o", str(tmp_path / "w"), *args)
    assert (result.code, result.out, result.err) == (2, "", message)
    assert not (tmp_path / "w").exists()


def test_more_than_tf_serving_loads_is_refused(tmp_path):
    np.savez(tmp_path / "many.npz", input_1=np.zeros((1001, 2), np.float32))
    result = run_script("grpcWarmup.py", "-o", str(tmp_path / "w"), "--inputs", str(tmp_path / "many.npz"))
    assert result.code == 2 and "would hold 1001 records; TF Serving loads at most 1000" in result.err
    ok = run_script("grpcWarmup.py", "-o", str(tmp_path / "w"), "--inputs", str(tmp_path / "many.npz"),
                    "--sample", "1000")
    assert ok.out.endswith("(1000 in all)\n")


def test_json_warmup_inputs_follow_the_signature_and_warm_the_model(server, models, tmp_path):
    # JSON integers for Toy's float32 input: typed by the signature the server gives, as grpcRequest.py sends them.
    # Before, they went in as int32, and TF Serving then refused to load the model (its warmup failed).
    rows = tmp_path / "rows.json"
    rows.write_text('{"input_1": [[1, 2], [1, 3]]}')
    # The version is made whole aside, then moved in (a server that polls for new versions may load it at once).
    shutil.copytree(models / "Toy" / "1", tmp_path / "7", ignore=shutil.ignore_patterns("assets.extra"))
    warmup = tmp_path / "7" / "assets.extra" / "tf_serving_warmup_requests"
    warmup.parent.mkdir()
    written = run_script("grpcWarmup.py", "-o", str(warmup), "-m", "Toy", "--inputs", str(rows),
                         "--batch", "2", server=server.target)
    assert written.code == 0, written
    read = run_script("grpcRequestLog.py", "--read", str(warmup))
    assert read.out.count("dtype: DT_FLOAT") == read.out.count("dtype:") >= 1, read.out
    os.rename(tmp_path / "7", models / "Toy" / "7")
    result = run_script("grpcReloadModel.py", "-m", "Toy", "--base-path", str(models / "Toy"), "--versions", "1,7",
                        server=server.target)
    assert result.code == 0, result
    server.wait_for_log(rf"{models}/Toy/7/assets.extra/tf_serving_warmup_requests. Number of warmup records read: 1\.")


def test_json_warmup_inputs_without_a_server_say_why(tmp_path):
    rows = tmp_path / "rows.json"
    rows.write_text('{"input_1": [[1, 2]]}')
    result = run_script("grpcWarmup.py", "-o", str(tmp_path / "w"), "--inputs", str(rows), "-s", "localhost:1",
                        "-t", "5")
    assert (result.code, result.out) == (1, "") and len(result.err.splitlines()) == 1, result
    assert "JSON values are typed by the model's signature, which the server did not give" in result.err
    assert "save the inputs with their dtypes in a .npz" in result.err and not (tmp_path / "w").exists()
