"""netcore.http: an HTTP/1.1 server on the iocore completion queue.

Modules, one job each:
  parser      request heads and chunked bodies -> Request, or HTTPError(status)
  request     Request and Headers (lazy decoding)
  response    Response, serialisation, cached Date and heads
  connection  per-connection state machine (bytes in, ordered responses out)
  server      the completion loop (handle_rx / handle_tx), timeouts, shutdown
  workers     serve(), the multi-process supervisor
  limits      Config: every option and its default
"""
from .limits import Config
from .request import Headers, Request
from .response import Response
from .server import Server
from .workers import serve

__all__ = ["Config", "Headers", "Request", "Response", "Server", "serve"]
