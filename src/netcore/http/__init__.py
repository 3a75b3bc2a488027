"""netcore.http: an HTTP/1.1 server on the iocore completion queue.

Modules, one job each (docs/architecture.md shows how they fit):
  parser      request heads and chunked bodies -> Request, or HTTPError(status)
  request     Request and Headers (lazy decoding)
  response    Response, serialisation, per-server Date and head cache
  protocol    per-connection HTTP/1.1 state machine, sans I/O: bytes in,
              events out, responses released in request order
  transport   the completion loop (handle_rx / handle_tx), flow control,
              timeouts, half-close and linger, graceful stop
  server      Server: a transport with the dispatcher of the app's interface
  workers     serve(), the multi-process supervisor
  limits      Config: every option and its default
The application interfaces (native, WSGI, ASGI) are in netcore.frontends.
"""
from .limits import Config
from .request import Headers, Request
from .response import Response
from .server import Server
from .workers import serve

__all__ = ["Config", "Headers", "Request", "Response", "Server", "serve"]
