"""tensorflow_model_server: parse the flags, set up the run time, start the server, stop it on a signal.

Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 255 when start-up fails (as TF Serving's
`return -1`): a bad flag, a config file that does not parse, a model that does not load.
"""

import logging
import os
import signal
import sys
import threading
import time

from ..util.status import StartupError
from . import flags, runtime

SERVER_VERSION = "0.1.0"
log = logging.getLogger("tensorflow_serving.model_servers")
STOP_POLL_SECONDS = 0.1  # how soon the main thread acts on a signal (its handler only notes it)


def _start_up_failed(error, server=None):
    """The exit status of a start-up that failed with `error`, after its line (and preface) on stderr."""
    if server is not None:
        server.stop(0)
    if error.preface:
        print(error.preface, file=sys.stderr)
    print(f"Failed to start server. Error: {error}", file=sys.stderr)
    return _leaving(server, 255)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        options, wants_help = flags.parse(argv)
        flags.channel_arguments(options.grpc_channel_arguments)
    except flags.FlagError as e:
        print(f"{e}\nRun tensorflow_model_server --help for the list of flags.", file=sys.stderr)
        return 255
    if wants_help:
        print(flags.usage(), end="")
        return 0
    runtime.set_up_logging()
    try:
        tf = runtime.start_tensorflow()
    except StartupError as e:
        return _start_up_failed(e)
    if options.version:
        print(f"TensorFlow ModelServer: {SERVER_VERSION}-local\nTensorFlow Library: {tf.__version__}")
        return 0
    from .server import ModelServer

    server = ModelServer(options)
    received = []  # the signals that asked for the stop

    def on_signal(signum, frame):
        # The handler runs in the main thread between any two of its steps, and inside itself when signals come
        # fast: it takes no lock and writes no log (the main thread may hold either: a threading.Event's set()
        # takes one, and two close signals hung the server on it), and it only notes the first signal.
        if not received:
            received.append(signal.Signals(signum).name)
            server.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start()
    except StartupError as e:
        if not received:
            return _start_up_failed(e, server)
        # The signal stopped the loads: not the models' fault, and a stop as asked for.
        log.info("Received %s, shutting down.", received[0])
        server.stop()
        log.info("Start-up stopped by %s. Server stopped.", received[0])
        return _stopped(server)
    while not received:
        time.sleep(STOP_POLL_SECONDS)
    log.info("Received %s, shutting down.", received[0])
    server.stop()
    log.info("Server stopped.")
    return _stopped(server)


def _stopped(server):
    """Exit status 0 after a stop. A signal repeated while the server stops changes nothing, and after this must
    not either: at exit Python puts SIG_DFL back in place of its own handlers (not of SIG_IGN), so a SIGTERM sent
    again while the interpreter tears down would end a clean shutdown with "killed by SIGTERM"."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return _leaving(server, 0)


def _leaving(server, code):
    """`code`, or the process ends here with it when work outlived the stop's grace: a model load, a request
    whose run cannot be interrupted (the front doors stopped waiting for it, but its thread runs on), or any
    other call still holding a thread (a health Watch on the batching server). Python would join their threads
    at exit, for as long as they take (a hung one: for good)."""
    leftover = server.leftover if server is not None else None
    loads = leftover.loads if leftover else 0
    requests = leftover.requests if leftover else 0
    busy = _busy_threads() if server is not None else []
    if not (loads or requests or busy):
        return code
    if loads:
        log.info("%d model load(s) still running after the grace; exiting without them.", loads)
    if requests or len(busy) > loads:
        log.info("%d request(s) still running after the grace; exiting without them.", max(requests, len(busy) - loads))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# The request pools' threads (server.py's gRPC executor, rest/http_server.py's pool): Python joins a pool's
# threads at exit even when they are daemons (made from a daemon thread, as grpc.aio's and aiohttp's loops are).
_POOL_THREADS = ("grpc-call", "httprestserver")


def _busy_threads(settle=1.0):
    """The threads Python would wait for at exit (not daemons, or a request pool's) still running after `settle`
    seconds: the idle workers of the pools a stop shut down end at once, those running something do not."""
    end = time.monotonic() + settle
    busy = []
    for thread in threading.enumerate():
        if thread is threading.current_thread() or (thread.daemon and not thread.name.startswith(_POOL_THREADS)):
            continue
        thread.join(max(0.0, end - time.monotonic()))
        if thread.is_alive():
            busy.append(thread)
    return busy


if __name__ == "__main__":
    sys.exit(main())
