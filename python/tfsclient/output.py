"""stdout: the result in protobuf text format (as the guide prints it) or JSON, and the guard that turns a
failed write into an OutputError."""

import functools
import itertools
import json
import os
import sys

from .errors import OutputError, ServerError
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

    printer_class = _text_printer_class()
    if printer_class is None:  # a protobuf without the printer class: its own float style
        from google.protobuf import text_format

        out.write(text_format.MessageToString(message, descriptor_pool=POOL))
        return
    buffer = io.StringIO()  # passed on to `out` about 1 MB at a time (the printer makes several writes a value)
    printer_class(buffer, out, expand_any, as_utf8=False, descriptor_pool=POOL).PrintMessage(message)
    out.write(buffer.getvalue())


@functools.cache
def _text_printer_class():
    """The guide's text printer (text_format's, floats as the guide shows them, long bytes escaped a chunk at a
    time), made once: --read prints a message per record. None with a protobuf that has no printer class."""
    from google.protobuf import descriptor, text_encoding, text_format

    base = getattr(text_format, "_Printer", None)
    if base is None:
        return None

    class GuidePrinter(base):
        def __init__(self, buffer, final, expand_any, **kwargs):
            super().__init__(buffer, **kwargs)
            self.final, self.expand_any = final, expand_any

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
            try:  # (it writes nothing before the packed bytes have parsed)
                return self.expand_any and super()._TryPrintAsAnyMessage(message)
            except Exception:  # protobuf's DecodeError: bytes that are not their type; printed as they came
                return False

    return GuidePrinter


def to_json(message):
    """The message as protobuf's JSON (json_format, field names as in the .proto, indent 2), a map's keys sorted."""
    printer = _json_printer(streaming=False)
    if printer is None:
        from google.protobuf import json_format

        return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2, descriptor_pool=POOL)
    return json.dumps(printer.convert(message), indent=2)


_VALUES_AT_ONCE = 1 << 16  # values of one repeated field (or one array) converted and written at a time


def write_json(message, out):
    """to_json's text, and a newline, written to `out` as it is made. protobuf's json_format builds the whole
    answer as Python values first (a float in a repeated field becomes a Python float in a list: 34x the answer
    in memory). Here a long repeated field is converted a slice at a time as the JSON is written, and a long bytes
    field (tensor_content) is base64-encoded a chunk at a time into its place, so the text is the same."""
    printer = _json_printer(streaming=True)
    if printer is None:  # a protobuf without the printer class: the whole text at once
        out.write(to_json(message) + "\n")
        return
    tokens = json.JSONEncoder(indent=2).iterencode(printer.convert(message))  # as json.dumps(js, indent=2)
    spliced, nonce = printer.spliced, printer.nonce
    while True:
        text = "".join(itertools.islice(tokens, _VALUES_AT_ONCE))
        if not text:
            break
        while spliced and nonce in text:  # a marker is one token: it is whole in the text
            marker = next(m for m in spliced if m in text)
            before, text = text.split(marker, 1)
            out.write(before + '"')
            write_base64(spliced.pop(marker), out)
            text = '"' + text
        out.write(text)
    out.write("\n")


def _json_printer(streaming):
    """A json_format printer (field names as in the .proto, the bundled pool) that sorts a map's keys (upb's order
    changes from run to run), or None with a protobuf that has no printer class. streaming: long repeated fields
    become LazyValues and long bytes fields markers in printer.spliced, for write_json."""
    printer_class = _json_printer_class()
    return None if printer_class is None else printer_class(streaming)


