"""Import TensorFlow without its start-up noise (shared by the server and the toy model builder)."""

import os
import sys
import tempfile


def import_tensorflow(verbose=False):
    """TensorFlow, imported with its start-up lines silenced unless `verbose`.

    TF writes some lines (oneDNN, CUDA probing) straight to fd 2 before its logging is set up,
    whatever TF_CPP_MIN_LOG_LEVEL says: those are captured during the import and the device set-up,
    and shown only if that fails. TF_CPP_MIN_LOG_LEVEL=0 or 1 asks for them, as does `verbose`.
    """
    if verbose or os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("0", "1"):
        import tensorflow as tf
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        sys.stderr.flush()
        saved = os.dup(2)
        captured = tempfile.TemporaryFile()
        ok = False
        try:
            os.dup2(captured.fileno(), 2)
            import tensorflow as tf
            tf.config.list_physical_devices()
            tf.constant(0.0)  # device initialisation logs here
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not ok:
                captured.seek(0)
                sys.stderr.write(captured.read().decode("utf-8", "replace"))
            captured.close()
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)
    return tf
