"""What can go wrong, as the scripts' exit statuses say it; no third-party imports (tfsclient/startup.py uses it).

cli.run turns each of these into one line on stderr and its exit status.
"""

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    RPC_ERROR = 1  # the server answered with an error, or could not be reached; stdout failed
    USAGE = 2  # bad usage or bad input: nothing was sent
    INTERRUPTED = 130  # Ctrl-C


class InputError(Exception):
    """Bad input found before anything was sent: exit 2."""


class ServerError(Exception):
    """The server's answer is a failure that is not a gRPC error (e.g. a wait that timed out): exit 1."""


class OutputError(Exception):
    """stdout cannot take the result (closed, a full disk): exit 1."""
