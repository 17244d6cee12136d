"""The scripts' second hostile pass (issue 31's minor list): foreseeable answers, input and streams each get their
own line and the right exit, never "unexpected X" and never a line on the wrong stream."""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from fake_peer import fake_server
from script_helpers import PYTHON_DIR, run_script

from test_hostile import one_line, usage_error  # noqa: F401  (the shapes every row must have)


def run_with_closed_stderr(server, *args):
    """(exit, stdout) of a script started with fd 2 closed, as `2>&-` does."""
    done = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", sys.executable, *args], cwd=PYTHON_DIR,
                          env={"TFS_SERVER": server.target, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=60)
    return done.returncode, done.stdout


@pytest.mark.parametrize("args, code", [
    (["grpcRequest.py", "-m", "Nope"], 1),  # a server error: the line went to stdout (print's file=None)
    (["grpcModelStatus.py", "-m", "Toy", "-v", "9"], 1),
    (["grpcRequest.py", "-i", "input_1=[[1, 2"], 2),  # bad input
])
def test_with_stderr_closed_the_error_line_never_reaches_stdout(toy_server, args, code):
    assert run_with_closed_stderr(toy_server, *args) == (code, "")


def test_with_stderr_closed_the_result_still_goes_to_stdout(toy_server):
    code, out = run_with_closed_stderr(toy_server, "grpcRequest.py", "-m", "Toy", "-v", "1")
    assert code == 0 and out.startswith("outputs {"), out


def test_the_wait_says_the_time_it_really_took():
    # Each status answer takes 1.8 s: the second poll began at 2 s, just before the end of --wait 2, and ran on with
    # -t 5 to 3.8 s, while the message said "after 2s". Now each poll is bounded by the wait too, and the message
    # says the real time when it is more.
    with fake_server("loading", 1.8) as (target, _):
        started = time.monotonic()
        result = run_script("grpcModelStatus.py", "-m", "Toy", "--wait", "2", "-t", "5", server=target)
        took = time.monotonic() - started
    line = one_line(result, 1, "not AVAILABLE after ", "last seen: version 1 LOADING")
    said = float(re.search(r"after ([0-9.]+)s", line).group(1))
    assert 2 <= said and took - said < 1.2, (took, line)  # (took also counts the interpreter's start)


# -- answers that are valid on the wire but odd (tests/fake_server.py, mode odd) -------------------------------

@pytest.fixture(scope="module")
def odd():
    with fake_server("odd") as (target, _):
        yield target


@pytest.mark.parametrize("model, said", [
    ("variant", "output 'output_1' cannot be read: Unsupported tensor type: variant."),
    ("unknown_dtype", "output 'output_1' cannot be read: Unsupported tensor type: 999."),
    ("negative_dim", "output 'output_1' cannot be read: Cannot make an ndarray of partially known shape [-3, 1]."),
    ("short_content", "output 'output_1' cannot be read: tensor_content has 2 bytes, but shape [1, 1] of float32 "
                      "needs 4."),
])
def test_values_of_an_output_that_is_no_array(odd, model, said):
    # (unexpected TypeError/ValueError, exit 1, after a "{" on stdout)
    result = run_script("grpcRequest.py", "-m", model, "-i", "input_1=[[1, 2]]", "--values", server=odd)
    assert (result.code, result.out, result.err) == (1, "", f"grpcRequest.py: error: {said}\n"), result


def test_a_detail_on_several_lines_is_said_on_one(odd):
    result = run_script("grpcRequest.py", "-m", "multiline", "-i", "input_1=[[1, 2]]", server=odd)
    assert one_line(result, 1).endswith("does not implement this call (first line second line third)"), result


def test_an_unknown_state_or_status_is_named_as_such(odd):
    # (unexpected ValueError: Enum State has no name defined for value 42)
    result = run_script("grpcModelStatus.py", "-m", "Toy", "--wait", "0", server=odd)
    assert one_line(result, 1).endswith("last seen: version 1 unknown state 42 (odd)"), result
    result = run_script("grpcModelStatus.py", "-m", "Toy", "--fleet", server=odd)
    assert result.code == 0 and "version 1 unknown state 42 (odd)" in result.out, result
    result = run_script("grpcModelStatus.py", "-m", "Toy", server=odd)  # text and JSON print the number
    assert result.code == 0 and "  state: 42\n" in result.out, result
    result = run_script("grpcModelStatus.py", "--health", "", server=odd)
    assert (result.code, result.out, result.err) == (1, "unknown status 42\n", ""), result


