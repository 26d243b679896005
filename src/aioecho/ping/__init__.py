"""`aioecho ping`: round trips, probe by probe, over TCP, TLS, Unix sockets and UDP.

- engine.py: ping(), the probes on their timetable; stats.py: ProbeResult and the summary (pure)
- config.py (PingConfig), options.py (argparse), command.py (the runner: lines, JSON, CSV)
"""
