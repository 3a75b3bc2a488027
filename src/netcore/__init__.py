"""netcore: a completion-queue networking core with an HTTP/1.1 server."""
__version__ = "0.1.0"
