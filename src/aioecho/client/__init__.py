"""`aioecho client`: send, half-close, check the echo.

- protocol.py: EchoClientProtocol (the seed's client), echo(), connect(), and the streaming
  client of `client -`; datagrams.py: `client --udp`; trace.py: --trace
- config.py (ClientConfig: a target, which bench, ping and check use too), options.py (the
  target options they share, and the client's own), command.py (the runner)
"""