def test_metadata_whose_any_is_garbage_or_another_type(odd):
    # (unexpected DecodeError; --summary of another type printed no signature and exit 0)
    result = run_script("grpcMetadata.py", "-m", "garbage_any", server=odd)  # text: the bytes as they came
    assert result.code == 0 and 'value: "\\377\\377\\377\\377"' in result.out, result
    result = run_script("grpcMetadata.py", "-m", "garbage_any", "--summary", server=odd)
    one_line(result, 1, "the metadata's signature_def does not parse as a SignatureDefMap (Error parsing message")
    result = run_script("grpcMetadata.py", "-m", "garbage_any", "--format", "json", server=odd)
    one_line(result, 1, "the answer holds an Any whose bytes are not its type", "print it with --format text")
    result = run_script("grpcMetadata.py", "-m", "other_any", "--summary", server=odd)
    assert result.err == ("grpcMetadata.py: error: the metadata holds a type.googleapis.com/tensorflow.TensorProto, "
                          "not a SignatureDefMap\n") and (result.code, result.out) == (1, ""), result


def test_text_the_terminal_cannot_encode_is_escaped(odd, toy_server):
    # PYTHONIOENCODING=ascii (or LANG=C): unexpected UnicodeEncodeError. Now \xe9, as Python's stderr writes it.
    env = {"PYTHONIOENCODING": "ascii"}
    result = run_script("grpcModelStatus.py", "-m", "é", "--fleet", server=toy_server.target, env=env)
    assert result.code == 1 and "FAILED: NOT_FOUND: Could not find any versions of model \\xe9" in result.out, result
    result = run_script("grpcRequest.py", "-m", "non_ascii", "-i", "input_1=[[1, 2]]", server=odd, env=env)
    assert result.code == 0 and 'string_val: "\\303\\251"' in result.out, result


# -- input -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("server, said", [
    ("localhost:¹⁸⁵⁰⁰", "argument -s/--server: the port '¹⁸⁵⁰⁰' is not a number (write it in ASCII digits, e.g. "
                        "localhost:8500): 'localhost:¹⁸⁵⁰⁰'"),
    ("[::1]:٨٥٠٠", "argument -s/--server: the port '٨٥٠٠' is not a number"),
])
@pytest.mark.parametrize("fleet", [[], ["--fleet"]])
def test_a_port_in_other_digits(server, said, fleet):
    # (--fleet: unexpected ValueError, as str.isdigit takes ¹⁸⁵⁰⁰; without: a connection error, exit 1)
    usage_error(run_script("grpcModelStatus.py", "-m", "Toy", "-s", server, *fleet), said)


def test_a_scheme_inside_a_list(toy_server):
    # (cannot resolve ipv6:[::1]:8500, exit 1; before that, unexpected)
    target = f"{toy_server.target},ipv6:[::1]:8500"
    result = run_script("grpcModelStatus.py", "-m", "Toy", "--fleet", "-s", target)
    one_line(result, 2, "--fleet: 'ipv6:[::1]:8500' in", "has a scheme of its own: write ipv6: once, before the "
                        "whole list (e.g. ipv6:[::1]:8500,[::1]:8501)")


def test_the_hint_for_text_in_a_number_input_is_one_that_works(toy_server):
    # [[1, "a"]] said "convert it with --dtype input_1=float32", which then failed on "a"
    result = run_script("grpcRequest.py", "-m", "Toy", "-i", 'input_1=[[1, "a"]]', server=toy_server.target)
    assert result.err == ("grpcRequest.py: error: input 'input_1' holds the text 'a' where model Toy expects "
                          "float32: write every value as a JSON number\n") and result.code == 2, result
    result = run_script("grpcRequest.py", "-m", "Toy", "-i", 'input_1=[["1", "2"]]', server=toy_server.target)
    one_line(result, 2, "convert it with --dtype input_1=float32")  # which works:
    result = run_script("grpcRequest.py", "-m", "Toy", "-i", 'input_1=[["1", "2"]]', "--dtype", "input_1=float32",
                        server=toy_server.target)
    assert result.code == 0, result


# -- --fleet ---------------------------------------------------------------------------------------------

COUNT_READS = """
import sys
import grpcRequest
from tfsclient import predict_inputs
reads = []
parse = predict_inputs.parse_inputs
predict_inputs.parse_inputs = lambda *a, **k: reads.append(1) or parse(*a, **k)
code = grpcRequest.main(sys.argv[1:])
print("reads", len(reads), "exit", code, file=sys.stderr)
"""


def test_fleet_replicas_share_one_read_of_the_input_files(fleet, tmp_path):
    # Each replica read the -i files again (RSS 350 -> 643 MB for 1 -> 2 replicas of a large .npy).
    np.save(tmp_path / "x.npy", np.ones((3, 2), np.float32))
    result = run_script("-c", COUNT_READS, "-m", "Toy", "-v", "1", "-i", f"input_1=@{tmp_path}/x.npy", "--fleet",
                        server=fleet.target("full", "health", "one"))
    assert result.err.splitlines()[-1] == "reads 1 exit 0", result
    assert result.out.count("output_1") == 3, result


