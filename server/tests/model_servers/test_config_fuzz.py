"""Fuzzing (issue 7): the server's text-proto config parser and its flags, whatever they are given.

read_config_file / read_text_proto return the message or raise StartupError, whose message and preface
(the parser's line, printed before "Failed to start server") are one line each; flags.parse and
flags.channel_arguments return their result or raise FlagError with a one-line message. In-process:
neither imports TensorFlow.
"""

import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from server.model_servers import flags
from server.util.local_protos import BatchingParameters, SSLConfig
from server.model_servers.config import read_config_file, read_text_proto
from server.util.status import StartupError
from testing.paths import REPO

TEMPLATES = [os.path.join(REPO, "models", "config", name)
             for name in sorted(os.listdir(os.path.join(REPO, "models", "config"))) if name.endswith(".config.in")]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    return str(tmp_path_factory.mktemp("config_fuzz") / "models.config")


def one_line(text):
    assert text and "\n" not in text and "\r" not in text, repr(text)


def read(path, data, reader=read_config_file):
    """reader(path) after writing data there: the message, or the StartupError (checked)."""
    with open(path, "wb") as f:
        f.write(data)
    try:
        return reader(path)
    except StartupError as e:
        one_line(str(e))
        assert str(e).startswith(("INVALID_ARGUMENT: ", "NOT_FOUND: ")), str(e)
        if e.preface is not None:
            one_line(e.preface)
        return e


def nested_any(depth):
    any_start = "custom_model_config { [type.googleapis.com/tensorflow.serving.ModelServerConfig] { "
    return (any_start * depth + "}" * 2 * depth).encode()


# Tokens that near-valid configs are made of, and the ones that broke parsers elsewhere.
TOKENS = ["{", "}", "<", ">", ":", ";", ",", "[", "]", '"', "'", "#", "\n", " ", "\\", "-", ".", "0", "1", "-1",
          "99999999999999999999999", "-99999999999", "1e999", "nan", "inf", "0x7f", "true", "model_config_list",
          "config", "name", "base_path", "model_platform", "model_version_policy", "specific", "versions",
          "latest", "num_versions", "all", "version_labels", "key", "value", "model_type", "logging_config",
          "sampling_config", "sampling_rate", "custom_model_config", "type_url", "\"\\x\"", "\"\\777\"",
          "\"\\ud800\"", "\"\\U0011ffff\"", "\"\\xff\"", "[type.googleapis.com/tensorflow.serving.ModelServerConfig]",
          "[type.googleapis.com/google.protobuf.Duration]", "[foo.bar]", "\x00", "\ufeff", "\u2028"]


@st.composite
def mutated_configs(draw):
    """A real config (models/config/*.config.in) with a few tokens inserted, ranges deleted or duplicated."""
    with open(draw(st.sampled_from(TEMPLATES)), encoding="utf-8") as f:
        text = f.read()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        end = draw(st.integers(at, min(len(text), at + 40)))
        how = draw(st.sampled_from(["insert", "delete", "duplicate", "replace"]))
        token = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=4)))
        if how == "insert":
            text = text[:at] + token + text[at:]
        elif how == "delete":
            text = text[:at] + text[end:]
        elif how == "duplicate":
            text = text[:end] + text[at:end] + text[end:]
        else:
            text = text[:at] + token + text[end:]
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                 st.lists(st.sampled_from(TOKENS), max_size=30).map(lambda ts: " ".join(ts).encode("utf-8",
                                                                                                  "surrogatepass"))))
@example(b"\xff")
@example(b'model_config_list { config { model_type: -99999999999 } }')  # was ValueError out of Parse
@example(nested_any(300))  # was RecursionError
def test_random_config_text(config_path, data):
    read(config_path, data)


# protobuf's own text parser warns about escapes like '\:' that mutated strings contain: its warning, not ours.
@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")
@FUZZ
@given(mutated_configs())
def test_near_valid_configs(config_path, data):
    read(config_path, data)


@settings(FUZZ, max_examples=max(EXAMPLES // 4, 1))
@given(st.sampled_from([SSLConfig, BatchingParameters]),
       st.one_of(st.binary(max_size=100),
                 st.lists(st.sampled_from(["server_key", "server_cert", "custom_ca", "client_verify", "max_batch_size",
                                           "allowed_batch_sizes", "value", "{", "}", ":", '"a"', "true", "1", "-1",
                                           "99999999999999999999", "[foo]", "\\"]), max_size=12).map(
                     lambda ts: " ".join(ts).encode())))
def test_other_text_protos(config_path, message_class, data):
    read(config_path, data, lambda path: read_text_proto(path, message_class()))


def test_config_files_that_are_not_files(tmp_path):
    for path in (str(tmp_path / "missing.config"), str(tmp_path)):
        with pytest.raises(StartupError) as error:
            read_config_file(path)
        one_line(str(error.value))


def test_nesting_that_parses_is_kept(tmp_path):
    """100 nested Anys parse (as protobuf allows); 1000 are an error, not a RecursionError."""
    path = str(tmp_path / "nested.config")
    assert not isinstance(read(path, nested_any(100)), StartupError)
    error = read(path, nested_any(1000))
    assert isinstance(error, StartupError) and "nested too deeply" in error.preface


# --------------------------------------------------------------------------- flags

FLAG_NAMES = sorted(flags._TYPES) + ["help", "nope", ""]
flag_values = st.one_of(st.text(max_size=12), st.sampled_from(
    ["0", "1", "-1", "true", "false", "yes", "1e3", "nan", "inf", " 5", "٣", "9" * 5000, "a=1,b", "=", "a\nb"]))
flag_args = st.one_of(
    st.text(max_size=20),
    st.tuples(st.sampled_from(FLAG_NAMES), flag_values).map(lambda t: f"--{t[0]}={t[1]}"),
    st.sampled_from(FLAG_NAMES).map(lambda name: f"--{name}"),
    flag_values,
)


@FUZZ
@given(st.lists(flag_args, max_size=6))
@example(["--port=a\nb"])  # was a two-line error
@example(["--port"])
@example(["--grpc_channel_arguments=a=1,b"])
def test_flags_any_argv(argv):
    try:
        options, wants_help = flags.parse(argv)
        flags.channel_arguments(options.grpc_channel_arguments)
    except flags.FlagError as e:
        one_line(str(e))
        return
    assert isinstance(wants_help, bool)


@FUZZ
@given(st.text(max_size=40))
def test_channel_arguments_any_text(text):
    try:
        result = flags.channel_arguments(text)
    except flags.FlagError as e:
        one_line(str(e))
        return
    for key, value in result:
        assert isinstance(key, str) and isinstance(value, (int, str))


def test_the_mutations_reach_every_template():
    """(The strategy's inputs exist: a config template renamed away would make the fuzzing vacuous.)"""
    assert TEMPLATES and all(os.path.getsize(t) > 100 for t in TEMPLATES)
