"""TF Serving's HTTP/REST API (--rest_api_port) and the Prometheus metrics page: an adapter around the Predictor.

Every call is the Predictor's (model_servers/predictor.py), as gRPC's are, so REST answers with the same
checks, the same messages and the same request logging; this module only turns JSON into requests and
responses into JSON (the JSON modules beside this one), and a ServingError into its HTTP status and JSON
body, whole (TF Serving's MakeJsonFromStatus; gRPC's 1024-character cut is gRPC's own).
"""

import logging
import re
import time
import urllib.parse

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     predict_pb2, regression_pb2)

from ...util import status
from . import examples_json, json_reader, metadata_json, predict_json
from .json_writer import error as json_error

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
# model_servers/http_rest_api_util.cc AddCORSHeaders, on every REST answer with --rest_api_enable_cors_support.
CORS_HEADERS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, GET",
                "Access-Control-Allow-Headers": "Content-Type"}
_CORS_ORIGIN = re.compile(r"https?://")
# What TensorFlow says when a run overstays RunOptions.timeout_in_ms (DirectSession); also said when a
# run that TensorFlow cannot cancel (a batched one) overstays it.
TIMED_OUT = "Timed out waiting for notification"
# The path matches case-insensitively (http_rest_api_handler.cc's RE2 has (?i)), the verb exactly: :PREDICT is
# a malformed request.
VERBS = ("predict", "classify", "regress")


class RestApi:
    """Route, call, answer: (HTTP status, body, content type) for a method, a path (with its query) and a body."""

    def __init__(self, predictor, metrics_page=None, timeout_seconds=None, cors=False):
        self.predictor, self.metrics_page = predictor, metrics_page
        self.timeout_seconds, self.cors = timeout_seconds, cors

    def handle(self, method, uri, body, origin=None):
        """(HTTP status, body, content type, extra headers) of one request; `origin`: its Origin header."""
        page = self.metrics_page
        if page is not None and uri.split("?", 1)[0] == page.path:
            if uri != page.path:
                return 400, f"Unexpected path: {uri}. Should be {page.path}", "text/plain", {}
            return 200, page.exposition(), page.content_type, {}
        if not _REST.fullmatch(uri):
            return 404, NOT_FOUND_PAGE, "text/html", {}
        headers = CORS_HEADERS if self.cors else {}
        if method == "OPTIONS":  # a CORS preflight (model_servers/http_server.cc): no body, either way
            if origin and _CORS_ORIGIN.search(origin):
                return 200, "", None, headers
            return 400, "", None, headers  # FAILED_PRECONDITION: Origin header is missing in CORS preflight
        try:
            return 200, self._dispatch(method, uri, body), "application/json", headers
        except status.ServingError as e:
            return HTTP_STATUS.get(e.code, 500), json_error(e.message), "application/json", headers

    def timed_out(self):
        """The answer to a call that ran past --rest_api_timeout_in_ms."""
        return 504, json_error(TIMED_OUT), "application/json", CORS_HEADERS if self.cors else {}

    def _dispatch(self, method, uri, body):
        if method == "POST" and (match := _POST.fullmatch(uri)) and match["verb"] in VERBS:
            return self._post(match, body)
        if method == "GET" and (match := _GET.fullmatch(uri)):
            if not match["name"]:
                raise status.invalid_argument("Missing model name in request.")
            return self._get(match)
        raise status.invalid_argument(f"Malformed request: {method} {uri}")

    def _deadline(self):
        """--rest_api_timeout_in_ms from now: TF Serving puts it in each session run's RunOptions, so TensorFlow
        cancels a run that overstays it (DEADLINE_EXCEEDED, HTTP 504) and the thread is free again. Taken as the
        model is called: the JSON's parsing does not count."""
        return time.monotonic() + self.timeout_seconds if self.timeout_seconds else None

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
            return metadata_json.metadata(self.predictor.metadata(request))
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, match)
        response = self.predictor.status(request)
        return json_format.MessageToJson(response, preserving_proto_field_name=True, indent=1,
                                         always_print_fields_with_no_presence=True)

    def _post(self, match, body):
        document = json_reader.parse(body)  # rapidjson's parse errors, "Is not object", signature_name's type
        verb = match["verb"]
        if verb == "predict":
            request = predict_pb2.PredictRequest()
            self._spec(request.model_spec, match)
            key = document.get("signature_name") or "serving_default"  # json_reader.parse checked its type
            signature = self.predictor.signature(request.model_spec, key)
            columnar = predict_json.fill_predict_request(document, signature, request)
            prediction = self.predictor.predict(request, self._deadline())
            return predict_json.predict_response(prediction.full_message(), columnar)
        request = (classification_pb2.ClassificationRequest() if verb == "classify"
                   else regression_pb2.RegressionRequest())
        self._spec(request.model_spec, match)
        examples_json.fill_example_request(document, request)
        if verb == "classify":
            return examples_json.classify_response(self.predictor.classify(request, self._deadline()))
        return examples_json.regress_response(self.predictor.regress(request, self._deadline()))
