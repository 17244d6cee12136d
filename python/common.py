"""The one helper the scripts import: the parts of the tfsclient package every script uses, in one place.

What each part does lives in the package (tfsclient/cli.py, output.py, transport.py, errors.py, protos.py);
a script that needs more (Predict inputs, tf.Examples, TFRecords) imports that module from tfsclient itself.
"""

from tfsclient import protos
from tfsclient.cli import parser, per_call, run, set_model_spec, time_left
from tfsclient.errors import ExitStatus, InputError, OutputError, ServerError
from tfsclient.output import dump_json, json_values, show, to_json, to_text
from tfsclient.transport import channel, rpc_error_message

__all__ = ["protos", "parser", "per_call", "run", "set_model_spec", "time_left", "ExitStatus", "InputError",
           "OutputError", "ServerError", "dump_json", "json_values", "show", "to_json", "to_text", "channel",
           "rpc_error_message"]
