"""The scripts under hostile input (issue 14): bounded reads, honest exits, every flag checked, output that
fails. Each as a subprocess, against the session's real server or a fake peer (tests/fake_server.py)."""

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from fake_peer import fake_server
from script_helpers import PYTHON_DIR, run_script


def one_line(result, code, *fragments):
    """Exit `code`, nothing on stdout, one line on stderr holding every fragment, no traceback."""
    assert (result.code, result.out) == (code, ""), result
    lines = result.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err and "unexpected" not in result.err, result
    for fragment in fragments:
        assert fragment in lines[0], result
    return lines[0]


def usage_error(result, *fragments):
    """argparse's two lines (usage, then the error), exit 2, nothing on stdout."""
    assert (result.code, result.out) == (2, ""), result
    lines = result.err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("usage: ") and "Traceback" not in result.err, result
    for fragment in fragments:
        assert fragment in lines[1], result


# -- reads that never end --------------------------------------------------------------------------

@pytest.fixture
def zero(tmp_path):
    """Links to /dev/zero under every name a script reads, a FIFO and a folder."""
    for name in ("z.json", "z.npz", "z.npy", "z.csv", "z.pem", "z.config", "z.tfrecord"):
        os.symlink("/dev/zero", tmp_path / name)
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "folder.json").mkdir()
    return tmp_path


@pytest.mark.parametrize("script, args, said", [
    ("grpcRequest.py", ["-i", "@{d}/z.json"], "-i @{d}/z.json: {d}/z.json is not a regular file (a character device)"),
    ("grpcRequest.py", ["-i", "@{d}/z.npz"], "-i @{d}/z.npz: {d}/z.npz is not a regular file (a character device)"),
    ("grpcRequest.py", ["-i", "input_1=@{d}/z.npy"],
     "-i input_1: {d}/z.npy is not a regular file (a character device)"),
    ("grpcRequest.py", ["-i", "@{d}/fifo.json"], "-i @{d}/fifo.json: {d}/fifo.json is not a regular file (a FIFO)"),
    ("grpcRequest.py", ["-i", "@{d}/folder.json"], "{d}/folder.json is not a regular file (a directory)"),
    ("grpcMultiTask.py", ["--task", "regress:regress", "-m", "MultiTask", "--examples", "{d}/z.csv"],
     "--examples: {d}/z.csv is not a regular file (a character device)"),
    ("grpcMultiTask.py", ["--task", "regress:regress", "-m", "MultiTask", "--examples", "{d}/z.tfrecord"],
     "--examples: {d}/z.tfrecord is not a regular file (a character device)"),
    ("grpcRequest.py", ["--ca-cert", "{d}/z.pem"], "--ca-cert: {d}/z.pem is not a regular file (a character device)"),
    ("grpcRequest.py", ["--ca-cert", "{d}/ca.pem", "--client-cert", "{d}/z.pem", "--client-key", "{d}/z.pem"],
     "is not a regular file (a character device)"),
    ("grpcReloadModel.py", ["-c", "{d}/z.config"], "config {d}/z.config is not a regular file (a character device)"),
    ("grpcRequestLog.py", ["--read", "{d}/z.tfrecord"], "{d}/z.tfrecord is not a regular file (a character device)"),
    ("grpcWarmup.py", ["-o", "{d}/out", "--from-log", "{d}/fifo.json"], "is not a regular file (a FIFO)"),
])
def test_files_that_never_end_are_one_line(run, zero, script, args, said):
    (zero / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    args = [a.format(d=zero) for a in args]
    started = time.monotonic()
    result = run(script, *args, timeout=30)
    one_line(result, 2, said.format(d=zero))
    assert time.monotonic() - started < 15


def test_size_limits_per_kind_and_raising_them(run, tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:  # sparse: 64 MiB + 1 of JSON (spaces would do; the size is what counts)
        f.truncate(64 * 2**20 + 1)
    one_line(run("grpcRequest.py", "-i", f"@{big}"), 2,
             f"-i @{big}: {big} is 67108865 bytes, more than the 67108864 a JSON file may be "
             "(raise it with --max-file-size or $TFS_MAX_FILE_SIZE)")
    npy = tmp_path / "big.npy"
    with open(npy, "wb") as f:
        f.truncate(256 * 2**20 + 1)
    one_line(run("grpcRequest.py", "-i", f"input_1=@{npy}"), 2,
             f"{npy} is 268435457 bytes, more than the 268435456 a .npy file may be")
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"input_1": [[1.0, 2.0]] * 20}))
    one_line(run("grpcRequest.py", "-i", f"@{small}", env={"TFS_MAX_FILE_SIZE": "100"}), 2,
             "more than the 100 a JSON file may be")
    assert run("grpcRequest.py", "-i", f"@{small}", "--max-file-size", "1K", env={"TFS_MAX_FILE_SIZE": "100"}).code == 0
    usage_error(run("grpcRequest.py", "--max-file-size", "lots"), "not a size in bytes")
    pem = tmp_path / "big.pem"
    pem.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + b"A" * 2**20)
    one_line(run("grpcRequest.py", "--ca-cert", str(pem), "--max-file-size", "1G"), 2,
             "more than the 1048576 a PEM file may be (the limit for a PEM file)")