@functools.cache
def _json_printer_class():
    import secrets

    from google.protobuf import descriptor, json_format

    base = getattr(json_format, "_Printer", None)
    if base is None or not hasattr(base, "_RegularMessageToJsonObject"):
        return None
    field_types = descriptor.FieldDescriptor

    def repeated(field):
        flag = getattr(field, "is_repeated", None)  # protobuf 7; before it, the label
        return flag if flag is not None else field.label == field_types.LABEL_REPEATED

    def is_map(field):
        return field.message_type is not None and field.message_type.GetOptions().map_entry

    class Fields:
        """A message as the printer is to see it: its fields, a long repeated one given as no values."""

        def __init__(self, message, fields):
            self.DESCRIPTOR = message.DESCRIPTOR
            self.fields = fields

        def ListFields(self):
            return self.fields

    class LazyValues(list):
        """A long repeated field's JSON values, converted a slice at a time as the encoder asks for them."""

        def __init__(self, printer, field, values):
            super().__init__()
            self.printer, self.field, self.values = printer, field, values

        def __len__(self):
            return len(self.values)

        def __iter__(self):  # (C iterators all the way: a generator's frame per value cost 10% of the time)
            convert = functools.partial(base._FieldToJsonObject, self.printer, self.field)  # (not bytes)
            slices = (self.values[start:start + _VALUES_AT_ONCE] for start in range(0, len(self.values),
                                                                                      _VALUES_AT_ONCE))
            return map(convert, itertools.chain.from_iterable(slices))

    class Printer(base):
        def __init__(self, streaming):
            super().__init__(preserving_proto_field_name=True, descriptor_pool=POOL)
            self.streaming = streaming
            self.nonce = secrets.token_hex(8)
            self.spliced = {}  # the JSON text of a marker string -> the bytes whose base64 goes in its place

        def convert(self, message):
            return self._MessageToJsonObject(message)

        def _RegularMessageToJsonObject(self, message, js):
            fields, late = [], {}
            for field, value in message.ListFields():
                name = (f"[{field.full_name}]" if field.is_extension
                        else field.name if self.preserving_proto_field_name else field.json_name)
                long_values = (self.streaming and repeated(field) and field.cpp_type != field_types.CPPTYPE_MESSAGE
                               and len(value) > _VALUES_AT_ONCE)
                if long_values:
                    late[name] = LazyValues(self, field, value)
                elif is_map(field):
                    late[name] = None  # sorted below, once converted
                fields.append((field, () if long_values else value))
            js = super()._RegularMessageToJsonObject(Fields(message, fields), js)
            for name, values in late.items():  # each in its own key's place: the field order stays
                js[name] = values if values is not None else dict(sorted(js[name].items()))
            return js

        def _FieldToJsonObject(self, field, value):
            if self.streaming and field.type == field_types.TYPE_BYTES and len(value) > _ESCAPE_CHUNK:
                marker = json.dumps(f"\0{self.nonce}:{len(self.spliced)}\0")
                self.spliced[marker] = value
                return json.loads(marker)
            return super()._FieldToJsonObject(field, value)

    return Printer


