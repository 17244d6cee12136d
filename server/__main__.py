import signal
import sys

# Until main's handler is in place (after TensorFlow's 2-3 s import), SIGINT ends the process at once and quietly,
# as SIGTERM does and as both do TF Serving's binary: Python's own handler would print a KeyboardInterrupt's
# traceback from inside the import.
signal.signal(signal.SIGINT, signal.SIG_DFL)

from .model_servers.main import main  # noqa: E402 (after the signal's disposition)

sys.exit(main())
