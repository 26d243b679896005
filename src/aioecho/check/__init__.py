"""`aioecho check`: conformance cases against an echo endpoint, or the path in front of one.

- cases.py: the cases themselves; report.py: verdicts, the case list, JSON and JUnit (pure);
  html.py: the HTML report (pure)
- config.py (CheckConfig), options.py (argparse), command.py (the runner)
"""
