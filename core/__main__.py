"""``python -m endpointkit``: the same command line as the ``endpointkit`` script."""

import sys

from .cli import main

sys.exit(main())
