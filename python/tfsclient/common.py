"""What every script imports (`from tfsclient import common`): the parts of the package each one uses, in one place.

What each part does lives in its module (cli.py, output.py, transport.py, errors.py, protos.py);
a script that needs more (Predict inputs, tf.Examples, TFRecords) imports that module from tfsclient itself.
"""

from . import protos
from .cli import parser, per_call, run, set_model_spec, time_left  # first: it quiets gRPC's C core before its import
from .client import Client
from .errors import ExitStatus, InputError, OutputError, ServerError
from .output import dump_json, json_values, show, to_data, to_json, to_text, write_text, write_values
from .transport import rpc_error_message


def client(args):
    """The Client (tfsclient.client) the flags describe: every call of the scripts goes through one."""
    return Client.from_args(args)


__all__ = ["protos", "parser", "per_call", "run", "set_model_spec", "time_left", "ExitStatus", "InputError",
           "OutputError", "ServerError", "dump_json", "json_values", "show", "to_data", "to_json", "to_text", "client",
           "rpc_error_message", "write_text", "write_values"]
