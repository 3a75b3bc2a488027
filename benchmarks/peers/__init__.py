"""Peer servers written for the suite: the C floor (c_server.c), asyncio
Protocol servers on uvloop or the default loop (protocol_server.py), the
echo servers of the core benchmark (echo_server.py) and a launcher that
lets fastwsgi run where pkg_resources is gone (fastwsgi_serve.py)."""
