"""`aioecho server`: the echo endpoint.

- protocol.py: EchoServerProtocol, the plain echo (and its --banner variant)
- serve.py: serve() and Server: listen as ServerConfig says, with the protocol variant it asks
  for; faults.py, trace.py, proxy_protocol.py (PROXY header, its parser proxyheader.py) and
  tls.py (the handshake) hold the variants, which import the plain protocol, never the reverse
- udp.py (UDP echo and its reply policy, ratelimit.py), registry.py (the open connections:
  limits, idle sweep, drain), listeners.py (sockets), stats.py, metrics.py, sdnotify.py
- workers.py: the --workers supervisor
- config.py (ServerConfig, FaultConfig), options.py (argparse), command.py (the runner)

The proxy (proxy/) listens through this package: its listeners, registry, workers and faults.
"""
