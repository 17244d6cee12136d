"""A TensorFlow Serving-compatible model server on TensorFlow: TF Serving's gRPC API, flags and config."""
