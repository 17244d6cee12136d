"""What every script shares: flags, the channel, ModelSpec, the tensor codec, output formats, errors.

Exit codes: 0 ok, 1 the server answered with an error (or could not be reached), 2 bad usage or
bad input (nothing was sent), 130 interrupted (Ctrl-C).
"""

import argparse
import json
import math
import os
import signal
import sys
import time

EXIT_OK, EXIT_RPC_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# gRPC's C core logs handshake failures and the like on stderr itself; the scripts say what failed in
# one line instead. GRPC_VERBOSITY=INFO (or DEBUG/ERROR) in the environment brings its lines back.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc  # noqa: E402  (after GRPC_VERBOSITY)

import tfs_protos as protos  # noqa: E402  TF Serving's protos, without starting the TensorFlow runtime
from codec import make_ndarray, make_tensor_proto  # noqa: E402,F401  numpy drop-ins for TF's functions
import flags  # noqa: E402  the flags' value types
import transport  # noqa: E402  TLS, compression, retries: the channel and its flags

DEFAULT_SERVER = "localhost:8500"


class InputError(Exception):
    """Bad input found before anything was sent: exit 2."""


class ServerError(Exception):
    """The server's answer is a failure that is not a gRPC error (e.g. a wait that timed out): exit 1."""


class OutputError(Exception):
    """stdout cannot take the result (closed, a full disk): exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """Usage errors in two lines (argparse's usage can wrap over many): exit 2."""
        self.exit(EXIT_USAGE, f"usage: {self.prog} [options] (see {self.prog} --help)\n"
                              f"{self.prog}: error: {message}\n")


def parser(description, example, model=True, versions=True, signature=False):
    """An ArgumentParser with the flags every script shares and an example in --help."""
    p = _Parser(description=description, epilog=f"example:\n  {example}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-s", "--server", type=flags.text("the server address"),
                   default=flags.env("TFS_SERVER", DEFAULT_SERVER),
                   help="TF Serving gRPC address: HOST:PORT or any gRPC target such as dns:///host:8500 "
                        "or unix:///tmp/tfs.sock (default: $TFS_SERVER, else %(default)s)"
                        if not os.environ.get("TFS_SERVER") else "TF Serving gRPC address (default: %(default)s)")
    if model:
        p.add_argument("-m", "--model", default="Toy", type=flags.text("the model name"),
                       help="model name (default: %(default)s)")
    if versions:
        choice = p.add_mutually_exclusive_group()
        choice.add_argument("-v", "--version", type=flags.version, help="model version number (default: the latest)")
        choice.add_argument("-l", "--version-label", metavar="LABEL", type=flags.text("the version label"),
                            help="version label, e.g. stable or canary")
    if signature:
        p.add_argument("--signature", default="serving_default", help="signature name (default: %(default)s)")
    p.add_argument("-t", "--timeout", type=flags.seconds(infinite=True), default=30.0,
                   help="the deadline of the whole command, in seconds; inf: none (default: %(default)s)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text: protobuf text format, as the guide prints; json: one JSON document")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    transport.add_arguments(p)
    return p


def add_file_limit(parser):
    """--max-file-size, for the scripts that read input data files (files.LIMITS has the defaults)."""
    parser.add_argument("--max-file-size", type=flags.size, metavar="BYTES", default=flags.env("TFS_MAX_FILE_SIZE"),
                        help="the largest input file to read, e.g. 2G (default: 64M for JSON and CSV, 256M for "
                             ".npy, TFRecord and what an .npz unpacks to) [$TFS_MAX_FILE_SIZE]")


def time_left(args):
    """The timeout for the next call: what is left of -t, the deadline of the whole command (None: no deadline)."""
    deadline = getattr(args, "deadline", None)
    if deadline is None:
        return per_call(args)
    left = deadline - time.monotonic()
    if left <= 0:
        raise ServerError(_deadline_message(args))
    return left


def per_call(args):
    """-t as the timeout of one call (grpcBench's requests, grpcModelStatus's polls); None for inf."""
    return None if math.isinf(args.timeout) else args.timeout


def _deadline_message(args):
    return f"no answer from TF Serving at {args.server} within {args.timeout:g}s (raise it with --timeout)"


def channel(args):
    """The channel the flags describe (transport.py: TLS, compression, retries, wait-for-ready)."""
    return transport.channel(args)


def set_model_spec(spec, args, signature=None):
    spec.name = args.model
    if getattr(args, "version", None) is not None:
        spec.version.value = args.version
    elif getattr(args, "version_label", None):
        spec.version_label = args.version_label
    if signature:
        spec.signature_name = signature


# -- output --------------------------------------------------------------------------------------

def to_text(message, expand_any=True):
    """Protobuf text format, float fields printed as the guide shows them (0.9990350008010864).

    expand_any=False prints an Any as its type_url and packed bytes, as the guide shows metadata.
    """
    from google.protobuf import text_format

    printer_class = getattr(text_format, "_Printer", None)
    if printer_class is None:  # a protobuf without the printer class: its own float style
        return text_format.MessageToString(message)
    import io

    from google.protobuf import descriptor

    class GuidePrinter(printer_class):
        def PrintFieldValue(self, field, value):
            if field.cpp_type == descriptor.FieldDescriptor.CPPTYPE_FLOAT:
                self.out.write(repr(float(value)))
            else:
                super().PrintFieldValue(field, value)

        def _TryPrintAsAnyMessage(self, message):
            return expand_any and super()._TryPrintAsAnyMessage(message)

    out = io.StringIO()
    GuidePrinter(out, as_utf8=False).PrintMessage(message)
    return out.getvalue()


def to_json(message):
    from google.protobuf import json_format

    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2)


