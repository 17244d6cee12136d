"""One loaded SavedModel version: its session, signatures and the Predict/metadata calls on it."""

import logging
import os
import threading
import time

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

from ..util import status
from . import tensors
from .predict_io import Prediction

log = logging.getLogger("tensorflow_serving.servables")

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

def _load_error(error, path, tags):
    """A failed SavedModel load as TF Serving words it (TensorFlow's C++ loader, cc/saved_model/loader.cc and
    loader_util): Python's loader raises other types, with other words, for the same faults. Any other error is
    left as it is (the manager reports a TensorFlow error with its own code)."""
    if isinstance(error, RuntimeError) and "MetaGraphDef associated with tags" in str(error):  # an empty file too
        return status.ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find meta graph def matching supplied "
                                   f"tags: {{ {' '.join(tags)} }}. To inspect available tag-sets in the SavedModel, "
                                   "please use the SavedModel CLI: `saved_model_cli`")
    if isinstance(error, OSError) and "Cannot parse file" in str(error):  # env.cc ReadBinaryProto
        return status.ServingError(grpc.StatusCode.DATA_LOSS,
                                   f"Can't parse {os.path.join(path, 'saved_model.pb')} as binary proto")
    if isinstance(error, ValueError) and "not a valid checkpoint" in str(error):
        # TensorFlow's C++ loader goes on without the variables, and every run then fails; refused here at once.
        return status.ServingError(grpc.StatusCode.NOT_FOUND, f"The SavedModel's variables could not be restored: "
                                   f"{os.path.join(path, 'variables', 'variables.index')} was not found")
    return error


