"""Errors with TF Serving's status codes, and their wire forms (gRPC status, StatusProto)."""

import grpc

# tensorflow.error.Code values are identical to gRPC's numeric codes.
CODE_NUMBER = {c: c.value[0] for c in grpc.StatusCode}

_MESSAGE_LIMIT = 1024  # TF Serving truncates longer gRPC error messages (grpc_status_util.cc)


class ServingError(Exception):
    """An error a client receives with TF Serving's code and message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self):
        return f"{self.code.name}: {self.message}"

    def grpc_message(self) -> str:
        if len(self.message) > _MESSAGE_LIMIT:
            return self.message[:_MESSAGE_LIMIT] + "...TRUNCATED"
        return self.message


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