def write_base64(data, out):
    """base64 of `data` written a chunk at a time: chunks of a multiple of 3 bytes encode to text that joins."""
    import base64

    step = 3 * (_ESCAPE_CHUNK // 4)
    for start in range(0, len(data), step):
        out.write(base64.b64encode(data[start:start + step]).decode("ascii"))


def to_data(message):
    """The message as to_json writes it, as Python values: for a JSON document that holds several messages."""
    printer = _json_printer(streaming=False)
    if printer is None:
        from google.protobuf import json_format

        return json_format.MessageToDict(message, preserving_proto_field_name=True, descriptor_pool=POOL)
    return printer.convert(message)


def show(message, args, expand_any=True):
    """The message on stdout in the chosen format (--format)."""
    if args.format == "text":
        write_text(message, sys.stdout, expand_any)
        return
    try:  # (the message is made into Python values before any of it is written)
        write_json(message, sys.stdout)
    except Exception as e:
        from google.protobuf import message as protobuf_message

        if not isinstance(e, protobuf_message.DecodeError):
            raise
        raise ServerError(f"the answer holds an Any whose bytes are not its type, which JSON cannot show "
                          f"({' '.join(str(e).split())}): print it with --format text") from None


def dump_json(value):
    print(json.dumps(value))


def json_values(array):
    """An output array as nested lists for JSON; bytes as text (invalid UTF-8 escaped); a complex value as its
    [real, imaginary] pair."""
    if array.dtype == object:
        def text(value):
            if isinstance(value, list):
                return [text(v) for v in value]
            return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
        return text(array.tolist())
    if array.dtype.kind == "c":
        return json_values(pairs(array))
    return array.astype(float).tolist() if array.dtype.kind == "f" else array.tolist()


def write_values(arrays, out):
    """dump_json({name: json_values(array)}) for (name, array) pairs, written to `out` a slice of each array at a
    time: as Python lists a float32 array takes about 8x its size (the --values of a 64 MB answer peaked near 1 GB).
    NaN and Infinity are written bare, as Python's json writes them and as TF Serving's REST API does
    (tensorflow_serving/util/json_tensor.cc writes NaN, Infinity and -Infinity as raw numbers)."""
    out.write("{")
    for i, (name, array) in enumerate(arrays):
        out.write(("" if i == 0 else ", ") + json.dumps(name) + ": ")
        if array.dtype.kind == "c":
            array = pairs(array)
        _write_array(array, out)
    out.write("}\n")


def pairs(array):
    """A complex array as floats, each value a [real, imaginary] pair on a last axis of 2."""
    import numpy as np

    return np.stack([array.real, array.imag], axis=-1)


def _write_array(array, out):
    """One array as json_values writes it, converted a block of at most _VALUES_AT_ONCE values at a time."""
    if array.size <= _VALUES_AT_ONCE or array.ndim == 0:
        out.write(json.dumps(json_values(array)))
        return
    block = max(1, array[0].size)  # values in one element of the first axis
    out.write("[")
    if block > _VALUES_AT_ONCE:
        for i in range(len(array)):
            if i:
                out.write(", ")
            _write_array(array[i], out)
    else:
        step = _VALUES_AT_ONCE // block
        for start in range(0, len(array), step):
            if start:
                out.write(", ")
            out.write(json.dumps(json_values(array[start:start + step]))[1:-1])  # the elements, without [ ]
    out.write("]")


class GuardedStdout:
    """sys.stdout while cli.run runs: a failed write (a full disk) is an OutputError with .stdout set; a closed
    pipe stays a BrokenPipeError (the reader left, e.g. `| head`: not an error).

    Where stdout has a file descriptor, the text is encoded here and written to it with os.write until every byte
    is taken. Python's own buffered writer took a short write (a disk with 1 KB left, `ulimit -f`) as done: the
    rest of the text was dropped, and the command exited 0 with its output cut."""

    _BUFFER = 1 << 16  # bytes gathered before a write

    def __init__(self, stream):
        self._stream = stream
        self._pending, self._size = [], 0
        try:
            stream.flush()  # (whatever was written before, first)
            self._fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # no descriptor (a StringIO): the stream's own writes
            self._fd = None
        errors = getattr(stream, "errors", None)
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        # an encoding that cannot say é (PYTHONIOENCODING=ascii, LANG=C): \xe9, as stderr shows it
        self._errors = "backslashreplace" if errors in (None, "strict") else errors

    def write(self, text):
        if self._fd is None:
            return self._guard(self._stream.write, text)
        data = text.encode(self._encoding, self._errors)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= self._BUFFER:
            self.flush()
        return len(text)

    def flush(self):
        if self._fd is None:
            return self._guard(self._stream.flush)
        data, self._pending, self._size = b"".join(self._pending), [], 0
        return self._guard(_write_all, self._fd, data)

    def drop(self):
        """Forget what is not written yet (after a failed write: it can go nowhere)."""
        self._pending, self._size = [], 0

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


def _write_all(fd, data):
    """Every byte of data to fd: a short write is followed by another (its error then says why), and a
    non-blocking descriptor is waited on until it takes more."""
    import select

    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[written:]


def discard(stream):
    """After a failed write: what is still buffered goes nowhere, so that Python's flush at exit cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