class SavedModelServable:
    """A SavedModel loaded the way TF Serving loads it: the `serve` MetaGraphDef in a TF1 session.

    Runs go through callables made from CallableOptions: like TF Serving's C++ session they do
    not check fed shapes against the placeholders' static shapes, and they cost less per call
    than Session.run.
    """

    def __init__(self, name, version, path, tags=("serve",), session_config=None,
                 tensor_content=False, method_name_check=False, batching=None):
        self.name = name
        self.version = version
        self.path = path
        self.tensor_content = tensor_content
        self.method_name_check = method_name_check
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=session_config)
        started = time.monotonic()
        log.info("Reading SavedModel from: %s", path)
        try:
            meta_graph = tf.compat.v1.saved_model.loader.load(self._session, list(tags), path)
        except BaseException as e:
            self._session.close()
            raise _load_error(e, path, tags) from None
        log.info("SavedModel load for tags { %s }; Status: success: OK. Took %d microseconds.",
                 " ".join(tags), (time.monotonic() - started) * 1e6)
        self.signatures = meta_graph.signature_def
        self._callables = {}
        self._callables_lock = threading.Lock()
        self._batcher = None
        if batching is not None:  # (the server's batching.Scheduler, this model's batching.Options)
            from .batching import Batcher
            scheduler, options = batching
            self._batcher = Batcher(scheduler, self._run_unbatched, options)

    def close(self):
        if self._batcher is not None:
            self._batcher.close()
        self._callables.clear()
        self._session.close()

    # -- Predict ------------------------------------------------------------------------------

    def signature(self, name):
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise status.failed_precondition(f'Serving signature key "{name}" not found.')
        return name, self.signatures[name]

    def predict_steps(self, request, model_name):
        """Predict as steps (servables/driver.py): the request (a predict_io.SplitPredictRequest) checked
        against its signature, its one run, the Prediction."""
        signature_name, signature = self.signature(request.model_spec.signature_name)
        if self.method_name_check and signature.method_name not in (
                PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise status.ServingError(
                grpc.StatusCode.INTERNAL,
                "Expected prediction signature method_name to be one of {"
                f"{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {signature.method_name}")
        feeds = self._inputs(request, signature)
        aliases = self._output_aliases(request.output_filter, signature)
        values = yield feeds, [signature.outputs[a].name for a in aliases]
        del feeds  # the inputs' arrays go before the answer is built: a large request's peak is lower by one copy
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model_name
        response.model_spec.version.value = self.version
        response.model_spec.signature_name = signature_name
        return Prediction(response, list(zip(aliases, values)), self.tensor_content)

    @staticmethod
    def _inputs(request, signature):
        request_inputs = request.inputs
        sent, wanted = set(request_inputs), set(signature.inputs)
        if len(sent) > len(wanted) or (len(sent) < len(wanted) and not signature.defaults):
            raise status.invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
                f"Missing but required: {{{','.join(sorted(wanted - sent))}}}.")
        feeds = []
        for alias in sorted(wanted):
            info = signature.inputs[alias]
            if alias not in request_inputs:
                raise status.invalid_argument(
                    f"Signature input alias: {alias}(feed name: {info.name}) not found in request and no "
                    "default value provided. Inputs expected to be in the request "
                    f"{{{','.join(sorted(sent))}}}, or default input alias set: "
                    f"{','.join(sorted(signature.defaults))}")
            proto = request_inputs[alias]
            try:
                value = tensors.to_ndarray(proto, request.take(alias))
            except tensors.ParseError as e:
                detail = f": {e.detail}" if e.detail else ""
                raise status.invalid_argument(f"tensor parsing error: {alias}{detail}") from None
            if info.dtype and proto.dtype != info.dtype:
                raise tensors.error_from_dtype(len(feeds), info.dtype, proto.dtype)
            feeds.append((info.name, value))
        return feeds

    @staticmethod
    def _output_aliases(output_filter, signature):
        if not output_filter:
            return sorted(signature.outputs)
        seen = []
        for alias in output_filter:
            if alias not in signature.outputs:
                raise status.invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in the "
                    f"set {{{','.join(sorted(signature.outputs))}}}.")
            if alias in seen:
                raise status.invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.append(alias)
        return seen

    def run(self, feeds, fetch_names, timeout_ms=0):
        """Run the session, batched with other requests when --enable_batching; returns the fetched arrays.
        TensorFlow cancels a run that overstays `timeout_ms` (0: no bound); a batched request takes its
        timeout to the batch (batching.py)."""
        if self._batcher is not None:
            return self._batcher.run(feeds, fetch_names, timeout_ms)
        return self._run_unbatched(feeds, fetch_names, timeout_ms)

    def submit(self, feeds, fetch_names, timeout_ms, loop=None):
        """A future of run()'s arrays, queued for a batch without waiting for it (an asyncio.Future of `loop`,
        called on its thread; else a concurrent.futures.Future); None when this version does not batch these
        feeds (no batching, or no batchable input): run() them instead."""
        return None if self._batcher is None else self._batcher.submit(feeds, fetch_names, timeout_ms, loop)

    def _run_unbatched(self, feeds, fetch_names, timeout_ms):
        """One session run: feeds is [(tensor name, array)]; returns the fetched arrays in order. TensorFlow
        cancels it after timeout_ms (0: never)."""
        run = self._callable(tuple(name for name, _ in feeds), tuple(fetch_names), timeout_ms)
        try:
            return run(*(value for _, value in feeds))
        except tf.errors.OpError as e:
            raise status.from_tf_error(e) from None

    def _callable(self, feed_names, fetch_names, timeout_ms=0):
        key = (feed_names, fetch_names, timeout_ms)
        run = self._callables.get(key)
        if run is None:
            with self._callables_lock:
                run = self._callables.get(key)
                if run is None:
                    options = config_pb2.CallableOptions(feed=feed_names, fetch=fetch_names)
                    if timeout_ms:
                        options.run_options.timeout_in_ms = timeout_ms
                    try:
                        run = self._session._make_callable_from_options(options)
                    except (tf.errors.OpError, ValueError, KeyError) as e:
                        raise status.invalid_argument(str(e)) from None
                    self._callables[key] = run
        return run

    # -- Metadata -----------------------------------------------------------------------------

    def metadata(self, request):
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.name
        response.model_spec.version.value = self.version
        packed = response.metadata["signature_def"]
        packed.type_url = "type.googleapis.com/tensorflow.serving.SignatureDefMap"
        packed.value = signature_def_map_bytes(self.signatures)
        return response


def signature_def_map_bytes(signatures):
    """The serialized SignatureDefMap of a MetaGraphDef's signature_def map: the model's signatures in the file's
    order, then the internal `__` entries.

    Map order on the wire is unspecified, and protobuf picks its own; each entry is serialized on its own and
    the pieces concatenated (a valid encoding of the whole map), so the order is stable and gives the guide's
    bytes.
    """
    out = b""
    keys = sorted(signatures, key=lambda k: k.startswith("__"))  # stable: keeps the file's order
    for key in keys:
        entry = get_model_metadata_pb2.SignatureDefMap()
        entry.signature_def[key].CopyFrom(signatures[key])
        out += entry.SerializeToString()
    return out
