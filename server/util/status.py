"""Errors with TF Serving's status codes (gRPC's code numbers), and their StatusProto form."""

import grpc

# tensorflow.error.Code values are identical to gRPC's numeric codes.
CODE_NUMBER = {c: c.value[0] for c in grpc.StatusCode}


class ServingError(Exception):
    """An error a client receives with TF Serving's code and message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self):
        return f"{self.code.name}: {self.message}"


class StartupError(ServingError):
    """Start-up failed (the server exits 255), or a config file read later cannot be served. `preface`: a line
    said before the error (a parser's own, as TF Serving prints protobuf's before "Failed to start server")."""

    def __init__(self, code: grpc.StatusCode, message: str, preface: str = None):
        super().__init__(code, message)
        self.preface = preface


def invalid_argument(message):
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message):
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message):
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unknown(message):
    return ServingError(grpc.StatusCode.UNKNOWN, message)


def from_tf_error(error) -> ServingError:
    """A TensorFlow OpError, passed through with its own code as TF Serving does."""
    code = getattr(error, "error_code", None)
    for status_code, number in CODE_NUMBER.items():
        if number == code:
            return ServingError(status_code, getattr(error, "message", str(error)))
    return unknown(str(error))


def fill_status_proto(proto, error: "ServingError | None"):
    """Set a tensorflow.serving.StatusProto: error_code 0 and no message when OK."""
    proto.error_code = 0 if error is None else CODE_NUMBER[error.code]
    proto.error_message = "" if error is None else error.message
