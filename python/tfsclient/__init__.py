"""tfsclient: the library behind the grpc*.py scripts (TF Serving's gRPC API, numpy only, no TensorFlow runtime).

Importing the package imports nothing else: each script pays only for the modules it uses.

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
