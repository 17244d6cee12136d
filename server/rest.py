"""TF Serving's HTTP/REST API (--rest_api_port) and the Prometheus metrics page, on the same ServerCore.

Every call goes through the gRPC servicers' own methods (PredictionService, ModelService), so REST
answers with the same checks, the same messages and the same request logging as gRPC; this module
only turns JSON into requests and responses into JSON (rest_json.py), and status codes into HTTP.
"""

import http.server
import logging
import re
import socketserver
import threading
import urllib.parse
from concurrent import futures

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     predict_pb2, regression_pb2)

from . import rest_json, status

log = logging.getLogger("tensorflow_serving.model_servers")

# tensorflow_serving/util/net_http: a status code's HTTP status.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500, grpc.StatusCode.UNAUTHENTICATED: 401,
}

# TF Serving's routes (http_rest_api_util.cc): case-insensitive, matched against the path *with* its query.
_VERSION_OR_LABEL = r"(?:(?:/versions/(?P<version>\d+))|(?:/labels/(?P<label>[^/:]+)))?"
_POST = re.compile(r"(?i)/v1/models/(?P<name>[^/:]+)" + _VERSION_OR_LABEL + r":(?P<verb>classify|regress|predict)")
_GET = re.compile(r"(?i)/v1/models(?:/(?P<name>[^/:]+))?" + _VERSION_OR_LABEL + r"(?:/(?P<metadata>metadata))?")
_REST = re.compile(r"(?i)/v1/.*")
NOT_FOUND_PAGE = "<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"


class _Context:
    """The servicer context of a REST call: abort() raises the status; metrics see entrypoint REST."""

    entrypoint = "REST"

    def abort(self, code, message):
        raise status.ServingError(code, message)

    def invocation_metadata(self):
        return ()


class RestApi:
    """Route, call, answer: (HTTP status, body, content type) for a method, a path (with its query) and a body."""

    def __init__(self, prediction, model, metrics_page=None, timeout_seconds=None, cors=False):
        self.prediction, self.model, self.metrics_page = prediction, model, metrics_page
        self.timeout_seconds, self.cors = timeout_seconds, cors
        self._runner = futures.ThreadPoolExecutor(thread_name_prefix="rest-run") if timeout_seconds else None

    def handle(self, method, uri, body):
        page = self.metrics_page
        if page is not None and uri.split("?", 1)[0] == page.path:
            if uri != page.path:
                return 400, f"Unexpected path: {uri}. Should be {page.path}", "text/plain"
            return 200, page.exposition(), page.content_type
        if not _REST.fullmatch(uri):
            return 404, NOT_FOUND_PAGE, "text/html"
        try:
            return 200, self._dispatch(method, uri, body), "application/json"
        except status.ServingError as e:
            return HTTP_STATUS.get(e.code, 500), rest_json.error(e.message), "application/json"

    def _dispatch(self, method, uri, body):
        if method == "POST" and (match := _POST.fullmatch(uri)) and match["verb"] in ("predict", "classify", "regress"):
            return self._run(lambda: self._post(match, body))
        if method == "GET" and (match := _GET.fullmatch(uri)):
            if not match["name"]:
                raise status.invalid_argument("Missing model name in request.")
            return self._get(match)
        raise status.invalid_argument(f"Malformed request: {method} {uri}")

    def _run(self, call):
        """The call, bounded by --rest_api_timeout_in_ms (DEADLINE_EXCEEDED, HTTP 504, when it runs over)."""
        if self._runner is None:
            return call()
        future = self._runner.submit(call)
        try:
            return future.result(self.timeout_seconds)
        except futures.TimeoutError:
            raise status.ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Timed out after "
                                      f"{self.timeout_seconds * 1000:g} ms (--rest_api_timeout_in_ms)") from None

    def _spec(self, spec, match):
        spec.name = urllib.parse.unquote(match["name"])
        if match["version"] is not None:
            version = int(match["version"])
            if version >= 2**63:
                raise status.invalid_argument(f"Failed to convert version: {match['version']} to numeric.")
            spec.version.value = version
        elif match["label"] is not None:
            spec.version_label = urllib.parse.unquote(match["label"])

    def _get(self, match):
        if match["metadata"] == "metadata":  # matched case-blind, compared exactly: /METADATA is a status call
            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            self._spec(request.model_spec, match)
            return rest_json.metadata(self.prediction.GetModelMetadata(request, _Context()))
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, match)
        response = self.model.GetModelStatus(request, _Context())
        return json_format.MessageToJson(response, preserving_proto_field_name=True, indent=1,
                                         always_print_fields_with_no_presence=True)

    def _post(self, match, body):
        document = rest_json.parse(body)  # rapidjson's parse errors, "Is not object", signature_name's type
        verb = match["verb"]
        if verb == "predict":
            request = predict_pb2.PredictRequest()
            self._spec(request.model_spec, match)
            signature = self._signature_for(request.model_spec, document)
            columnar = rest_json.fill_predict_request(document, signature, request)
            response = self.prediction.Predict(request, _Context())
            return rest_json.predict_response(response, columnar)
        request = (classification_pb2.ClassificationRequest() if verb == "classify"
                   else regression_pb2.RegressionRequest())
        self._spec(request.model_spec, match)
        rest_json.fill_example_request(document, request)
        if verb == "classify":
            return rest_json.classify_response(self.prediction.Classify(request, _Context()))
        return rest_json.regress_response(self.prediction.Regress(request, _Context()))

    def _signature_for(self, spec, document):
        """The SignatureDef the request names (its input types decode the JSON), from the version spec resolves to.

        rest_json.parse has checked that the document is an object and its signature_name a string.
        """
        key = document.get("signature_name") or "serving_default"
        with self.prediction.core.handle(spec) as servable:
            if key not in servable.signatures:
                raise status.invalid_argument(f'Serving signature name: "{key}" not found in signature def')
            return servable.signatures[key]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        api = self.server.api
        code, text, content_type = api.handle(self.command, self.path, body)
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text  # rest_json carries
        # bytes that are not UTF-8 (as rapidjson passes them through) as surrogates
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if api.cors:
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "POST, GET")
            self.send_header("Access-Control-Allow-Headers", "Content-Type")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format, *args):  # no access log on stderr, as TF Serving
        pass


class _HttpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Requests run on a pool of --rest_api_num_threads threads."""

    daemon_threads = True
    allow_reuse_address = False  # a busy port must fail, as for gRPC

    def __init__(self, address, threads):
        self._pool = futures.ThreadPoolExecutor(threads, thread_name_prefix="httprestserver")
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        self._pool.submit(self.process_request_thread, request, client_address)

    def server_close(self):
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class RestServer:
    """The HTTP server on a port (all interfaces, as TF Serving), in a thread; `stop()` ends it."""

    def __init__(self, api, port, threads=4, host="0.0.0.0"):
        self._server = _HttpServer((host, port), threads)
        self._server.api = api
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="rest", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
