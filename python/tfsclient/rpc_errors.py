"""A failed call to TF Serving as a typed exception: ``ServingError`` and one subclass per gRPC status code.

Each carries the code and TF Serving's message::

    try:
        client.predict({"x": [[1.0, 2.0]]}, "Toy")
    except tfsclient.NotFoundError as e:    # or any ServingError
        print(e.code(), e.message)          # StatusCode.NOT_FOUND  Servable not found for request: ...

A ServingError is a ``grpc.RpcError`` with grpc's ``code()`` and ``details()``, so code written against grpc's
errors takes it as it is. A reload that the server answers with an error in its ``status`` raises one too.
"""

import grpc


class ServingError(grpc.RpcError):
    """A call TF Serving (or the way to it) ended with a status other than OK."""

    code_name = None  # the subclass's gRPC code, by name

    def __init__(self, code, message, call=None):
        super().__init__(f"{code.name}: {message}")
        self._code, self.message, self._call = code, message, call

    def __reduce__(self):  # pickles (a multiprocessing pool sends it back) without grpc's call
        return from_code, (self._code.name, self.message)

    def trailing_metadata(self):
        """The server's trailing metadata, as grpc's errors give it (None when there was no call)."""
        return self._call.trailing_metadata() if self._call is not None else None

    def initial_metadata(self):
        return self._call.initial_metadata() if self._call is not None else None

    def debug_error_string(self):
        return self._call.debug_error_string() if self._call is not None else None

    def code(self):
        """The gRPC status code (a grpc.StatusCode)."""
        return self._code

    def details(self):
        """TF Serving's message, as grpc's errors give it."""
        return self.message


# One subclass per status code, named as Python names errors: NotFoundError, InvalidArgumentError, ...
_BY_CODE = {}
for _code in grpc.StatusCode:
    if _code is grpc.StatusCode.OK:
        continue
    _name = "".join(part.capitalize() for part in _code.name.split("_")) + "Error"
    _BY_CODE[_code] = globals()[_name] = type(_name, (ServingError,), {
        "code_name": _code.name, "__module__": __name__,
        "__doc__": f"The call ended {_code.name}.", "__qualname__": _name})
del _code, _name

__all__ = ["ServingError", "from_code", "from_rpc_error"] + sorted(cls.__name__ for cls in _BY_CODE.values())


def from_code(code, message, call=None):
    """The ServingError subclass for `code` (a grpc.StatusCode, its name, or TF Serving's numeric error_code)."""
    if isinstance(code, str):
        code = grpc.StatusCode[code]
    elif isinstance(code, int):
        code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return _BY_CODE.get(code, ServingError)(code, message, call)


def from_rpc_error(error):
    """grpc's RpcError of a call, as the ServingError of its code (itself when it is one already)."""
    if isinstance(error, ServingError):
        return error
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else str(error)
    keeps = all(callable(getattr(error, name, None)) for name in ("trailing_metadata", "initial_metadata",
                                                                  "debug_error_string"))
    return from_code(code or grpc.StatusCode.UNKNOWN, details or "", error if keeps else None)
