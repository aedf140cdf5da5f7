"""wsproxy: a man-in-the-middle proxy for WebSocket traffic."""
