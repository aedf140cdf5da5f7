"""``iso_time`` caches the formatted second: it must still say exactly what datetime says."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from wsproxy.capture.records import iso_time


def _datetime(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")
    except (OverflowError, OSError, ValueError):
        return "1970-01-01T00:00:00.000000+00:00"


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_iso_time_is_datetimes_isoformat(ts: float) -> None:
    assert iso_time(ts) == _datetime(ts)


@given(st.integers(0, 2**33), st.sampled_from([0.0, 4.999e-7, 5e-7, 5.001e-7, 0.9999995, 0.5]))
def test_rounding_at_the_microsecond_and_the_second(second: int, frac: float) -> None:
    for ts in (second + frac, -(second + frac), second - frac):
        assert iso_time(ts) == _datetime(ts)
