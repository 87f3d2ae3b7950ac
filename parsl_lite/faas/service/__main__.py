"""``python -m parsl_lite.faas.service``: the same as ``python -m parsl_lite.faas.service.server``."""
import sys

from parsl_lite.faas.service.server import main

sys.exit(main())