@pytest.fixture(scope="module")
def npz_bomb(tmp_path_factory):
    """An .npz of about 0.5 MB whose one member unpacks to 512 MiB of zeros."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (134217728,), }"
    header += " " * (127 - 10 - len(header)) + "\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("input_1.npy", "w", force_zip64=True) as member:
            member.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
            chunk = bytes(2**24)
            for _ in range(32):
                member.write(chunk)
    return path


def test_an_npz_bomb_is_refused_before_it_is_unpacked(run, npz_bomb):
    assert os.path.getsize(npz_bomb) < 2**20
    result = run("grpcRequest.py", "-i", f"@{npz_bomb}")
    one_line(result, 2, f"-i @{npz_bomb}: {npz_bomb} unpacks to 536871040 bytes, more than the 268435456 a .npz file "
                        "may unpack to (raise it with --max-file-size or $TFS_MAX_FILE_SIZE)")


def test_byte_order_marks_are_not_part_of_the_first_name(run, tmp_path):
    csv = tmp_path / "excel.csv"
    csv.write_bytes("\ufeffage,income\n31,5.2\n".encode("utf-8"))
    result = run("grpcMultiTask.py", "--task", "regress:regress", "-m", "MultiTask", "--examples", str(csv),
                 "--feature-type", "age=float", "--values")
    assert (result.code, result.err) == (0, ""), result
    examples = tmp_path / "excel.json"
    examples.write_bytes("\ufeff".encode() + b'[{"age": 31.0, "income": 5.2}]')
    assert run("grpcMultiTask.py", "--task", "regress:regress", "-m", "MultiTask",
               "--examples", str(examples)).code == 0
    inputs = tmp_path / "inputs.json"
    inputs.write_bytes("\ufeff".encode() + b'{"input_1": [[1.0, 2.0]]}')
    assert run("grpcRequest.py", "-i", f"@{inputs}").code == 0


# -- exit codes and messages that tell the truth ---------------------------------------------------

def test_the_timeout_is_the_deadline_of_the_whole_command():
    with fake_server("slow", 1.2) as (target, _):  # metadata, then Predict: 2.4 s, each call under -t 2
        started = time.monotonic()
        result = run_script("grpcRequest.py", "-i", "input_1=[[1.0, 2.0]]", "-t", "2", server=target)
        took = time.monotonic() - started
        one_line(result, 1, f"no answer from TF Serving at {target} within 2s (raise it with --timeout)")
        assert took < 2.3 + 1.0  # the deadline, plus the interpreter's start
        ok = run_script("grpcRequest.py", "-i", "input_1=[[1.0, 2.0]]", "-t", "4", "--values", server=target)
        assert (ok.code, ok.out) == (0, '{"output_1": [[1.5]]}\n'), ok


@pytest.mark.parametrize("timeout", ["inf", "1e10", "1e300"])
def test_no_deadline(run, timeout):
    result = run("grpcRequest.py", "-t", timeout, "--values")
    assert (result.code, result.err) == (0, ""), result


@pytest.mark.parametrize("variable, value, said", [
    ("TFS_TLS", "maybe", "$TFS_TLS='maybe': not a boolean: use 1/0, true/false, yes/no or on/off"),
    ("TFS_WAIT_FOR_READY", "2", "$TFS_WAIT_FOR_READY='2': not a boolean"),
    ("TFS_COMPRESSION", "bogus", "$TFS_COMPRESSION='bogus': invalid choice (choose from none, gzip, deflate)"),
    ("TFS_RETRIES", "many", "$TFS_RETRIES='many': not a whole number"),
    ("TFS_MAX_FILE_SIZE", "big", "$TFS_MAX_FILE_SIZE='big': not a size in bytes"),
])
def test_bad_variables_are_refused(run, variable, value, said):
    usage_error(run("grpcRequest.py", env={variable: value}), said)


@pytest.mark.parametrize("value", ["no", "off", "0", "false", "NO", "Off"])
def test_boolean_variables_mean_what_they_say(run, value):
    result = run("grpcRequest.py", "--values", env={"TFS_TLS": value, "TFS_WAIT_FOR_READY": value})
    assert (result.code, result.err) == (0, ""), result


def test_wait_for_ready_off_fails_at_once(tmp_path):
    from testing.server import free_port
    target = f"localhost:{free_port()}"
    started = time.monotonic()
    result = run_script("grpcModelStatus.py", "-t", "20", server=target, env={"TFS_WAIT_FOR_READY": "off"})
    one_line(result, 1, "connection refused")
    assert time.monotonic() - started < 10  # on, it waits the whole 20 s
    on = run_script("grpcModelStatus.py", "-t", "1", server=target, env={"TFS_WAIT_FOR_READY": "yes"})
    one_line(on, 1, "within 1s")


@pytest.mark.parametrize("args, env, said", [
    (["-v", "99999999999999999999999"], {}, "argument -v/--version: a version is a number >= 0 and < 2**63, not "
                                            "99999999999999999999999"),
    ([], {"TFS_SERVER": os.fsdecode(b"local\xffhost:8500")},
     "argument -s/--server: $TFS_SERVER='local\\\\xffhost:8500': the server address is not valid UTF-8"),
    (["-s", ""], {}, "argument -s/--server: the server address is empty: ''"),
    (["-l", ""], {}, "argument -l/--version-label: the version label is empty: ''"),
    (["-m", ""], {}, "argument -m/--model: the model name is empty: ''"),
])
def test_bad_flags_exit_2(run, args, env, said):
    usage_error(run("grpcRequest.py", *args, env=env), said)


def test_an_input_given_twice_is_refused(run, tmp_path):
    one_line(run("grpcRequest.py", "-i", "input_1=[[1.0, 2.0]]", "-i", "input_1=[[5.0, 6.0]]"), 2,
             "input 'input_1' is given twice (again by -i input_1=[[5.0, 6.0]]): give each input once")
    (tmp_path / "x.json").write_text('{"input_1": [[1.0, 2.0]]}')
    one_line(run("grpcRequest.py", "-i", "input_1=[[1.0, 2.0]]", "-i", f"@{tmp_path}/x.json"), 2, "given twice")


@pytest.mark.parametrize("wait, said", [("nan", "the wait must be >= 0, not nan"),
                                        ("-5", "the wait must be >= 0, not -5"),
                                        ("inf", "the wait must be below 1e+09")])
def test_wait_is_checked_as_the_timeout_is(run, wait, said):
    usage_error(run("grpcModelStatus.py", "--wait", wait), said)


def test_wait_zero_polls_once(run):
    result = run("grpcModelStatus.py", "-m", "Toy", "--wait", "0")
    assert result.code == 0 and "AVAILABLE" in result.out, result
    for wait, polls in (("0", {1}), ("1", {3})):  # a poll every 0.5 s: at 0, 0.5 and 1 s
        with fake_server("loading") as (target, process):
            result = run_script("grpcModelStatus.py", "-m", "Toy", "--wait", wait, server=target)
            process.kill()
            seen = process.stdout.read().splitlines().count("status")
        assert (result.code, result.out) == (1, ""), result
        assert result.err == (f"grpcModelStatus.py: error: model Toy not AVAILABLE after {wait}s; last seen: "
                              "version 1 LOADING\n")
        assert seen in polls, (wait, seen)


def test_warmup_output_that_is_a_folder(tmp_path):
    np.savez(tmp_path / "rows.npz", input_1=np.zeros((2, 2), np.float32))
    result = run_script("grpcWarmup.py", "-o", str(tmp_path), "--inputs", str(tmp_path / "rows.npz"))
    one_line(result, 2, f"-o {tmp_path} is a directory: give the warmup file in it, e.g. "
                        f"-o {tmp_path}/tf_serving_warmup_requests")


def test_warmup_inputs_hint_names_its_own_flag(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    result = run_script("grpcWarmup.py", "-o", str(tmp_path / "w"), "--inputs", str(tmp_path / "x.npy"))
    line = one_line(result, 2, f"--inputs {tmp_path}/x.npy: a .npy file holds one array without its input's name",
                    "numpy.savez")
    assert "-i " not in line


def test_a_ca_file_of_garbage_blames_the_ca(tmp_path, toy_server):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    line = one_line(run_script("grpcRequest.py", "--ca-cert", str(garbage), server=toy_server.target), 2,
                    f"--ca-cert: {garbage} holds no certificate that can be read")
    assert "--client" not in line


def test_a_server_that_dies_in_a_call_is_not_a_tls_problem():
    with fake_server("die") as (target, _):
        line = one_line(run_script("grpcRequest.py", server=target), 1,
                        f"the connection to TF Serving at {target} was lost during the call")
    assert "--tls" not in line


def test_a_reload_to_a_missing_version_says_what_is_served(toy_models):
    from testing.server import ServerProcess
    with ServerProcess(f"--model_config_file={toy_models}/toy_labels.config",
                       "--allow_version_labels_for_unavailable_models", "--max_num_load_retries=0") as server:
        result = run_script("grpcReloadModel.py", "-m", "Toy", "--versions", "7", server=server.target)
        assert (result.code, result.out) == (1, ""), result
        assert result.err.splitlines()[-1] == (
            "grpcReloadModel.py: error: model Toy is not served after the reload: version 7 is not on disk (reload "
            "with one that is, e.g. --versions 2); the status shows versions 1 END, 2 END"), result
        config = run_script("grpcReloadModel.py", "-c", f"{toy_models}/toy_labels.config", server=server.target)
        assert config.code == 0, config


# -- output and files ------------------------------------------------------------------------------

def _shell(command, env=None):
    completed = subprocess.run(["bash", "-c", command], cwd=PYTHON_DIR, capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, **(env or {})))
    return completed


def test_a_reader_that_leaves_is_not_an_error(tmp_path):
    np.savez(tmp_path / "rows.npz", input_1=np.zeros((300, 2), np.float32))
    log = tmp_path / "log"
    assert run_script("grpcWarmup.py", "-o", str(log), "--inputs", str(tmp_path / "rows.npz")).code == 0
    done = _shell(f"{sys.executable} grpcRequestLog.py --read {log} | head -1; echo \"exit ${{PIPESTATUS[0]}}\"")
    assert done.stdout == "record at offset 0".center(100, "*") + "\nexit 0\n", done
    assert done.stderr == "", done


@pytest.mark.parametrize("script", ["grpcRequest.py", "grpcModelStatus.py", "grpcMetadata.py"])
def test_stdout_that_cannot_take_the_result(toy_server, script):
    closed = _shell(f"{sys.executable} {script} -s {toy_server.target} >&-")
    assert (closed.returncode, closed.stderr) == (1, f"{script}: error: cannot write the output: stdout is closed\n")
    full = _shell(f"{sys.executable} {script} -s {toy_server.target} > /dev/full")
    assert (full.returncode, full.stderr) == (1, f"{script}: error: cannot write the output: No space left on device\n")


def fsize_limited(limit):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def _count(path):
    from tfsclient import tfrecord
    return sum(1 for _ in tfrecord.read(str(path)))


def test_warmup_writes_all_or_nothing(tmp_path):
    np.savez(tmp_path / "rows.npz", input_1=np.zeros((3, 2), np.float32))
    out = tmp_path / "tf_serving_warmup_requests"
    assert run_script("grpcWarmup.py", "-o", str(out), "--inputs", str(tmp_path / "rows.npz")).code == 0
    before = out.read_bytes()
    failed = subprocess.run([sys.executable, "grpcWarmup.py", "-o", str(out), "--inputs", str(tmp_path / "rows.npz")],
                            cwd=PYTHON_DIR, capture_output=True, text=True, preexec_fn=fsize_limited(len(before) + 100))
    assert (failed.returncode, failed.stdout) == (1, ""), failed
    assert failed.stderr == (f"grpcWarmup.py: error: cannot write {out}: File too large (the file is unchanged)\n")
    assert out.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["rows.npz", out.name]
    again = run_script("grpcWarmup.py", "-o", str(out), "--inputs", str(tmp_path / "rows.npz"))
    assert again.out == f"appended 3 warmup records to {out} (6 in all)\n", again
    assert _count(out) == 6


def test_request_log_gains_only_whole_records(toy_server, tmp_path):
    log = tmp_path / "requests.log"
    assert run_script("grpcRequestLog.py", "--log-file", str(log), server=toy_server.target).code == 0
    before = log.read_bytes()
    failed = subprocess.run([sys.executable, "grpcRequestLog.py", "-s", toy_server.target, "--log-file", str(log)],
                            cwd=PYTHON_DIR, capture_output=True, text=True, preexec_fn=fsize_limited(len(before) + 100))
    assert (failed.returncode, failed.stdout) == (1, ""), failed
    assert failed.stderr == (f"grpcRequestLog.py: error: cannot append to {log}: File too large "
                             "(the file is unchanged)\n")
    assert log.read_bytes() == before  # it kept 100 bytes of a partial record
    again = run_script("grpcRequestLog.py", "--log-file", str(log), server=toy_server.target)
    assert again.code == 0 and _count(log) == 2, again


def test_bench_counts_answers_it_cannot_decode_as_errors():
    with fake_server("garbage") as (target, _):
        result = run_script("grpcBench.py", "-n", "5", "--warmup", "0", "--format", "json", server=target)
        report = json.loads(result.out)
        assert (report["ok"], report["errors"]) == (0, {"UNDECODABLE_RESPONSE": 5}), result
        assert result.code == 1 and result.err == (
            "grpcBench.py: error: 5 of 5 requests failed, the first with: an answer that is not a PredictResponse "
            "(Error parsing message with type 'tensorflow.serving.PredictResponse': Wire format was corrupt)\n"), result
        warmup = run_script("grpcBench.py", "-n", "5", "--warmup", "1", server=target)
        one_line(warmup, 1, "warmup: an answer that is not a PredictResponse")


# -- the shared code itself ------------------------------------------------------------------------

def test_importing_the_scripts_leaves_ctrl_c_alone():
    code = ("import signal, grpcRequest, grpcBench, grpcWarmup; from tfsclient import common; "
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    result = run_script("-c", code)
    assert (result.out, result.err) == ("True\n", ""), result


def test_run_puts_back_what_it_changes():
    code = ("import signal, sys, grpcRequest\nfrom tfsclient import common\n"
            "mine = lambda signum, frame: None\n"
            "signal.signal(signal.SIGINT, mine)\n"
            "stdout = sys.stdout\n"
            "args = grpcRequest.build_parser().parse_args(['-t', '5'])\n"
            "seen = []\n"
            "code = common.run(lambda a: seen.append(signal.getsignal(signal.SIGINT)), args, 'x')\n"
            "print(code, seen[0] is signal.default_int_handler, signal.getsignal(signal.SIGINT) is mine, "
            "sys.stdout is stdout)\n")
    result = run_script("-c", code)
    assert (result.out, result.err) == ("0 True True True\n", ""), result


def test_ctrl_c_while_starting_is_quiet():
    process = subprocess.Popen([sys.executable, "-X", "importtime", "grpcRequest.py", "-s", "localhost:1"],
                               cwd=PYTHON_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # -X importtime writes a line per import on stderr, once it is done: the first import after `tfsclient.startup`
    # comes after its handler is set, and before the slow imports (grpc, the protos) are over
    seen = False
    for line in process.stderr:
        if seen:
            break
        seen = bool(re.search(r"\|\s+tfsclient\.startup$", line))
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130 and out == "", (process.returncode, out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


@pytest.mark.parametrize("flag, env", [(["--max-file-size", "1T"], None), ([], {"TFS_MAX_FILE_SIZE": "100G"})])
def test_a_large_file_limit_costs_nothing_until_the_bytes_come(tmp_path, flag, env):
    # Before, the read reserved the limit up front: "unexpected MemoryError" on a 20-byte file. The address space
    # is capped at 2 GiB here, so a reservation of the limit could not hide in overcommit.
    rows = tmp_path / "rows.json"
    rows.write_text('{"input_1": [[1.0, 2.0]]}')
    code = ("import resource, sys, grpcRequest\n"
            "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "sys.exit(grpcRequest.main(sys.argv[1:]))\n")
    result = run_script("-c", code, "-s", "localhost:1", "-t", "5", "-i", f"@{rows}", *flag, env=env)
    assert result.code == 1 and "cannot reach TF Serving at localhost:1" in result.err, result


@pytest.mark.parametrize("value", ["1e30T", "2000000T"])
def test_an_absurd_file_limit_is_a_usage_error(value):
    # Before, 1e30T ended in "unexpected OverflowError".
    result = run_script("grpcRequest.py", "-s", "localhost:1", "--max-file-size", value)
    assert (result.code, result.out) == (2, "")
    assert result.err.splitlines()[-1] == ("grpcRequest.py: error: argument --max-file-size: no file is that large: "
                                           f"a size is at most 1048576T (2**60 bytes), not {value}"), result.err


@pytest.mark.parametrize("make, message", [
    (lambda p: os.mkfifo(p), "is not a regular file (a FIFO)"),
    (lambda p: os.symlink("/dev/zero", p), "is not a regular file (a character device)"),
    (lambda p: os.mkdir(p), "is not a regular file (a directory)"),
    (lambda p: None, "cannot write"),  # in a folder that does not exist (below)
])
def test_a_log_file_that_is_not_a_regular_file_is_refused_before_the_predict(tmp_path, make, message):
    # Before, a FIFO hung the script for good, -t or not, after the Predict. The server here is unreachable: the
    # refusal (exit 2) comes before anything is sent, not "cannot reach" (exit 1).
    path = tmp_path / "log"
    make(str(path))
    target = path if path.exists() or path.is_symlink() else tmp_path / "missing" / "log"
    result = run_script("grpcRequestLog.py", "-s", "localhost:1", "-t", "5", "--log-file", str(target), timeout=20)
    assert (result.code, result.out) == (2, ""), result
    assert message in result.err and len(result.err.splitlines()) == 1, result.err
