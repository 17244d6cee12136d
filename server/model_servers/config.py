"""TF Serving's text config files: read with a size limit, parsed with its messages.

The model config, batching, monitoring, SSL and session config files all come through `file_bytes` and
`read_text_proto`; a failure is a StartupError with TF Serving's status text (util.h ParseProtoTextFile).
"""

import logging
import os

import grpc

from ..util.regular_files import NotRegularFile, open_regular
from ..util.status import StartupError

# The most a config, batching, monitoring, SSL or session config file may hold (TF Serving has no limit: it
# reads the size stat() gives, so a link to /dev/zero reads as empty there, while reading to the end took
# 13 GB here).
MAX_FILE_BYTES = 64 * 2**20
log = logging.getLogger("tensorflow_serving.model_servers")


def read_text_proto(path, message, data=None):
    """Parse the text-format file `path` (its bytes `data`, if already read) into `message`; StartupError with
    TF Serving's messages (util.h's ParseProtoTextFile) if it can't be."""
    from google.protobuf import text_format

    if data is None:
        data = file_bytes(path)
    try:
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as a file read in text mode
    except UnicodeDecodeError:
        raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid protobuf file: '{path}'") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        detail = str(e).split(" : ", 1)[-1] if e.GetLine() else str(e)
        raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid protobuf file: '{path}'",
                           preface=f"Error parsing text-format {message.DESCRIPTOR.full_name}: "
                                   f"{e.GetLine() or 0}:{e.GetColumn() or 0}: {detail}") from None
    except (ValueError, RecursionError) as e:
        # protobuf lets these out of Parse: an enum number beyond int32 ("Value out of range"),
        # Any fields nested hundreds deep (custom_model_config holding a ModelServerConfig...).
        detail = "messages nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())
        raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid protobuf file: '{path}'",
                           preface=f"Error parsing text-format {message.DESCRIPTOR.full_name}: {detail}") from None
    return message


def read_config_file(path, data=None):
    """The ModelServerConfig in a text file (its bytes `data`, if already read)."""
    from tensorflow_serving.config import model_server_config_pb2

    return read_text_proto(path, model_server_config_pb2.ModelServerConfig(), data)


def single_model_config(name, base_path):
    from tensorflow_serving.config import model_server_config_pb2

    log.info("Building single TensorFlow model file config:  model_name: %s model_base_path: %s",
             name, base_path)
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(name=name, base_path=base_path, model_platform="tensorflow")
    return config


def session_config(options):
    from tensorflow.core.protobuf import config_pb2

    if (options.tensorflow_intra_op_parallelism > 0 and options.tensorflow_inter_op_parallelism > 0
            and options.tensorflow_session_parallelism > 0):
        raise StartupError(
            grpc.StatusCode.INVALID_ARGUMENT, "Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, server_options.tensorflow_inter_op_parallelism) "
            "separately. You cannot configure all.")
    config = config_pb2.ConfigProto()
    if options.tensorflow_session_config_file:  # as server.cc: ParseProtoTextFile, its errors and its limits
        read_text_proto(options.tensorflow_session_config_file, config)
    if options.tensorflow_session_parallelism > 0:
        config.intra_op_parallelism_threads = options.tensorflow_session_parallelism
        config.inter_op_parallelism_threads = options.tensorflow_session_parallelism
    if options.tensorflow_intra_op_parallelism > 0:
        config.intra_op_parallelism_threads = options.tensorflow_intra_op_parallelism
    if options.tensorflow_inter_op_parallelism > 0:
        config.inter_op_parallelism_threads = options.tensorflow_inter_op_parallelism
    return config


def file_bytes(path):
    """The bytes of the regular file `path` (a link is followed), at most MAX_FILE_BYTES; else StartupError."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except NotRegularFile as e:
        raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, f"{path} is not a regular file ({e.kind})") from None
    except OSError as e:
        raise StartupError(grpc.StatusCode.NOT_FOUND, f"{path}; {e.strerror}") from None
    with open(fd, "rb") as f:
        try:
            data = f.read(MAX_FILE_BYTES + 1)  # stat's size can lie (/proc) or change: the read is what counts
        except OSError as e:
            raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}; {e.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, f"{path} is larger than {MAX_FILE_BYTES} bytes")
    return data


def read_ssl_config(path):
    """--ssl_config_file: TF Serving's SSLConfig text, the PEM contents inline (not paths), checked whole."""
    from ..util.local_protos import SSLConfig

    config = read_text_proto(path, SSLConfig())
    for field in ("server_key", "server_cert") + (("custom_ca",) if config.custom_ca else ()):
        if not getattr(config, field):
            raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}: {field} is missing: it must hold a PEM "
                               "block (-----BEGIN ...)")
        if "-----BEGIN " not in getattr(config, field):
            raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}: {field} must hold a PEM block "
                               "(-----BEGIN ...), the file's contents, not its path")
    if config.client_verify and not config.custom_ca:
        raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}: client_verify needs custom_ca, the CA that "
                           "signs the clients' certificates")
    _check_tls_material(path, config)
    return config


def _check_tls_material(path, config):
    """StartupError unless the key and certificate make a pair and custom_ca holds certificates: gRPC would
    fail only as its port binds, with a bind error. Checked with OpenSSL through Python's ssl module."""
    import ssl
    import tempfile

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:  # ssl reads a key and certificate from files only (mode 0700)
        key, cert = os.path.join(folder, "key.pem"), os.path.join(folder, "cert.pem")
        for name, text in ((key, config.server_key), (cert, config.server_cert)):
            with open(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                f.write(text)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as e:
            raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}: server_key and server_cert are not a key "
                               f"and its certificate ({e.reason or e})") from None
    if config.custom_ca:
        try:
            context.load_verify_locations(cadata=config.custom_ca)
        except ssl.SSLError as e:
            detail = f" ({e.reason})" if e.reason else ""
            raise StartupError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"{path}: custom_ca holds no certificate OpenSSL can read{detail}") from None


# Not a TF Serving flag: how long a kept-alive REST connection may stay idle before it is closed.
REST_IDLE_TIMEOUT_VARIABLE = "TFS_REST_IDLE_TIMEOUT_SECONDS"


def rest_idle_timeout(default):
    """$TFS_REST_IDLE_TIMEOUT_SECONDS, or `default`; StartupError unless a number of seconds > 0."""
    text = os.environ.get(REST_IDLE_TIMEOUT_VARIABLE, "")
    try:
        seconds = float(text) if text else default
    except ValueError:
        seconds = -1
    if not seconds > 0 or seconds == float("inf"):
        raise StartupError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"${REST_IDLE_TIMEOUT_VARIABLE} must be a number of seconds > 0, not {text!r}")
    return seconds
