"""`aioecho proxy`: a TCP relay with faults on demand, set at start (--to and the fault flags)
or while it runs (--api: Toxiproxy's HTTP API).

- relay.py: the two protocols of a relayed connection, with flow control both ways
- config.py (ProxyConfig), options.py (argparse), command.py (the runner)
- --api: spec.py (Toxiproxy's shapes, and toxics onto the server's FaultConfig; pure), hub.py
  (the proxies, their toxics and connections), api.py (the HTTP API), datagrams.py (UDP
  proxies), journal.py (events), scenario.py (timed steps), metrics.py (/metrics)

A proxy is a server whose protocol relays: it listens through the server package (listeners,
registry, workers) and shapes with its faults (the Shaper: one engine for flags and toxics).
"""