def test_a_replica_whose_turn_comes_after_the_deadline_is_not_asked(toy_server):
    # --fleet-parallel 1 behind a replica that hangs: the healthy one was reported as "no answer ... within 1.5s"
    # though it was never asked.
    with fake_server("slow", 30) as (slow, _):
        result = run_script("grpcRequest.py", "-m", "Toy", "--fleet", "--fleet-parallel", "1", "-t", "1.5",
                            "-s", f"{slow},{toy_server.target}")
    assert result.code == 1, result
    healthy = [line for line in result.out.splitlines() if line.startswith(f"127.0.0.1:{toy_server.port} ")]
    assert healthy == [f"127.0.0.1:{toy_server.port}  FAILED: not asked: -t 1.5s ran out before its turn (at most "
                       "--fleet-parallel 1 at once: raise it, or -t)"], result


# -- logs and examples -------------------------------------------------------------------------------------

def test_a_log_that_is_empty_or_holds_another_message(tmp_path):
    # (both printed as an empty log, exit 0)
    from tfsclient import tfrecord

    (tmp_path / "empty.log").write_bytes(b"")
    (tmp_path / "other.log").write_bytes(tfrecord.frame(b"\x08\x96\x01"))  # parses, as unknown fields only
    (tmp_path / "blank.log").write_bytes(tfrecord.frame(b""))
    result = run_script("grpcRequestLog.py", "--read", str(tmp_path / "empty.log"))
    assert one_line(result, 2) == f"grpcRequestLog.py: error: {tmp_path}/empty.log is empty: it holds no " \
                                  "PredictionLog records"
    for name in ("other.log", "blank.log"):
        result = run_script("grpcRequestLog.py", "--read", str(tmp_path / name))
        assert one_line(result, 2) == (f"grpcRequestLog.py: error: {tmp_path}/{name}: the record at offset 0 is not "
                                       "a PredictionLog (it holds none of its logs: predict, classify, regress, "
                                       "multi_inference, session_run)")
        result = run_script("grpcWarmup.py", "--from-log", str(tmp_path / name), "-o", str(tmp_path / "warmup"))
        one_line(result, 2, "the record at offset 0 is not a PredictionLog (it holds none of its logs)")


@pytest.mark.parametrize("source, said", [
    (["-e", "age=31.0,income=5.2,age=40"], "--example 'age=31.0,income=5.2,age=40': feature 'age' is given twice: "
                                           "give each feature once"),
    (["--examples", "{d}/twice.csv"], "{d}/twice.csv: the header names column 'age' twice: give each feature one "
                                      "column"),
    (["--examples", "{d}/twice.json"], "{d}/twice.json: feature 'age' is given twice in one example: give each "
                                       "feature once"),
])
def test_a_feature_given_twice_is_refused(toy_server, tmp_path, source, said):
    # (the last one won, silently: age=40 went as int64 and the server refused the type)
    (tmp_path / "twice.csv").write_text("age,income,age\n31.0,5.2,40\n")
    (tmp_path / "twice.json").write_text('[{"age": 31.0, "income": 5.2, "age": 40.0}]')
    result = run_script("grpcMultiTask.py", "--task", "regress:regress", "-m", "MultiTask",
                        *[a.format(d=tmp_path) for a in source], server=toy_server.target)
    assert one_line(result, 2) == f"grpcMultiTask.py: error: {said.format(d=tmp_path)}"


# -- output that the disk takes only in part -------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["grpcMetadata.py", "-m", "Toy"],  # 3.8 KB of text
    ["grpcMetadata.py", "-m", "Toy", "--format", "json"],
    ["grpcRequestLog.py", "-m", "Toy", "-v", "1"],  # about 1.5 KB
    ["grpcRequest.py", "-m", "Toy", "-v", "1", "-i", "input_1=" + json.dumps([[1.0, 2.0]] * 200)],
])
def test_output_the_disk_takes_only_in_part_is_an_error(toy_server, tmp_path, args):
    # A file with 1 KB left (ulimit -f 1): the kernel takes 1024 bytes and says so; Python's buffered writer took
    # that short write as done, dropped the rest and the command exited 0 with its output cut.
    from test_hostile import fsize_limited

    with open(tmp_path / "out", "wb") as out:
        done = subprocess.run([sys.executable, *args], cwd=PYTHON_DIR, stdout=out, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "TFS_SERVER": toy_server.target},
                              preexec_fn=fsize_limited(1024), timeout=60)
    assert (done.returncode, done.stderr) == (1, f"{args[0]}: error: cannot write the output: File too large\n")


