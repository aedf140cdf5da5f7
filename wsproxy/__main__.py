"""``python -m wsproxy``."""

import sys

from wsproxy.cli import main

sys.exit(main())
