"""How the scripts reach the server: plaintext or TLS, compression, retries, waiting; the flags for them.

--retries is not gRPC's own retry policy: that one clamps maxAttempts at 5 (and logs an error line
saying so) and draws each backoff from [0, b], so it cannot promise how long it keeps trying. The
interceptor here retries N times, waits 1, 2, 4... s (at most 10 s, each drawn from [b/2, b]) and
stays within --timeout.
"""

import math
import random
import re
import time

import grpc

from . import argtypes, files
from .errors import InputError
from .text import one_line

COMPRESSIONS = ("none", "gzip", "deflate")
# TF Serving answers up to 2 GB; gRPC's default 4 MB receive limit is what users hit first.
_MAX_MESSAGE = 2**31 - 1
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    # Ping an idle connection no more often than servers accept by default (5 min), never without calls.
    ("grpc.keepalive_time_ms", 300_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
]


def add_arguments(p):
    """TLS, compression, retries and waiting; each also read from a TFS_* variable for deploy pipelines."""
    g = p.add_argument_group("transport (each also from the environment variable shown)")
    g.add_argument("--tls", action=argtypes.Switch, default=argtypes.env("TFS_TLS", False),
                   help="connect with TLS, trusting the system's CAs unless --ca-cert [$TFS_TLS=1]")
    g.add_argument("--ca-cert", metavar="PEM", default=argtypes.env("TFS_CA_CERT"),
                   help="CA certificate(s) that signed the server's certificate; implies --tls [$TFS_CA_CERT]")
    g.add_argument("--client-cert", metavar="PEM", default=argtypes.env("TFS_CLIENT_CERT"),
                   help="client certificate for mutual TLS, with --client-key; implies --tls [$TFS_CLIENT_CERT]")
    g.add_argument("--client-key", metavar="PEM", default=argtypes.env("TFS_CLIENT_KEY"),
                   help="the client certificate's private key [$TFS_CLIENT_KEY]")
    g.add_argument("--server-name", metavar="NAME", default=argtypes.env("TFS_SERVER_NAME"),
                   type=argtypes.text("the server name"),
                   help="the name to check the server's certificate against, when it differs from the "
                        "address (e.g. connecting by IP); implies --tls [$TFS_SERVER_NAME]")
    g.add_argument("--compression", choices=COMPRESSIONS, type=argtypes.choice(COMPRESSIONS),
                   default=argtypes.env("TFS_COMPRESSION", "none"),
                   help="compress requests (default: %(default)s) [$TFS_COMPRESSION]")
    g.add_argument("--retries", type=argtypes.count(0, must="a count is"), default=argtypes.env("TFS_RETRIES", "0"),
                   metavar="N",
                   help="retry a call answered UNAVAILABLE up to N times, waiting 1, 2, 4... s (at most 10 s) "
                        "between tries; never a reload; --timeout bounds it all (default: 0) [$TFS_RETRIES]")
    g.add_argument("--wait-for-ready", action=argtypes.Switch, default=argtypes.env("TFS_WAIT_FOR_READY", False),
                   help="wait (up to --timeout) for a server that is not reachable yet, instead of failing "
                        "at once [$TFS_WAIT_FOR_READY=1]")


def channel(args):
    """The channel the flags describe: plaintext or TLS, compression, retries and wait-for-ready."""
    options = list(_CHANNEL_OPTIONS)
    compression = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}.get(
        getattr(args, "compression", "none"), grpc.Compression.NoCompression)
    if getattr(args, "retries", 0):
        # Notice a restarted server within a second, not after gRPC's reconnect backoff (up to 2 min).
        options += [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                    ("grpc.max_reconnect_backoff_ms", 1000)]
    if wants_tls(args):
        if args.server_name:
            options.append(("grpc.ssl_target_name_override", args.server_name))
        result = grpc.secure_channel(args.server, _credentials(args), options=options, compression=compression)
    else:
        result = grpc.insecure_channel(args.server, options=options, compression=compression)
    if getattr(args, "retries", 0) or getattr(args, "wait_for_ready", False):
        return grpc.intercept_channel(result, _RetryInterceptor(args.retries, args.wait_for_ready, report=args))
    return result


def wants_tls(args):
    return bool(getattr(args, "tls", False) or getattr(args, "ca_cert", None) or getattr(args, "client_cert", None)
                or getattr(args, "client_key", None) or getattr(args, "server_name", None))


