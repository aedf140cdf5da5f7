"""The integration fixtures (a real proxy process, real and raw peers), for these tests too.

Not the session-scoped ones: a second copy of ``_no_leftover_processes`` would run its check
before the integration tests' shared proxy is stopped, and kill it. Every proxy these tests
start is stopped by the fixture or test that started it.
"""

from tests.integration.conftest import (  # noqa: F401
    aiohttp_server,
    raw_client,
    raw_server,
    start_proxy,
    ws_echo,
)
