"""What a script does first when it is started as a command, before its slower imports (grpc, protos).

Nothing here runs on import: a test or a program that imports a script keeps its own Ctrl-C handling.
"""

import os
import signal

from .errors import ExitStatus


def quiet_interrupts():
    """Ctrl-C while the script is still starting up: exit 130 at once, without a traceback.

    tfsclient.cli.run() replaces this handler while the script works, and puts it back when it returns.
    """
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(ExitStatus.INTERRUPTED))