def show(message, args, expand_any=True):
    """The message on stdout in the chosen format."""
    sys.stdout.write(to_text(message, expand_any) if args.format == "text" else to_json(message) + "\n")


def dump_json(value):
    print(json.dumps(value))


def json_values(array):
    """An output array as nested lists for JSON; bytes as text (invalid UTF-8 escaped)."""
    if array.dtype == object:
        def text(value):
            if isinstance(value, list):
                return [text(v) for v in value]
            return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
        return text(array.tolist())
    if array.dtype.kind == "c":
        return [[v.real, v.imag] for v in array.ravel()]
    return array.astype(float).tolist() if array.dtype.kind == "f" else array.tolist()


# -- errors --------------------------------------------------------------------------------------

def rpc_error_message(error, args):
    code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        tls_hint = transport.tls_hint(details, args)
        if tls_hint:
            return tls_hint
        low = details.lower()
        if "failed to connect" not in low and ("socket closed" in low or "connection reset" in low):
            return (f"the connection to TF Serving at {args.server} was lost during the call ({_one_line(details)}): "
                    "did the server stop?")
        reason = "connection refused" if "refused" in low else _one_line(details) or "unavailable"
        attempts = getattr(args, "attempts", 1)
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        return f"cannot reach TF Serving at {args.server}{tried} ({reason}): is the server running?"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and not math.isinf(args.timeout):
        return _deadline_message(args)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return f"UNIMPLEMENTED: the server at {args.server} does not implement this call ({details})"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        return f"RESOURCE_EXHAUSTED: {details} (the server's message size limit; send less at once)"
    return f"{code.name}: {_one_line(details)}"


def _one_line(details, limit=400):
    """A server message on one line: TF's node context dropped, whitespace folded, long dumps cut."""
    details = details.split("\n\t [[{{node", 1)[0]
    text = " ".join(details.split())
    if "Data types don't match" in text:
        text += " (force a feature's type with --feature-type NAME=float)"
    return text if len(text) <= limit else text[:limit] + "... (--debug shows all)"


def _flat(error):
    """An error on one line, whatever file names, flag values or inputs it quotes."""
    return str(error).replace("\r", "\\r").replace("\n", "\\n")


class _Output:
    """sys.stdout while run() runs: a failed write (a full disk) is an OutputError; a closed pipe stays a
    BrokenPipeError (the reader left, e.g. `| head`: not an error)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._guard(self._stream.write, text)

    def flush(self):
        return self._guard(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)

    @staticmethod
    def _guard(call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            error = OutputError(f"cannot write the output: {e.strerror or e}")
            error.stdout = True
            raise error from None


def _discard_stdout(stream):
    """After a failed write: what is still buffered goes nowhere, so that Python's flush at exit cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def run(action, args, program):
    """Run action(args) and turn every expected error into one line on stderr and an exit code.

    While it runs: Ctrl-C raises KeyboardInterrupt (exit 130), -t is the deadline of the whole command,
    stdout's write errors are caught; the SIGINT handler and sys.stdout are put back when it returns.
    """
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    stdout = sys.stdout
    args.deadline = None if math.isinf(args.timeout) else time.monotonic() + args.timeout
    try:
        if stdout is None:  # started with stdout closed (>&-): nowhere to put the result, so nothing is sent
            print(f"{program}: error: cannot write the output: stdout is closed", file=sys.stderr)
            return EXIT_RPC_ERROR
        sys.stdout = _Output(stdout)
        return _run(action, args, program, stdout)
    finally:
        sys.stdout = stdout
        signal.signal(signal.SIGINT, previous_handler)


def _run(action, args, program, stdout):
    try:
        action(args)
        sys.stdout.flush()
        return EXIT_OK
    except KeyboardInterrupt:
        if args.debug:
            raise
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `| head`: the reader left; not an error
        _discard_stdout(stdout)
        return EXIT_OK
    except OutputError as e:
        if args.debug:
            raise
        if getattr(e, "stdout", False):
            _discard_stdout(stdout)
        print(f"{program}: error: {_flat(e)}", file=sys.stderr)
        return EXIT_RPC_ERROR
    except grpc.RpcError as e:
        if args.debug:
            raise
        print(f"{program}: error: {rpc_error_message(e, args)}", file=sys.stderr)
        return EXIT_RPC_ERROR
    except ServerError as e:
        if args.debug:
            raise
        print(f"{program}: error: {_flat(e)}", file=sys.stderr)
        return EXIT_RPC_ERROR
    except InputError as e:
        if args.debug:
            raise
        print(f"{program}: error: {_flat(e)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a bug of ours: still one line, the traceback with --debug
        if args.debug:
            raise
        print(f"{program}: error: unexpected {type(e).__name__}: {e} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_RPC_ERROR
