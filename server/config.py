"""TF Serving's text config files: read with a size limit, parsed with its messages.

The model config, batching, monitoring, SSL and session config files all come through `file_bytes` and
`read_text_proto`; a failure is a StartupError with TF Serving's status text (util.h ParseProtoTextFile).
"""

import logging
import os
import stat

# The most a config, batching, monitoring, SSL or session config file may hold (TF Serving has no limit: it
# reads the size stat() gives, so a link to /dev/zero reads as empty there, while reading to the end took
# 13 GB here).
MAX_FILE_BYTES = 64 * 2**20
log = logging.getLogger("tensorflow_serving.model_servers")


class StartupError(Exception):
    """Start-up failed; `preface` is a line printed before "Failed to start server" (a parser's error)."""

    def __init__(self, message, preface=None):
        super().__init__(message)
        self.preface = preface


def read_text_proto(path, message, data=None):
    """Parse the text-format file `path` (its bytes `data`, if already read) into `message`; StartupError with
    TF Serving's messages (util.h's ParseProtoTextFile) if it can't be."""
    from google.protobuf import text_format

    if data is None:
        data = file_bytes(path)
    try:
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as a file read in text mode
    except UnicodeDecodeError:
        raise StartupError(f"INVALID_ARGUMENT: Invalid protobuf file: '{path}'") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        detail = str(e).split(" : ", 1)[-1] if e.GetLine() else str(e)
        raise StartupError(
            f"INVALID_ARGUMENT: Invalid protobuf file: '{path}'",
            preface=f"Error parsing text-format {message.DESCRIPTOR.full_name}: "
                    f"{e.GetLine() or 0}:{e.GetColumn() or 0}: {detail}") from None
    except (ValueError, RecursionError) as e:
        # protobuf lets these out of Parse: an enum number beyond int32 ("Value out of range"),
        # Any fields nested hundreds deep (custom_model_config holding a ModelServerConfig...).
        detail = "messages nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())
        raise StartupError(f"INVALID_ARGUMENT: Invalid protobuf file: '{path}'",
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
            "INVALID_ARGUMENT: Either configure server_options.tensorflow_session_parallelism or "
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


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def file_bytes(path):
    """The bytes of the regular file `path` (a link is followed), at most MAX_FILE_BYTES; else StartupError."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below like any non-file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise StartupError(f"NOT_FOUND: {path}; {e.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "another kind of file")
        raise StartupError(f"INVALID_ARGUMENT: {path} is not a regular file ({kind})")
    with open(fd, "rb") as f:
        try:
            data = f.read(MAX_FILE_BYTES + 1)  # stat's size can lie (/proc) or change: the read is what counts
        except OSError as e:
            raise StartupError(f"INVALID_ARGUMENT: {path}; {e.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise StartupError(f"INVALID_ARGUMENT: {path} is larger than {MAX_FILE_BYTES} bytes")
    return data
