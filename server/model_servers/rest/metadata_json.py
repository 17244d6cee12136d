"""GetModelMetadata over REST: protobuf's JSON printer output, concatenated as http_rest_api_util.cc does."""

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from .json_values import internal

# ---------------------------------------------------------------------------------------------
# Metadata.

def _proto_json(message):
    """protobuf's C++ MessageToJsonString with add_whitespace, always_print_fields_with_no_presence and
    preserve_proto_field_names: 1-space indent, int64 as strings, and a newline after the root."""
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=1, ensure_ascii=False,
                                     always_print_fields_with_no_presence=True) + "\n"


def metadata(response) -> str:
    """http_rest_api_util.cc ToJsonString(GetModelMetadataResponse): model_spec and the
    SignatureDefMap printed separately, then concatenated by hand."""
    if "signature_def" not in response.metadata:
        raise internal("Failed to find 'signature_def' key in the GetModelMetadataResponse metadata map.")
    signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    if not response.metadata["signature_def"].Unpack(signature_def_map):
        raise internal("Failed to unpack 'Any' object to 'SignatureDefMap'.")
    return ("{\n" + '"model_spec":' + _proto_json(response.model_spec) + ",\n"
            + '"metadata": {' + '"signature_def": ' + _proto_json(signature_def_map) + "}\n" + "}\n")
