"""The HTTP transport in-process, on a stand-in RestApi (as TF Serving tests its manager with fake loaders):
the paths no real model reaches on demand. End to end it is tested in test_rest_http.py."""

import json
import time

import pytest
import requests

from server.model_servers.rest.http_server import RestServer
from server.model_servers.rest.json_writer import error as json_error
from testing.server import free_port


class StandInApi:
    """RestApi's interface: `handle` sleeps `seconds` (work TensorFlow cannot cancel), or raises on /bug."""

    cors = False

    def __init__(self, timeout_seconds=None):
        self.timeout_seconds = timeout_seconds

    def handle(self, method, uri, body, origin=None):
        if uri == "/bug":
            raise KeyError("a bug")
        time.sleep(float(body or 0))
        return 200, json.dumps({"slept": float(body or 0)}), "application/json", {}

    def timed_out(self):
        return 504, json_error("Timed out waiting for notification"), "application/json", {}


@pytest.fixture
def serve():
    servers = []

    def start(api, **options):
        server = RestServer(api, free_port(), threads=2, host="127.0.0.1", **options).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


def test_with_batching_a_run_past_the_timeout_is_answered_504_on_time(serve):
    url = serve(StandInApi(timeout_seconds=0.3), guard_timeouts=True)
    started = time.monotonic()
    response = requests.post(url + "/v1/models/x:predict", data="3")
    assert response.status_code == 504, response.text
    assert response.json() == {"error": "Timed out waiting for notification"}
    assert time.monotonic() - started < 2.5  # the thread still sleeps its 3 s
    assert requests.post(url + "/v1/models/x:predict", data="0").json() == {"slept": 0.0}  # the other thread


def test_without_the_guard_the_answer_waits_for_the_run(serve):
    """No batching: TensorFlow cancels a run at the timeout itself, so the transport does not answer early."""
    url = serve(StandInApi(timeout_seconds=0.3))
    response = requests.post(url + "/v1/models/x:predict", data="1")
    assert (response.status_code, response.json()) == (200, {"slept": 1.0})


def test_a_bug_in_the_api_is_a_500_in_json_and_the_server_serves_on(serve):
    url = serve(StandInApi())
    response = requests.get(url + "/bug")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal error: KeyError: 'a bug'"}
    assert requests.post(url + "/ok", data="0").status_code == 200
