"""``python -m wsproxy.web``: the same as the ``wsproxy-web`` command."""

import sys

from wsproxy.web.cli import main

sys.exit(main())
