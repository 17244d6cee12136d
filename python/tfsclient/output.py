"""stdout: the result in protobuf text format (as the guide prints it) or JSON, and the guard that turns a
failed write into an OutputError."""

import json
import os
import sys

from .errors import OutputError
from .schema import POOL  # an Any is printed by name from the bundled schema's pool


_ESCAPE_CHUNK = 1 << 20  # bytes of a bytes field escaped and written at a time


def to_text(message, expand_any=True):
    """Protobuf text format, float fields printed as the guide shows them (0.9990350008010864).

    expand_any=False prints an Any as its type_url and packed bytes, as the guide shows metadata.
    """
    import io

    out = io.StringIO()
    write_text(message, out, expand_any)
    return out.getvalue()


def write_text(message, out, expand_any=True):
    """to_text's text written to `out` as it is made: a large answer is never held whole as text. A bytes field
    (tensor_content) is escaped a chunk at a time: escaped, a byte takes up to 4 characters, and the whole text
    of a 250 MB answer, held in a string and copied once more, cost about 16x the answer in memory."""
    import io

    from google.protobuf import text_format

    printer_class = getattr(text_format, "_Printer", None)
    if printer_class is None:  # a protobuf without the printer class: its own float style
        out.write(text_format.MessageToString(message, descriptor_pool=POOL))
        return
    from google.protobuf import descriptor, text_encoding

    class GuidePrinter(printer_class):
        def __init__(self, buffer, final, **kwargs):
            super().__init__(buffer, **kwargs)
            self.final = final

        def PrintFieldValue(self, field, value):
            if field.cpp_type == descriptor.FieldDescriptor.CPPTYPE_FLOAT:
                self.out.write(repr(float(value)))
            elif field.type == descriptor.FieldDescriptor.TYPE_BYTES and len(value) > _ESCAPE_CHUNK:
                self.out.write('"')
                for start in range(0, len(value), _ESCAPE_CHUNK):  # each byte escapes on its own: chunks join
                    self.out.write(text_encoding.CEscape(value[start:start + _ESCAPE_CHUNK], False))
                    self.pass_on()
                self.out.write('"')
            else:
                super().PrintFieldValue(field, value)
            if self.out.tell() >= _ESCAPE_CHUNK:
                self.pass_on()

        def pass_on(self):
            self.final.write(self.out.getvalue())
            self.out.seek(0)
            self.out.truncate()

        def _TryPrintAsAnyMessage(self, message):
            return expand_any and super()._TryPrintAsAnyMessage(message)

    buffer = io.StringIO()  # passed on to `out` about 1 MB at a time (the printer makes several writes a value)
    GuidePrinter(buffer, out, as_utf8=False, descriptor_pool=POOL).PrintMessage(message)
    out.write(buffer.getvalue())


def to_json(message):
    from google.protobuf import json_format

    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2, descriptor_pool=POOL)


def to_data(message):
    """The message as to_json writes it, as Python values: for a JSON document that holds several messages."""
    from google.protobuf import json_format

    return json_format.MessageToDict(message, preserving_proto_field_name=True, descriptor_pool=POOL)


def show(message, args, expand_any=True):
    """The message on stdout in the chosen format (--format)."""
    if args.format == "text":
        write_text(message, sys.stdout, expand_any)
    else:
        sys.stdout.write(to_json(message) + "\n")


def dump_json(value):
    print(json.dumps(value))


def json_values(array):
    """An output array as nested lists for JSON; bytes as text (invalid UTF-8 escaped)."""
    if array.dtype == object:
        def text(value):
            if isinstance(value, list):
                return [text(v) for v in value]
            return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
        return text(array.tolist())
    if array.dtype.kind == "c":
        return [[v.real, v.imag] for v in array.ravel()]
    return array.astype(float).tolist() if array.dtype.kind == "f" else array.tolist()


class GuardedStdout:
    """sys.stdout while cli.run runs: a failed write (a full disk) is an OutputError with .stdout set; a closed
    pipe stays a BrokenPipeError (the reader left, e.g. `| head`: not an error)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._guard(self._stream.write, text)

    def flush(self):
        return self._guard(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)

    @staticmethod
    def _guard(call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            error = OutputError(f"cannot write the output: {e.strerror or e}")
            error.stdout = True
            raise error from None


def discard(stream):
    """After a failed write: what is still buffered goes nowhere, so that Python's flush at exit cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
