#!/usr/bin/env python3
"""The scripts' memory for a large answer and a long log: ours now against ours before, in one run.

Large answer (issue 31, item 7): one Predict on a model made here, "ones", whose answer is n float32
ones for a scalar n (float_val, as TF Serving answers): the request is small, only the answer is
large. It is printed as text, as JSON (`--format json`) and as arrays (`--values`). For each: peak
RSS (the process's own ru_maxrss), and its growth over the same command with a 4-value answer per byte
of the answer (aim: at most 3x). "before" runs the same command from a git worktree of an earlier
commit, so both are measured against one server in one run. The reference way is `print(response)`
with tensorflow-serving-api's classes, as the guide's client prints.

Long log (issue 31, item 3): `grpcRequestLog.py --read` of a log of N small PredictionLog records;
the peak should stay flat as the log grows.

    .venv/bin/python benchmarks/bench_client_output.py [--sizes 16,64] [--records 20000,80000]

Writes benchmarks/results/client_output.md.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "python"))

from testing.server import ServerProcess  # noqa: E402
from proc import run_with_peak  # noqa: E402
from report import publish  # noqa: E402

MB = 1 << 20

ONES_MODEL = """
import sys
import tensorflow as tf

class Ones(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="n")])
    def serve(self, n):
        return {"y": tf.ones([n], tf.float32)}

module = Ones()
tf.saved_model.save(module, sys.argv[1], signatures={"serving_default": module.serve})
"""

REFERENCE = """
import sys
import grpc, numpy as np
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tensorflow.core.framework import tensor_pb2, types_pb2
options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(sys.argv[1], options))
request = predict_pb2.PredictRequest()
request.model_spec.name = "ones"
request.inputs["n"].dtype = types_pb2.DT_INT32
request.inputs["n"].int_val.append(int(sys.argv[2]))
print(stub.Predict(request, timeout=600))
"""


def measure(command, cwd, env):
    """(wall seconds, peak RSS in MB) of one run of `command` as a child process, its stdout discarded."""
    wall, peak, code, error = run_with_peak(command, cwd, env)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed: {error}")
    return wall, peak


def worktree(commit, where):
    """A checkout of `commit` at `where` (its python/ scripts are the "before" client)."""
    subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", "-f", where, commit], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(where, "python")


def answer_rows(python, env, clients, sizes, work):
    """For each size and format: (format, client, size MB, wall, peak, growth per answer byte)."""
    formats = [("text", []), ("json", ["--format", "json"]), ("values", ["--values"])]
    rows = []
    for size in sizes:
        n = size * MB // 4
        for name, flags in formats:
            for client, scripts in clients:
                def command(count):
                    return [python, "grpcRequest.py", "-m", "ones", "-i", f"n={count}", "-t", "600", *flags]
                _, floor = measure(command(4), scripts, env)
                wall, peak = measure(command(n), scripts, env)
                rows.append((name, client, size, wall, peak, (peak - floor) / size))
        _, floor = measure([python, "-c", REFERENCE, env["TFS_SERVER"], "4"], REPO, env)
        wall, peak = measure([python, "-c", REFERENCE, env["TFS_SERVER"], str(n)], REPO, env)
        rows.append(("text", "reference: print(response), tensorflow-serving-api", size, wall, peak,
                     (peak - floor) / size))
    return rows


def log_rows(python, env, clients, counts, work):
    """--read of logs of N records: (client, records, wall, peak)."""
    from tfsclient import tfrecord
    from tfsclient.protos import prediction_log_pb2

    record = prediction_log_pb2.PredictionLog()
    request = record.predict_log.request
    request.model_spec.name = "Toy"
    request.inputs["input_1"].float_val.extend([0.5] * 256)  # about 1 KB a record
    request.inputs["input_1"].dtype = 1
    payload = record.SerializeToString()
    rows = []
    for count in counts:
        path = os.path.join(work, f"log{count}.tfrecord")
        with open(path, "wb") as f:
            f.write(b"".join(tfrecord.frame(payload) for _ in range(count)))
        for client, scripts in clients:
            wall, peak = measure([python, "grpcRequestLog.py", "--read", path], scripts, env)
            rows.append((client, count, wall, peak))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,64", help="answer sizes in MB")
    parser.add_argument("--records", default="20000,80000", help="log lengths for --read")
    parser.add_argument("--before", default="bff3b60~1", help="the commit whose scripts are 'before' (answers)")
    parser.add_argument("--before-log", default="7780a56~1", help="the commit whose scripts are 'before' (--read)")
    args = parser.parse_args()
    python = sys.executable
    work = tempfile.mkdtemp(prefix="bench_client_output.")
    try:
        ours = ("ours", os.path.join(REPO, "python"))
        clients = [ours, (f"before ({args.before})", worktree(args.before, os.path.join(work, "before")))]
        log_clients = [ours, (f"before ({args.before_log})", worktree(args.before_log, os.path.join(work, "log")))]
        model = os.path.join(work, "ones")
        subprocess.run([python, "-c", ONES_MODEL, os.path.join(model, "1")], check=True, capture_output=True)
        with ServerProcess("--model_name=ones", f"--model_base_path={model}") as server:
            env = dict(os.environ, TFS_SERVER=server.target, TFS_MAX_FILE_SIZE="2G")
            answers = answer_rows(python, env, clients, [int(s) for s in args.sizes.split(",")], work)
        logs = log_rows(python, env, log_clients, [int(n) for n in args.records.split(",")], work)
    finally:
        for tree in ("before", "log"):
            subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", os.path.join(work, tree)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    lines = ["The scripts' memory for a large answer (n float32 ones over gRPC for a 4-byte request, stdout to "
             f"/dev/null), one run each, {os.cpu_count()} CPUs. Growth: peak RSS over the same command with a "
             "4-value answer, per byte of the answer (aim: at most 3x).", "",
             "| output | client | answer | time | peak RSS | growth / answer |",
             "|---|---|---:|---:|---:|---:|"]
    for name, client, size, wall, peak, ratio in answers:
        lines.append(f"| {name} | {client} | {size} MB | {wall:.1f} s | {peak:.0f} MB | {ratio:.1f}x |")
    lines += ["", "`grpcRequestLog.py --read` of a log of PredictionLog records of about 1 KB (the peak should stay "
              "flat):", "",
              "| client | records | time | peak RSS |", "|---|---:|---:|---:|"]
    for client, count, wall, peak in logs:
        lines.append(f"| {client} | {count} | {wall:.1f} s | {peak:.0f} MB |")
    publish("client_output", lines)


if __name__ == "__main__":
    main()
