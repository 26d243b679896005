"""`aioecho proxy`: a TCP relay with faults on demand.

- relay.py: the two protocols of a relayed connection, with flow control both ways
- config.py (ProxyConfig), options.py (argparse), command.py (the runner)

A proxy is a server whose protocol relays: it listens through the server package (listeners,
registry, workers) and shapes with its faults.
"""
