"""`aioecho bench`: a load generator with honest percentiles.

- engine.py: closed- and open-loop load on kept connections; result.py: BenchResult, the
  figures, JSON, and merging results (pure)
- newconn.py: --new-connection, a connection per request
- config.py (BenchConfig), options.py (argparse, `bench merge` too), command.py (the runner:
  --spawn, --workers, --start-at, `bench merge`)

It connects as the client does (client.config, client.protocol.connect).
"""
