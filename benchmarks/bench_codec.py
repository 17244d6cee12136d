"""codec.make_tensor_proto / make_ndarray vs TensorFlow's, and the import cost of each.

    .venv/bin/python benchmarks/bench_codec.py [--quick] [--no-imports] [--out FILE]

Prints a table of median times (N repeats each, after a warm-up) and the ratio
codec / TF (below 1 means codec is faster), checks on the way that both give the
same bytes / arrays, and writes the tables as Markdown to benchmarks/results/codec.md.
"""

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON_DIR = os.path.join(REPO, "python")
sys.path.insert(0, PYTHON_DIR)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from tfsclient import codec  # noqa: E402
from tfsclient import protos as tfs_protos  # noqa: E402

MIB = 1024 * 1024


def median_seconds(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fmt_time(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def ratio(t_codec, t_tf):
    r = t_codec / t_tf
    return f"{r:.2f}" if r >= 0.095 else f"{r:.3f}"


def typed_float_proto(n):
    """A float32 tensor in float_val, the way TF Serving writes its replies by default."""
    proto = tfs_protos.tensor_pb2.TensorProto(dtype=tfs_protos.types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=n)
    proto.float_val.extend(np.random.default_rng(1).random(n, dtype=np.float32).tolist())
    return proto


def cases(quick):
    rng = np.random.default_rng(0)
    scale = 10 if quick else 1
    return [
        # label, values (or a proto for decode-only rows), repeats
        ("2x2 float32", rng.random((2, 2), dtype=np.float32), 2000 // scale),
        ("224x224x3 float32 (588 KiB)", rng.random((224, 224, 3), dtype=np.float32), 200 // scale),
        ("64 MiB float32 (16M values)", rng.random(16 * MIB, dtype=np.float32), max(3, 9 // scale)),
        ("1M uint16 (int_val)", rng.integers(0, 65536, 10 ** 6).astype(np.uint16), max(3, 9 // scale)),
        ("1M bool (bool_val)", rng.random(10 ** 6) > 0.5, max(3, 9 // scale)),
        ("100k strings (string_val)", np.array([b"item-%06d" % i for i in range(10 ** 5)], dtype=object),
         max(3, 9 // scale)),
        ("1M float32 in float_val (a server reply)", typed_float_proto(10 ** 6), max(3, 9 // scale)),
    ]


def import_tensorflow():
    """import tensorflow, without the C++ start-up lines it writes to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tensorflow


def bench_codec(quick):
    tf = import_tensorflow()
    rows = []
    for label, values, repeats in cases(quick):
        if isinstance(values, tfs_protos.tensor_pb2.TensorProto):
            ops = [("make_ndarray", tf.make_ndarray, codec.make_ndarray, values)]
        else:
            tf_proto = tf.make_tensor_proto(values)
            assert codec.make_tensor_proto(values).SerializeToString() == tf_proto.SerializeToString()
            ops = [("make_tensor_proto", tf.make_tensor_proto, codec.make_tensor_proto, values),
                   ("make_ndarray", tf.make_ndarray, codec.make_ndarray, tf_proto)]
        for op, tf_fn, codec_fn, arg in ops:
            if op == "make_ndarray":
                a, b = codec_fn(arg), tf_fn(arg)
                assert a.dtype == b.dtype and a.shape == b.shape and a.tolist() == b.tolist()
            t_tf = median_seconds(lambda: tf_fn(arg), repeats)
            t_codec = median_seconds(lambda: codec_fn(arg), repeats)
            rows.append((label, op, repeats, t_tf, t_codec))
            print(f"{label:42s} {op:18s} N={repeats:<5d} TF {fmt_time(t_tf):>10s}  "
                  f"codec {fmt_time(t_codec):>10s}  codec/TF {ratio(t_codec, t_tf):>5s}", flush=True)
    return rows


IMPORTS = [
    ("nothing (interpreter start)", "pass"),
    ("import tfsclient.protos", "import tfsclient.protos"),
    ("import tfsclient.codec (protos, numpy, ml_dtypes)", "import tfsclient.codec"),
    ("import grpc, numpy", "import grpc, numpy"),
    ("import codec + gRPC stubs",
     "import tfsclient.codec, tfsclient.protos; tfsclient.protos.prediction_service_pb2_grpc"),
    ("import tensorflow_serving.apis.predict_pb2 (plain)", "import tensorflow_serving.apis.predict_pb2"),
    ("import tensorflow", "import tensorflow"),
]


_HWM = """
try:
    with open("/proc/self/status") as f:
        print(next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")))
except OSError:
    import resource
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_import(statement):
    """(wall seconds, peak RSS KiB) of a fresh interpreter started from python/ running statement.

    The peak is the child's own VmHWM: ru_maxrss of a child would include the parent's RSS
    at fork time.
    """
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", statement + "\n" + _HWM], cwd=PYTHON_DIR,
                          check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    return wall, int(done.stdout.split()[-1])


def bench_imports(repeats):
    rows = []
    for label, statement in IMPORTS:
        runs = [run_import(statement) for _ in range(repeats)]
        wall = statistics.median(w for w, _ in runs)
        rss = statistics.median(r for _, r in runs)
        rows.append((label, statement, wall, rss))
        print(f"{label:52s} {fmt_time(wall):>10s}  peak RSS {rss / 1024:6.0f} MiB", flush=True)
    return rows


def versions():
    import google.protobuf
    from importlib.metadata import version
    return (f"Python {platform.python_version()}, numpy {np.__version__}, protobuf "
            f"{google.protobuf.__version__}, tensorflow {version('tensorflow')}, "
            f"{os.cpu_count()} CPUs, {platform.machine()}")


def markdown(codec_rows, import_rows, command):
    lines = [
        "# codec vs TensorFlow",
        "",
        f"`{command}` on {datetime.date.today().isoformat()}: {versions()}.",
        "",
        "Median of N runs after one warm-up; codec/TF below 1 means codec is faster. "
        "Both produce the same serialized protos and equal arrays (checked by the run).",
        "",
        "| tensor | function | N | TF | codec | codec/TF |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, op, repeats, t_tf, t_codec in codec_rows:
        lines.append(f"| {label} | {op} | {repeats} | {fmt_time(t_tf)} | {fmt_time(t_codec)} | "
                     f"{ratio(t_codec, t_tf)} |")
    if import_rows:
        lines += [
            "",
            "## Import cost",
            "",
            "A fresh `python -c STATEMENT` started from python/: median wall time (interpreter "
            "start included) and median peak RSS.",
            "",
            "| statement | wall | peak RSS |",
            "| --- | ---: | ---: |",
        ]
        for label, statement, wall, rss in import_rows:
            lines.append(f"| `{statement}` | {fmt_time(wall)} | {rss / 1024:.0f} MiB |")
    lines += [
        "",
        "The 64 MiB rows are memory-bound: both sides copy the data twice (numpy array to "
        "`bytes`, `bytes` into the protobuf message, or back), which protobuf's Python API "
        "cannot avoid. codec's make_ndarray reads `tensor_content` once where TF reads it "
        "twice, and reads typed fields (`float_val`...) through numpy instead of a Python "
        "loop.",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the repeats")
    parser.add_argument("--no-imports", action="store_true", help="skip the import-cost table")
    parser.add_argument("--import-repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "codec.md"))
    args = parser.parse_args()
    import_rows = [] if args.no_imports else bench_imports(args.import_repeats)
    codec_rows = bench_codec(args.quick)
    command = "python benchmarks/bench_codec.py" + "".join(
        f" {a}" for a in sys.argv[1:] if not a.startswith("--out"))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(markdown(codec_rows, import_rows, command))
    print(f"written: {os.path.relpath(args.out, REPO)}")


if __name__ == "__main__":
    main()
