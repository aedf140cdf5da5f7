"""The one thing pyproject.toml does not say: the optional C extension.

``wsproxy.sansio._speedups`` (wsproxy/sansio/_speedups.c) masks WebSocket payloads in C.
``optional=True``: without a compiler or Python headers the build warns and goes on, and
``wsproxy.sansio.masking`` falls back to pure Python. CI sets CI=true, and then
tests/sansio/test_masking.py fails instead of skipping when the extension is missing.
(setuptools also reads ``[tool.setuptools.ext-modules]`` from pyproject.toml, but marks it
experimental and warns on every build, hence this file.)
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wsproxy.sansio._speedups",
            sources=["wsproxy/sansio/_speedups.c"],
            optional=True,
        )
    ]
)
