"""`aioecho ping`: round trips, probe by probe, over TCP, TLS, Unix sockets and UDP.

- engine.py: ping(), and its stream probes (a greeting first: banner lines, a reflection);
  datagrams.py: UDP's; probes.py: what they share (payload, timetable); stats.py: ProbeResult
  and the summary (pure: the tally of instances for --spread)
- config.py (PingConfig), options.py (argparse), command.py (the runner: lines, JSON, CSV)
"""
