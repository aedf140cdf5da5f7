"""The web UI's bounds: what it keeps per message, per connection and in all, and how far a
page may fall behind (``--web-keep`` and ``--web-history`` set two of them)."""

MiB = 1024 * 1024


MESSAGE_KEEP = 1 * MiB  # content kept per message (and per original) for download


CONTENT_BUDGET = 64 * MiB  # content kept in all (--web-keep)


HISTORY = 10_000  # messages kept per connection (--web-history)


MAX_MESSAGES = 200_000  # messages kept in all: about 100 MB of previews at most


MAX_CONNECTIONS = 1_000


HTTP_BODY_KEEP = 16 * 1024  # of a plain HTTP body, for the export


FLUSH_INTERVAL = 0.1  # seconds between two batches (the page repaints ~10 times a second)


MAX_PENDING = 2_000  # events in one batch (some 2 MB of JSON at most); more: dropped_events


SUBSCRIBER_QUEUE = 8 * MiB  # encoded bytes a subscriber may be behind