def _credentials(args):
    if bool(args.client_cert) != bool(args.client_key):
        raise InputError("mutual TLS needs both --client-cert and --client-key")

    def pem(flag, path):
        if not path:
            return None
        data = files.read_input(path, flag, "pem")
        if b"-----BEGIN " not in data:
            raise InputError(f"{flag}: {path} is not a PEM file (it has no -----BEGIN line)")
        return data

    ca, key, cert = pem("--ca-cert", args.ca_cert), pem("--client-key", args.client_key), pem("--client-cert",
                                                                                            args.client_cert)
    if ca is not None:
        _check_ca(args.ca_cert, ca)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def _check_ca(path, data):
    """A CA file that OpenSSL cannot read is ours to report (gRPC's handshake error would not say which file)."""
    import ssl

    try:
        ssl.create_default_context(cadata=data.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as e:
        # the pattern: OpenSSL's source line
        reason = one_line(re.sub(r"\s*\(_ssl\.c:\d+\)$", "", one_line(e, fold=True)), 160, more="")
        raise InputError(f"--ca-cert: {path} holds no certificate that can be read ({reason})") from None


def tls_hint(details, args):
    """A TLS failure, said as what to change; None if the failure is not about TLS."""
    low = details.lower()
    where = f"TLS handshake with {args.server} failed"
    # A closed socket is a TLS hint only when no connection was made: a server that dies in a call closes it too.
    connecting = "failed to connect" in low or "handshake" in low
    if not wants_tls(args):
        if connecting and ("socket closed" in low or "connection reset" in low or "handshake" in low):
            return (f"connection with {args.server} closed ({one_line(details, 160, fold=True)}): "
                    "if the server uses TLS, add --tls (and --ca-cert)")
        return None
    if "wrong_version_number" in low:
        return f"{where}: the server does not speak TLS (drop --tls and the certificate flags)"
    if "hostname verification" in low:
        return f"{where}: its certificate is not for that name (give the name it has with --server-name)"
    if "certificate_verify_failed" in low:
        return f"{where}: its certificate is not signed by a CA we trust (give the CA with --ca-cert)"
    if ("security handshaker" in low or "invalid private key" in low) and args.client_cert:
        return f"{where}: --client-cert and --client-key are not a valid certificate and its key"
    if connecting and ("socket closed" in low or "connection reset" in low):
        hint = (" (is the server's CA the one that signed --client-cert?)" if args.client_cert
                else ": it may want a client certificate (--client-cert and --client-key)")
        return f"{where}, the server closed the connection{hint}"
    if connecting and ("ssl" in low or "handshake" in low or "certificate" in low):
        return f"{where} ({one_line(details, 200, fold=True)})"
    return None


# HandleReloadConfigRequest is not safe to repeat: a retry could apply a config twice or after a newer one.
UNSAFE = frozenset({"/tensorflow.serving.ModelService/HandleReloadConfigRequest"})


class _RetryInterceptor(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, retries, wait_for_ready, report=None, sleep=time.sleep):
        """report: an object whose `attempts` is set to the attempts the last call made (for error messages)."""
        self.retries, self.wait_for_ready, self._report, self._sleep = retries, wait_for_ready, report, sleep

    def intercept_unary_unary(self, continuation, details, request):
        if self.wait_for_ready:
            details = _with(details, wait_for_ready=True)
        retries = 0 if details.method in UNSAFE else self.retries
        deadline = None if details.timeout is None else time.monotonic() + details.timeout
        backoff = 1.0
        for attempt in range(retries + 1):
            if self._report is not None:
                self._report.attempts = attempt + 1
            outcome = continuation(details, request)
            if attempt == retries or outcome.exception() is None or outcome.code() != grpc.StatusCode.UNAVAILABLE:
                return outcome
            pause = random.uniform(backoff / 2, backoff)
            if deadline is not None and time.monotonic() + pause >= deadline:
                return outcome
            self._sleep(pause)
            backoff = min(backoff * 2, 10.0)
            if deadline is not None:
                details = _with(details, timeout=deadline - time.monotonic())
        return outcome


def _with(details, **changes):
    fields = {name: getattr(details, name, None) for name in
              ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")}
    fields.update(changes)
    return _Details(**fields)


class _Details(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready, self.compression = credentials, wait_for_ready, compression


def rpc_error_message(error, args):
    """A gRPC error as one line that says what to change (the server, TLS, the deadline, the size)."""
    code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        hint = tls_hint(details, args)
        if hint:
            return hint
        low = details.lower()
        if "failed to connect" not in low and ("socket closed" in low or "connection reset" in low):
            return (f"the connection to TF Serving at {args.server} was lost during the call "
                    f"({server_message(details)}): did the server stop?")
        reason = "connection refused" if "refused" in low else server_message(details) or "unavailable"
        attempts = getattr(args, "attempts", 1)
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        return f"cannot reach TF Serving at {args.server}{tried} ({reason}): is the server running?"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and not math.isinf(args.timeout):
        return deadline_message(args)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return f"UNIMPLEMENTED: the server at {args.server} does not implement this call ({server_message(details)})"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        return f"RESOURCE_EXHAUSTED: {details} (the server's message size limit; send less at once)"
    return f"{code.name}: {server_message(details)}"


def deadline_message(args):
    return f"no answer from TF Serving at {args.server} within {args.timeout:g}s (raise it with --timeout)"


def server_message(details, limit=400):
    """A server message on one line: TF's node context dropped, whitespace folded, long dumps cut."""
    details = details.split("\n\t [[{{node", 1)[0]
    text = one_line(details, fold=True)
    if "Data types don't match" in text:
        text += " (force a feature's type with --feature-type NAME=float)"
    return one_line(text, limit, more="... (--debug shows all)")
