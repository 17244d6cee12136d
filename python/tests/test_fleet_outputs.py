"""--fleet for the scripts that compare answers: grpcRequest (outputs within --atol), grpcRequestLog (and its
--log-file), grpcMultiTask (classes, scores, regression values), grpcMetadata (versions and signatures), and
grpcWarmup (which sends nothing: a usage error). Against the three real servers of the `fleet` fixture: `one`
serves Toy version 1 only, so the latest Toy there is 1 (other outputs) and it has no MultiTask; `down` is an
address where nothing listens; a stopped process is a slow replica. Only the resolver is faked (fake_dns)."""

import json
import os
import signal
import time

import numpy as np
import pytest
from fleet_support import fake_dns
from script_helpers import run_script

import grpcMetadata
import grpcMultiTask
from tfsclient import compare, protos

V1 = "output_1=[[10.805429], [14.010123]]"  # Toy version 1 on the guide's input
V2 = "output_1=[[0.999035], [0.999735]]"  # Toy version 2
V1_VS_V2 = ("output 'output_1': largest |difference| 13.0104 at [1, 0] (14.010123, not 0.99973494); "
            "2 of 2 values beyond 1e-05")


def lines(text):
    return text.splitlines()


# grpcRequest.py --fleet

def test_request_flags_the_replica_with_other_outputs_and_the_one_that_is_down(fleet):
    full, one, down = fleet.target("full"), fleet.target("one"), fleet.down
    target = fleet.target("full", "one", "down")
    result = run_script("grpcRequest.py", "--fleet", server=target)
    assert result.code == 1, result
    width = max(len(full), len(one), len(down))
    refused = f"cannot reach TF Serving at {down} (connection refused): is the server running?"
    assert lines(result.out) == [
        f"{full:<{width}}  version 2: {V2}",
        f"{one:<{width}}  version 1: {V1}",
        f"{'':<{width}}  DIFFERS from {full}: {V1_VS_V2}",
        f"{down:<{width}}  FAILED: {refused}",
        f"fleet {target}: 3 replicas: 1 agree, 1 differ ({one}), 1 failed ({down})",
    ]
    assert lines(result.err) == [f"grpcRequest.py: error: 1 of 3 replicas failed ({down}), the first with: {refused}; "
                                 f"1 of 3 differs from {full} ({one})"]


def test_request_of_one_version_agrees_everywhere(fleet):
    target = fleet.target("full", "health", "one")
    result = run_script("grpcRequest.py", "--fleet", "-v", "1", "--atol", "0", server=target)
    assert result.code == 0, result
    assert [line.split(None, 1)[1] for line in lines(result.out)[:3]] == [f"version 1: {V1}"] * 3
    assert lines(result.out)[3] == f"fleet {target}: 3 replicas, all answered and agree"
    assert result.err == ""


def test_atol_is_the_tolerance_between_replicas(fleet):
    target = fleet.target("full", "one")  # the outputs differ by 13.0104 at most
    loose = run_script("grpcRequest.py", "--fleet", "--atol", "13.1", server=target)
    assert loose.code == 0, loose
    assert lines(loose.out)[-1] == f"fleet {target}: 2 replicas, all answered and agree"
    tight = run_script("grpcRequest.py", "--fleet", "--atol", "13", server=target)
    assert tight.code == 1, tight
    assert ("largest |difference| 13.0104 at [1, 0] (14.010123, not 0.99973494); 1 of 2 values beyond 13"
            in tight.out)


def test_request_json_is_keyed_by_address(fleet):
    full, one, down = fleet.target("full"), fleet.target("one"), fleet.down
    result = run_script("grpcRequest.py", "--fleet", "--values", "--format", "json",
                        server=fleet.target("full", "one", "down"))
    assert result.code == 1, result
    document = json.loads(result.out)
    replicas = document["replicas"]
    assert list(replicas) == [full, one, down]
    assert replicas[full] == {"ok": True, "agrees": True,
                              "result": {"output_1": [[0.9990350008010864], [0.9997349381446838]]}}
    assert replicas[one]["agrees"] is False and replicas[one]["differences"] == V1_VS_V2
    assert replicas[one]["result"] == {"output_1": [[10.805429458618164], [14.010123252868652]]}
    assert replicas[down]["ok"] is False and replicas[down]["error"]
    assert document["summary"] == {"replicas": 3, "reference": full, "agree": [full], "differ": [one],
                                   "failed": [down]}
    whole = json.loads(run_script("grpcRequest.py", "--fleet", "--format", "json", server=full).out)
    response = whole["replicas"][full]["result"]  # without --values: the PredictResponse, as without --fleet
    assert response["model_spec"]["version"] == "2" and response["outputs"]["output_1"]["dtype"] == "DT_FLOAT"


