"""What every script is made of: the parser with the shared flags, the ModelSpec and the deadline they give,
and the one run funnel that turns every expected error into one line on stderr and an exit status.

Exit statuses (errors.ExitStatus): 0 ok, 1 the server answered with an error (or could not be reached),
2 bad usage or bad input (nothing was sent), 130 interrupted (Ctrl-C).
"""

import argparse
import math
import os
import signal
import sys
import time

# gRPC's C core logs handshake failures and the like on stderr itself; the scripts say what failed in
# one line instead. GRPC_VERBOSITY=INFO (or DEBUG/ERROR) in the environment brings its lines back.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc  # noqa: E402  (after GRPC_VERBOSITY)

from . import argtypes, fleet, output, transport  # noqa: E402
from .errors import ExitStatus, InputError, OutputError, ServerError  # noqa: E402
from .text import one_line  # noqa: E402

DEFAULT_SERVER = "localhost:8500"


class UsageParser(argparse.ArgumentParser):
    def error(self, message):
        """Usage errors in two lines (argparse's usage can wrap over many): exit 2."""
        self.exit(ExitStatus.USAGE, f"usage: {self.prog} [options] (see {self.prog} --help)\n"
                                    f"{self.prog}: error: {message}\n")


def parser(description, usage_example, model=True, versions=True, signature=False):
    """An ArgumentParser with the flags every script shares and a usage example in --help."""
    p = UsageParser(description=description, epilog=f"example:\n  {usage_example}",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-s", "--server", type=argtypes.server,
                   default=argtypes.env("TFS_SERVER", DEFAULT_SERVER),
                   help="TF Serving gRPC address: HOST:PORT or any gRPC target such as dns:///host:8500 "
                        "or unix:///tmp/tfs.sock (default: $TFS_SERVER, else %(default)s)"
                        if not os.environ.get("TFS_SERVER") else "TF Serving gRPC address (default: %(default)s)")
    if model:
        p.add_argument("-m", "--model", default="Toy", type=argtypes.text("the model name"),
                       help="model name (default: %(default)s)")
    if versions:
        choice = p.add_mutually_exclusive_group()
        choice.add_argument("-v", "--version", type=argtypes.version, help="model version number (default: the latest)")
        choice.add_argument("-l", "--version-label", metavar="LABEL", type=argtypes.text("the version label"),
                            help="version label, e.g. stable or canary")
    if signature:
        p.add_argument("--signature", default="serving_default", help="signature name (default: %(default)s)")
    p.add_argument("-t", "--timeout", type=argtypes.seconds(infinite=True), default=30.0,
                   help="the deadline of the whole command, in seconds; inf: none (default: %(default)s)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text: protobuf text format, as the guide prints; json: one JSON document")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    transport.add_arguments(p)
    fleet.add_arguments(p)
    return p


def add_file_limit(parser):
    """--max-file-size, for the scripts that read input data files (files.LIMITS has the defaults)."""
    parser.add_argument("--max-file-size", type=argtypes.size, metavar="BYTES",
                        default=argtypes.env("TFS_MAX_FILE_SIZE"),
                        help="the largest input file to read, e.g. 2G (default: 64M for JSON and CSV, 256M for "
                             ".npy, TFRecord and what an .npz unpacks to) [$TFS_MAX_FILE_SIZE]")


def set_model_spec(spec, args, signature=None):
    """A ModelSpec from -m, -v or -l (and a signature name when given)."""
    spec.name = args.model
    if getattr(args, "version", None) is not None:
        spec.version.value = args.version
    elif getattr(args, "version_label", None):
        spec.version_label = args.version_label
    if signature:
        spec.signature_name = signature


def time_left(args):
    """The timeout for the next call: what is left of -t, the deadline of the whole command (None: no deadline)."""
    deadline = getattr(args, "deadline", None)
    if deadline is None:
        return per_call(args)
    left = deadline - time.monotonic()
    if left <= 0:
        raise ServerError(transport.deadline_message(args))
    return left


def per_call(args):
    """-t as the timeout of one call (grpcBench's requests, grpcModelStatus's polls); None for inf."""
    return None if math.isinf(args.timeout) else args.timeout


def run(action, args, program):
    """Run action(args) and turn every expected error into one line on stderr and an exit status (an int).

    action returns None (success) or the ExitStatus to end with (after printing its result itself).
    While it runs: Ctrl-C raises KeyboardInterrupt (exit 130), -t is the deadline of the whole command,
    stdout's write errors are caught; the SIGINT handler and sys.stdout are put back when it returns.
    """
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    stdout, stderr = sys.stdout, sys.stderr
    if stderr is None:  # started with stderr closed (2>&-): print(file=None) would put the error line on stdout
        sys.stderr = open(os.devnull, "w")
    args.deadline = None if math.isinf(args.timeout) else time.monotonic() + args.timeout
    try:
        if stdout is None:  # started with stdout closed (>&-): nowhere to put the result, so nothing is sent
            print(f"{program}: error: cannot write the output: stdout is closed", file=sys.stderr)
            return ExitStatus.RPC_ERROR
        sys.stdout = output.GuardedStdout(stdout)
        return _run(action, args, program, stdout)
    finally:
        sys.stdout = stdout
        if stderr is None:
            sys.stderr.close()
            sys.stderr = None
        signal.signal(signal.SIGINT, previous_handler)


def _run(action, args, program, stdout):
    def written():
        """What the action printed before it failed (a fleet's or a bench's report) goes out before the error line;
        if it cannot, it goes nowhere."""
        try:
            sys.stdout.flush()
        except (OutputError, OSError):
            sys.stdout.drop()
            output.discard(stdout)

    def fail(message, status):
        if args.debug:
            raise
        written()
        message = " ".join(part.strip() for part in str(message).splitlines() if part.strip())  # one line, always
        print(f"{program}: error: {message}", file=sys.stderr)
        return status

    try:
        status = action(args)
        sys.stdout.flush()
        return int(status or ExitStatus.OK)
    except KeyboardInterrupt:
        if args.debug:
            raise
        written()
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:  # `| head`: the reader left; not an error
        sys.stdout.drop()
        output.discard(stdout)
        return ExitStatus.OK
    except OutputError as e:
        if getattr(e, "stdout", False) and not args.debug:
            sys.stdout.drop()
            output.discard(stdout)
        return fail(one_line(e), ExitStatus.RPC_ERROR)
    except grpc.RpcError as e:
        return fail(transport.rpc_error_message(e, args), ExitStatus.RPC_ERROR)
    except ServerError as e:
        return fail(one_line(e), ExitStatus.RPC_ERROR)
    except InputError as e:
        return fail(one_line(e), ExitStatus.USAGE)
    except Exception as e:  # a bug of ours: still one line, the traceback with --debug
        return fail(f"unexpected {type(e).__name__}: {e} (--debug shows the traceback)", ExitStatus.RPC_ERROR)
