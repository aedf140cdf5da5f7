"""``python -m wsproxy.web``: the same as ``wsproxy-web``."""

import sys

from wsproxy.web.cli import main

sys.exit(main())
