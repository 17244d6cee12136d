"""Request-supplied keys looked up in protobuf maps."""


def has_key(proto_map, key):
    """`key in proto_map`, for a str that may hold bytes that are not UTF-8 (REST keeps them as surrogates): such a
    key is in no protobuf map, as its bytes match no key in TF Serving's lookup (protobuf's own check raises)."""
    try:
        return key in proto_map
    except UnicodeEncodeError:
        return False
