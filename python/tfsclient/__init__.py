"""tfsclient: the library behind the grpc*.py scripts (TF Serving's gRPC API, numpy only, no TensorFlow), and a
small Python API for programs: ``tfsclient.Client`` (client.py) and its typed errors (``tfsclient.ServingError``,
``tfsclient.NotFoundError`` ...: rpc_errors.py), loaded on first use.

Importing the package imports nothing else: each script pays only for the modules it uses.

    client          Client: TF Serving's RPCs, messages or numpy in and out; every call of the scripts too
    rpc_errors      ServingError and one subclass per gRPC code: a failed call, its code and TF Serving's message
    schema          TF Serving's protos, bundled: .proto files and protoc's modules, in a descriptor pool of their own

    common          what every script imports: the parser, the run funnel, the channel, the output, the errors
    startup         what a script does first when started as a command: Ctrl-C while starting exits 130
    text            one helper for user text in a one-line message
    errors          InputError, ServerError, OutputError and ExitStatus (no third-party imports)
    argtypes        every flag's value type (and the TFS_* variables that give defaults)
    files           regular files only, each kind with a size limit
    protos          TF Serving's generated protos, without starting TensorFlow
    codec           TensorProto <-> numpy (tf.make_tensor_proto / tf.make_ndarray drop-ins)
    transport       the channel: TLS, compression, retries, wait-for-ready; an RpcError as one line
    output          stdout: protobuf text or JSON, and the guard that turns a failed write into OutputError
    cli             the parser every script starts from, the ModelSpec, the deadline, the one run funnel
    predict_inputs  -i/--dtype: Predict inputs from the command line and files
    tf_examples     -e/--examples: tf.Examples from the command line and files
    tasks           --task: classify/regress specs and their MultiInference method names
    tfrecord        TFRecord framing (warmup files, request logs)
    loadgen         grpcBench's engine: a run of requests in flight, its tally and percentiles
    prometheus      grpcBench --metrics: the server's Prometheus page, read and compared
    bench_report    grpcBench's reports: text, JSON, sweep table, plots
    fleet           --fleet: a target resolved to every replica, the operation on each, one report
    compare         --fleet --atol: output arrays compared between replicas, the difference in a few lines
    model_config    grpcReloadModel's configs: a config file read and checked, -m's one-model config
    reloading       a config sent: checked served after; to a fleet, each outcome, the rollback, the report
"""


def __getattr__(name):
    """tfsclient.Client and the error classes, imported on first use (PEP 562)."""
    if name == "Client":
        from .client import Client

        return Client
    if name == "ServingError" or (name.endswith("Error") and name[:1].isupper()):
        from . import rpc_errors

        if name in rpc_errors.__all__:
            return getattr(rpc_errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    from . import rpc_errors

    return sorted(set(globals()) | {"Client"} | set(rpc_errors.__all__) - {"from_code", "from_rpc_error"})

