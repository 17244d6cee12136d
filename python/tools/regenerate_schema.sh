#!/usr/bin/env bash
# Regenerate tfsclient's protobuf and gRPC modules from its .proto schema (python/tfsclient/schema/**/*.proto,
# written by emit_schema.py). The modules are committed; run this after any change to a .proto file.
#
# protoc is grpcio-tools 1.75.1's (libprotoc 31.1): its modules need protobuf >= 6.31.1 at run time, the same
# floor as tensorflow-serving-api 2.21's own, so they run wherever TensorFlow's protobuf does. It is installed in
# a venv of its own (its protobuf < 7 would clash with the dev .venv's pin).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # python/
tools="${PROTOC_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tfsclient-protoc-1.75.1}"
if [ ! -x "$tools/bin/python" ]; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install -q --disable-pip-version-check grpcio-tools==1.75.1 protobuf==6.33.6
fi
find tfsclient/schema -name '*_pb2.py' -o -name '*_pb2_grpc.py' | xargs rm -f
protos=$(find tfsclient/schema -name '*.proto' | sort)
# shellcheck disable=SC2086
"$tools/bin/python" -m grpc_tools.protoc -I . --python_out=. $protos
services=$(grep -l '^service ' $protos)
# shellcheck disable=SC2086
"$tools/bin/python" -m grpc_tools.protoc -I . --grpc_python_out=. $services
# The modules register their files in the schema's own descriptor pool, not protobuf's default one: TensorFlow's
# modules register the same message names there, and a process may import both (tfsclient/schema/__init__.py).
find tfsclient/schema -name '*_pb2.py' -print0 | xargs -0 sed -i \
    -e 's/^DESCRIPTOR = _descriptor_pool\.Default()\.AddSerializedFile(/DESCRIPTOR = _schema.POOL.AddSerializedFile(/' \
    -e 's/^from google\.protobuf import descriptor_pool as _descriptor_pool$/from tfsclient import schema as _schema/'
if grep -l '_descriptor_pool' -r tfsclient/schema --include='*_pb2.py'; then
    echo "regenerate_schema.sh: a module above still uses protobuf's default pool" >&2
    exit 1
fi
# Every folder is a package (setuptools installs packages, and pyproject.toml lists tfsclient.schema's).
find tfsclient/schema -mindepth 1 -type d ! -name __pycache__ -exec sh -c 'touch "$1/__init__.py"' _ {} \;
echo "regenerated $(echo "$protos" | wc -l) files' modules under python/tfsclient/schema" >&2
