"""The gRPC status message of a ServingError: cut after 1024 bytes of UTF-8, as TF Serving's grpc_status_util.cc."""

import grpc
import pytest

from server.model_servers.grpc.servicers import grpc_message
from server.util.status import ServingError


@pytest.mark.parametrize("message, expected", [
    ("x" * 1024, "x" * 1024),  # at the limit: whole
    ("x" * 1025, "x" * 1024 + "...TRUNCATED"),
    ("é" * 600, "é" * 512 + "...TRUNCATED"),  # 1200 bytes: cut by bytes, not by characters
    ("x" + "é" * 600, "x" + "é" * 511 + "...TRUNCATED"),  # a character cut in two is left out
    ("😀" * 300, "😀" * 256 + "...TRUNCATED"),
])
def test_a_message_is_cut_after_1024_bytes(message, expected):
    assert grpc_message(ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)) == expected