def test_a_slow_replica_fails_at_the_deadline_and_the_others_are_compared(fleet):
    full, one = fleet.target("full"), fleet.target("one")
    os.kill(fleet.one.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = run_script("grpcRequest.py", "--fleet", "-t", "2", server=fleet.target("full", "health", "one"))
        took = time.monotonic() - started
    finally:
        os.kill(fleet.one.process.pid, signal.SIGCONT)
    assert result.code == 1, result
    assert f"{one}  FAILED: no answer from TF Serving at {one} within 2s (raise it with --timeout)" in result.out
    assert f"{full}  version 2: {V2}" in result.out
    assert "DIFFERS" not in result.out
    assert lines(result.out)[-1].endswith(f"3 replicas: 2 agree, 1 failed ({one})")
    assert took < 2 + 3


def test_a_name_that_resolves_to_several_addresses(fleet):
    port = fleet.full.port  # every 127/8 address is this machine, and the server listens on all of them
    env = fake_dns({"tfs-headless.test": ["127.0.0.2", "127.0.0.1"]})
    result = run_script("grpcRequest.py", "--fleet", "-i", "input_1=[[1.0, 2.0]]", "-m", "Toy_double",
                        server=f"dns:///tfs-headless.test:{port}", env=env)
    assert result.code == 0, result
    assert lines(result.out) == [f"127.0.0.1:{port}  version 1: output_1=[[6.803017]]",
                                 f"127.0.0.2:{port}  version 1: output_1=[[6.803017]]",
                                 f"fleet dns:///tfs-headless.test:{port}: 2 replicas, all answered and agree"]


@pytest.mark.parametrize("args, message", [
    (["--atol", "1"], "grpcRequest.py: error: --atol is the tolerance between replicas: it goes with --fleet"),
    (["--fleet", "--atol", "-1"], "grpcRequest.py: error: argument --atol: the tolerance must be a finite number "
                                  ">= 0, not -1"),
    (["--fleet", "--atol", "nan"], "grpcRequest.py: error: argument --atol: the tolerance must be a finite number "
                                   ">= 0, not nan"),
    (["--fleet", "-i", "input_2=[[1.0, 2.0]]"], "grpcRequest.py: error: model Toy has no input 'input_2'; its "
                                               "inputs: input_1"),
])
def test_request_bad_input_is_one_usage_error(fleet, args, message):
    result = run_script("grpcRequest.py", *args, server=fleet.target("full", "health"))
    assert (result.code, result.out, lines(result.err)[-1]) == (2, "", message), result


# grpcRequestLog.py --fleet

def test_request_log_compares_and_logs_one_record_per_replica_that_answered(fleet, tmp_path):
    log = tmp_path / "requests.tfrecord"
    one = fleet.target("one")
    result = run_script("grpcRequestLog.py", "--fleet", "--log-file", str(log),
                        server=fleet.target("one", "down", "full"))
    assert result.code == 1, result
    assert lines(result.out)[0].split(None, 1)[1] == f"version 1: {V1}"
    assert "FAILED" in lines(result.out)[1]
    assert lines(result.out)[2].split(None, 1)[1] == f"version 2: {V2}"
    assert lines(result.out)[3].strip() == (f"DIFFERS from {one}: output 'output_1': largest |difference| "
                                                      "13.0104 at [1, 0] (0.99973494, not 14.010123); 2 of 2 "
                                                      "values beyond 1e-05")
    read = run_script("grpcRequestLog.py", "--read", str(log), "--format", "json")
    assert read.code == 0, read
    records = [json.loads(line) for line in lines(read.out)]
    assert [r["predict_log"]["response"]["model_spec"]["version"] for r in records] == ["1", "2"]  # one, full
    assert all(r["predict_log"]["request"]["output_filter"] == ["output_1"] for r in records)


def test_request_log_json_has_each_replicas_request_and_response(fleet):
    target = fleet.target("full", "one")
    result = run_script("grpcRequestLog.py", "--fleet", "-v", "1", "--format", "json", server=target)
    assert result.code == 0, result
    replicas = json.loads(result.out)["replicas"]
    for address in (fleet.target("full"), fleet.target("one")):
        entry = replicas[address]
        assert entry["ok"] and entry["agrees"]
        assert entry["result"]["request"]["model_spec"] == {"name": "Toy", "version": "1",
                                                            "signature_name": "serving_default"}
        assert entry["result"]["response"]["outputs"]["output_1"]["float_val"] == [10.805429, 14.010123]


def test_request_log_read_with_fleet_is_a_usage_error(fleet, tmp_path):
    log = tmp_path / "empty.tfrecord"
    log.write_bytes(b"")
    result = run_script("grpcRequestLog.py", "--read", str(log), "--fleet", server=fleet.target("full", "one"))
    assert (result.code, result.out) == (2, ""), result
    assert lines(result.err) == ["grpcRequestLog.py: error: --read prints a file and sends nothing: it does not go "
                                 "with --fleet"]


# grpcMultiTask.py --fleet

TASKS = ["-m", "MultiTask", "--task", "classify:classify", "--task", "regress:regress",
         "-e", "age=31.0,income=5.2", "-e", "age=45.0,income=1.0"]


def test_multitask_on_replicas_that_agree_and_one_without_the_model(fleet):
    full, health, one = fleet.target("full"), fleet.target("health"), fleet.target("one")
    result = run_script("grpcMultiTask.py", "--fleet", *TASKS, server=fleet.target("full", "health", "one"))
    assert result.code == 1, result
    table = ["example 0: classify:classify low=0.0289571 medium=0.69285 high=0.278193  regress:regress 2.05",
             "example 1: classify:classify low=0.879477 medium=0.119024 high=0.00149829  regress:regress 7.375"]
    assert lines(result.out) == [f"== {full} ==", *table, f"== {health} ==", *table,
                                 f"{one}  FAILED: NOT_FOUND: Servable not found for request: Latest(MultiTask)",
                                 f"fleet {fleet.target('full', 'health', 'one')}: 3 replicas: 2 agree, 1 failed "
                                 f"({one})"]
    assert lines(result.err) == [f"grpcMultiTask.py: error: 1 of 3 replicas failed ({one}), the first with: "
                                 "NOT_FOUND: Servable not found for request: Latest(MultiTask)"]
    agree = run_script("grpcMultiTask.py", "--fleet", *TASKS, "--format", "json", server=fleet.target("full", "health"))
    assert agree.code == 0, agree
    replicas = json.loads(agree.out)["replicas"]
    assert [r["result"]["results"][1]["regression_result"]["regressions"] for r in replicas.values()] == \
        [[{"value": 2.05}, {"value": 7.375}]] * 2


def test_multitask_bad_task_is_one_usage_error(fleet):
    result = run_script("grpcMultiTask.py", "--fleet", "--task", "cluster", "-e", "age=1",
                        server=fleet.target("full", "one"))
    assert (result.code, result.out) == (2, ""), result
    assert lines(result.err) == ["grpcMultiTask.py: error: --task wants classify[:SIGNATURE] or regress[:SIGNATURE], "
                                 "not 'cluster'"]


def classification(rows):
    result = protos.classification_pb2.ClassificationResult()
    for row in rows:
        classes = result.classifications.add()
        for label, score in row:
            classes.classes.add(label=label, score=score)
    return result


def regression(values):
    result = protos.regression_pb2.RegressionResult()
    for value in values:
        result.regressions.add(value=value)
    return result


def test_multitask_differences_name_the_task_the_example_and_the_class():
    view = grpcMultiTask.TaskView(1e-5)

    def answer(rows, values):
        return compare.Answer(None, grpcMultiTask.result_arrays([("classify", "c", classification(rows)),
                                                                 ("regress", "", regression(values))]))

    reference = answer([[("low", 0.25), ("high", 0.75)], [("low", 0.5), ("high", 0.5)]], [2.05, 7.375])
    assert view.differences(reference, answer([[("low", 0.25), ("high", 0.75)], [("low", 0.5), ("high", 0.5)]],
                                              [2.05, 7.375])) is None
    assert view.differences(reference, answer([[("low", 0.25), ("high", 0.75)], [("low", 0.5), ("high", 0.5)]],
                                              [2.05, 7.375005])) is None  # within 1e-5
    assert view.differences(reference, answer([[("low", 0.25), ("mid", 0.75)], [("low", 0.5), ("high", 0.625)]],
                                              [2.05, 8.0])).split("\n") == [
        "classify:c classes: 1 of 4 values differ, the first at [0, 1]: 'mid', not 'high'",
        "classify:c scores: largest |difference| 0.125 at [1, 1] (0.625, not 0.5); 1 of 4 values beyond 1e-05",
        "regress values: largest |difference| 0.625 at [1] (8, not 7.375); 1 of 2 values beyond 1e-05",
    ]
    assert view.differences(reference, answer([[("low", 0.25)], [("low", 0.5)]], [2.05])).split("\n") == [
        "classify:c classes: shape (2, 1), not (2, 2)",
        "classify:c scores: shape (2, 1), not (2, 2)",
        "regress values: shape (1,), not (2,)",
    ]


# grpcMetadata.py --fleet

def test_metadata_flags_the_replica_on_another_version(fleet):
    full, health, one = fleet.target("full"), fleet.target("health"), fleet.target("one")
    target = fleet.target("full", "health", "one")
    result = run_script("grpcMetadata.py", "--fleet", server=target)
    assert result.code == 1, result
    assert lines(result.out) == [f"{full}  version 2: serving_default",
                                 f"{health}  version 2: serving_default",
                                 f"{one}  version 1: serving_default",
                                 f"{'':<{len(one)}}  DIFFERS from {full}: version 1, not 2",
                                 f"fleet {target}: 3 replicas: 2 agree, 1 differ ({one})"]
    assert lines(result.err) == [f"grpcMetadata.py: error: 1 of 3 differs from {full} ({one})"]
    same = run_script("grpcMetadata.py", "--fleet", "-v", "1", server=target)
    assert same.code == 0, same
    assert lines(same.out)[-1] == f"fleet {target}: 3 replicas, all answered and agree"


def test_metadata_summary_and_json_per_replica(fleet):
    full, one, down = fleet.target("full"), fleet.target("one"), fleet.down
    result = run_script("grpcMetadata.py", "--fleet", "-m", "MultiTask", server=fleet.target("full", "one"))
    assert result.code == 1, result
    assert lines(result.out)[0] == f"{full}  version 1: classify, regress, serving_default"
    assert lines(result.out)[1] == f"{one}  FAILED: NOT_FOUND: Servable not found for request: Latest(MultiTask)"
    table = run_script("grpcMetadata.py", "--fleet", "--summary", "-v", "1", server=fleet.target("full", "one"))
    assert table.code == 0, table
    single = run_script("grpcMetadata.py", "--summary", "-v", "1", server=full)
    assert table.out == f"== {full} ==\n{single.out}== {one} ==\n{single.out}" \
                        f"fleet {fleet.target('full', 'one')}: 2 replicas, all answered and agree\n"
    document = json.loads(run_script("grpcMetadata.py", "--fleet", "--format", "json",
                                     server=fleet.target("full", "one", "down")).out)
    assert list(document["replicas"]) == [full, one, down]
    signatures = document["replicas"][full]["result"]["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"]["input_1"]["dtype"] == "DT_FLOAT"
    assert document["replicas"][one]["differences"] == "version 1, not 2"
    assert document["summary"]["failed"] == [down]


def test_metadata_raw_with_fleet_is_a_usage_error(fleet):
    result = run_script("grpcMetadata.py", "--fleet", "--raw", server=fleet.target("full", "one"))
    assert (result.code, result.out) == (2, ""), result
    assert lines(result.err) == ["grpcMetadata.py: error: --raw prints one server's response as it comes; with "
                                 "--fleet, each replica's is in --format json"]


def metadata(version, signatures):
    """(GetModelMetadataResponse, SignatureDefMap) as MetadataView.call returns them."""
    response = protos.get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = "Toy"
    response.model_spec.version.value = version
    holder = protos.get_model_metadata_pb2.SignatureDefMap()
    types = protos.types_pb2.DataType
    for name, (method, inputs, outputs) in signatures.items():
        signature = holder.signature_def[name]
        signature.method_name = method
        for tensors, given in ((signature.inputs, inputs), (signature.outputs, outputs)):
            for alias, (dtype, dims) in given.items():
                tensors[alias].name = f"{alias}:0"
                tensors[alias].dtype = types.Value(dtype)
                for size in dims:
                    tensors[alias].tensor_shape.dim.add(size=size)
    response.metadata["signature_def"].Pack(holder)
    return response, holder


def test_metadata_differences_name_the_signature_and_the_tensor():
    predict = "tensorflow/serving/predict"
    toy = {"serving_default": (predict, {"input_1": ("DT_FLOAT", (-1, 2))}, {"output_1": ("DT_FLOAT", (-1, 1))})}
    view = grpcMetadata.MetadataView()
    assert view.differences(metadata(2, toy), metadata(2, toy)) is None
    renamed = metadata(2, toy)
    renamed[1].signature_def["serving_default"].inputs["input_1"].name = "other:0"  # tensor names are not compared
    assert view.differences(metadata(2, toy), renamed) is None
    other = {"serving_default": ("tensorflow/serving/classify", {"input_1": ("DT_DOUBLE", (-1, 2))},
                                 {"output_1": ("DT_FLOAT", (-1, 3)), "scores": ("DT_FLOAT", (-1,))}),
             "extra": (predict, {}, {})}
    assert view.differences(metadata(2, toy), metadata(3, other)).split("\n") == [
        "version 3, not 2",
        "signature 'extra' too",
        "signature 'serving_default': method tensorflow/serving/classify, not tensorflow/serving/predict",
        "signature 'serving_default': input 'input_1' double (-1, 2), not float (-1, 2)",
        "signature 'serving_default': output 'scores' too",
        "signature 'serving_default': output 'output_1' float (-1, 3), not float (-1, 1)",
    ]
    assert view.differences(metadata(3, other), metadata(2, {})).split("\n") == [
        "version 2, not 3", "no signature 'extra'", "no signature 'serving_default'"]


# grpcWarmup.py --fleet

def test_warmup_with_fleet_is_a_usage_error(fleet, tmp_path):
    inputs = tmp_path / "rows.json"
    inputs.write_text('{"input_1": [[1.0, 2.0]]}')
    out = tmp_path / "warmup"
    result = run_script("grpcWarmup.py", "--fleet", "-o", str(out), "--inputs", str(inputs),
                        server=fleet.target("full", "one"))
    assert (result.code, result.out) == (2, ""), result
    assert lines(result.err) == ["grpcWarmup.py: error: --fleet asks every replica, but grpcWarmup.py writes a file "
                                 "and sends nothing"]
    assert not out.exists()


# tfsclient/compare.py

@pytest.mark.parametrize("reference, value, tolerance, said", [
    (np.float32([1, 2]), np.float32([1, 2]), 0, None),
    (np.float32([1, 2]), np.float64([1, 2]), 0, "float64, not float32"),
    (np.float32([1, 2]), np.float32([[1, 2]]), 0, "shape (1, 2), not (2,)"),
    (np.float32([1, np.nan]), np.float32([1, np.nan]), 0, None),
    (np.float64([1, np.nan]), np.float64([1, 2]), 1e-5, "largest |difference| inf at [1] (2, not nan); 1 of 2 values "
                                                        "beyond 1e-05"),
    (np.float64([np.inf]), np.float64([np.inf]), 0, None),
    (np.float64([[0, 1e-6], [3, 4]]), np.float64([[0, 0], [3, 4.5]]), 1e-5,
     "largest |difference| 0.5 at [1, 1] (4.5, not 4); 1 of 4 values beyond 1e-05"),
    (np.int64([5, 7]), np.int64([5, 8]), 0, "largest |difference| 1 at [1] (8, not 7); 1 of 2 values beyond 0"),
    (np.array([b"low", b"high"], dtype=object), np.array([b"low", b"mid"], dtype=object), 1,
     "1 of 2 values differ, the first at [1]: 'mid', not 'high'"),
    (np.array([True, False]), np.array([True, True]), 1, "1 of 2 values differ, the first at [1]: True, not False"),
])
def test_array_differences(reference, value, tolerance, said):
    assert compare.array(reference, value, tolerance) == said


def test_outputs_missing_or_extra_are_named():
    assert compare.arrays({"a": np.zeros(1), "b": np.zeros(1)}, {"a": np.zeros(1), "c": np.zeros(1)}, 0) == [
        "no output 'b'", "output 'c' too"]
