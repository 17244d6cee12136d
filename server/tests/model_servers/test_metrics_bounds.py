"""The metrics page under made-up model names: a request-supplied name costs one series, as in TF Serving."""

import urllib.request

import grpc
import numpy as np
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from testing.paths import TESTDATA
from testing.server import ServerProcess, free_port

PAGE = "/monitoring/prometheus/metrics"


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{PAGE}", timeout=60) as response:
        return response.read()


def test_ten_thousand_unknown_model_names_cost_one_series_each(tmp_path):
    # TF Serving counts every request in request_count (model_name, status) and records request_latency only for
    # one that succeeded (model_servers/prediction_service_impl.cc): a name nobody serves adds one line to the
    # page. Here it added a 36-series histogram and a request_count_by_version series: 20,000 names grew the
    # page by 182 MB and a scrape took 9-12 s.
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    rest_port = free_port()
    server = ServerProcess("--model_name=half_plus_two", f"--model_base_path={TESTDATA}/saved_model_half_plus_two_cpu",
                           f"--monitoring_config_file={monitoring}")
    server.flags.append(f"--rest_api_port={rest_port}")  # after ServerProcess's own --rest_api_port=0
    with server:
        server.wait_for_log(r"Exporting HTTP/REST API at:localhost:\d+ \.\.\.")
        before = scrape(rest_port)
        request = predict_pb2.PredictRequest()
        request.inputs["x"].dtype = 1
        request.inputs["x"].tensor_shape.dim.add(size=1)
        request.inputs["x"].float_val.append(1.0)
        with grpc.insecure_channel(server.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            names = [f"made-up-{i}" for i in range(10_000)]
            for start in range(0, len(names), 500):  # 500 in flight at a time
                calls = []
                for name in names[start:start + 500]:
                    request.model_spec.name = name
                    calls.append(stub.Predict.future(request, timeout=60))
                for call in calls:
                    assert call.exception().code() == grpc.StatusCode.NOT_FOUND
            request.model_spec.name = "half_plus_two"
            assert np.isclose(stub.Predict(request, timeout=30).outputs["y"].float_val[0], 2.5)
        page = scrape(rest_port)
    # The page's size bounds a scrape's time (about 0.1 s for this one on 2 busy CPUs; speed is the benchmarks'
    # to measure, not a test's).
    grown = len(page) - len(before)
    assert grown < 2 * 2**20, grown
    text = page.decode()
    assert text.count('model_name="made-up-') == 10_000  # request_count's one series a name
    assert 'request_count{model_name="made-up-9999",status="NOT_FOUND"} 1.0' in text
    assert 'model_name="half_plus_two"' in text.split(":tensorflow:serving:request_latency_count", 1)[1]
