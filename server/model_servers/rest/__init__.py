"""TF Serving's REST API: the HTTP server (http_server), the routes (api), and JSON <-> protobuf byte for byte
as TF Serving writes it (json_reader, json_writer, json_values, b64, predict_json, examples_json,
metadata_json).

TF Serving parses request bodies with rapidjson 1.1.0 (kParseIterativeFlag | kParseNanAndInfFlag |
kParseStopWhenDoneFlag: any depth, and nothing after the first value is read) and writes every
answer with rapidjson's PrettyWriter (tensorflow_serving/util/json_tensor.cc); the metadata answer
is protobuf's JSON printer output concatenated by hand (model_servers/http_rest_api_util.cc).
This package reproduces both as tensorflow/serving's current source has them: the messages (word
for word, typos included), the number formats and the whitespace.

Strings: JSON text is bytes to rapidjson, which does not validate UTF-8. Here a JSON string is a
Python str decoded with "surrogateescape", so invalid bytes survive as U+DC80..U+DCFF and
`text.encode("utf-8", "surrogateescape")` gives back TF Serving's exact bytes; every str this
package returns follows that convention (it is plain UTF-8 text whenever the bytes were).
"""
