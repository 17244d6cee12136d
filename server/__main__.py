import sys

from .model_servers.main import main

sys.exit(main())