@pytest.mark.parametrize("damage, said", [
    (lambda whole: whole[:-1], "truncated record at offset"),  # a log cut by one byte
    (lambda whole: b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "corrupt record length at offset 0 (CRC mismatch)"),
])
def test_a_log_file_that_is_not_whole_records_is_refused_before_the_predict(toy_server, tmp_path, damage, said):
    # (the record was appended after the damage, exit 0, and could never be read back)
    log = tmp_path / "app.log"
    first = run_script("grpcRequestLog.py", "-m", "Toy", "-v", "1", "--log-file", str(log), server=toy_server.target)
    assert first.code == 0, first
    log.write_bytes(damage(log.read_bytes()))
    before = log.read_bytes()
    result = run_script("grpcRequestLog.py", "-m", "Toy", "-v", "1", "--log-file", str(log), server=toy_server.target)
    line = one_line(result, 2, f"--log-file: {log} is not whole PredictionLog records (", said,
                    "give a new file (or cut it back to its last whole record)")
    assert log.read_bytes() == before, line


# -- hints that work ------------------------------------------------------------------------------------------

TESTDATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "tfs-testdata"))


@pytest.fixture(scope="module")
def hpt():
    """half_plus_two: its classify_x_to_y signature takes strings (serialized tf.Examples)."""
    from testing.server import ServerProcess

    with ServerProcess("--model_name=hpt", f"--model_base_path={TESTDATA}/saved_model_half_plus_two_cpu") as s:
        yield s.target


def test_numbers_for_a_string_input_get_a_hint_that_works(hpt):
    # It hinted --dtype inputs=string, which then said "numbers cannot be sent as strings".
    args = ["-m", "hpt", "--signature", "classify_x_to_y"]
    result = run_script("grpcRequest.py", *args, "-i", "inputs=[1, 2]", server=hpt)
    assert result.err == ("grpcRequest.py: error: input 'inputs' holds numbers where model hpt expects strings: write "
                          'them as JSON strings, e.g. ["1", "2"]\n') and result.code == 2, result
    # an empty list fits any type: an empty batch of strings could not be sent at all
    result = run_script("grpcRequest.py", *args, "-i", "inputs=[]", server=hpt)
    assert result.code == 0 and 'key: "scores"' in result.out, result


def test_an_input_named_twice_in_one_json_file(toy_server, tmp_path):
    # {"input_1": [[1, 2]], "input_1": [[3, 4]]}: the last one was sent, silently
    (tmp_path / "dup.json").write_text('{"input_1": [[1, 2]], "input_1": [[3, 4]]}')
    result = run_script("grpcRequest.py", "-m", "Toy", "-i", f"@{tmp_path}/dup.json", server=toy_server.target)
    assert one_line(result, 2) == (f"grpcRequest.py: error: -i @{tmp_path}/dup.json: {tmp_path}/dup.json names "
                                   "'input_1' twice in one object: give each input once")


@pytest.mark.parametrize("script, args, said", [
    ("grpcMultiTask.py", ["--task", "regress:regress", "-m", "MultiTask", "--context", "age=31.0", "--context",
                          "age=5.2", "-e", "income=1.0"],  # (a second --context replaced the first)
     "--context: feature 'age' is given twice: give each feature once"),
    ("grpcMultiTask.py", ["--task", "regress:regress", "-m", "MultiTask", "--feature-type", "age=int",
                          "--feature-type", "age=float", "-e", "age=1,income=2"],  # (the last won)
     "--feature-type age is given twice (age=int, then age=float): give each feature one type"),
    ("grpcReloadModel.py", ["-m", "Toy", "--versions", "1,2", "--label", "stable=3"],  # (sent; exit 0)
     "--label stable=3: version 3 is not in --versions 1,2: label a version you serve"),
])
def test_flags_that_disagree_are_refused_before_anything_is_sent(toy_server, script, args, said):
    assert one_line(run_script(script, *args, server=toy_server.target), 2) == f"{script}: error: {said}"


def test_context_flags_add_up(toy_server):
    result = run_script("grpcMultiTask.py", "--task", "regress:regress", "-m", "MultiTask", "--context", "age=31.0",
                        "--context", "income=5.2", "-e", "foo=1", "--values", server=toy_server.target)
    assert (result.code, result.out) == (0, "example 0: regress:regress 2.05\n"), result


@pytest.mark.parametrize("script, args, said", [
    ("grpcModelStatus.py", ["-s", "localhost:65536"], "the port 65536 is not between 1 and 65535"),
    ("grpcBench.py", ["--metrics", "http://localhost:1/é", "-n", "1"],
     "argument --metrics: the metrics URL must be ASCII: percent-encode the rest (%C3%A9 for é)"),
])
def test_addresses_that_cannot_be_used(script, args, said):
    # (a connection error, exit 1; the URL: "cannot read it (UnicodeEncodeError: 'ascii' codec ...)", exit 1)
    usage_error(run_script(script, *args), said)
