"""What a Logger per peer costs: the logging module keeps every Logger it ever made.

python docs/examples/logger_leak.py
"""

import logging
import tracemalloc


def loggers() -> int:
    return sum(isinstance(x, logging.Logger) for x in logging.Logger.manager.loggerDict.values())


tracemalloc.start()
before = loggers()
for port in range(10_000):  # ten thousand peers come and go
    logging.getLogger(f"EchoServer_127.0.0.1_{40000 + port}").debug("connection accepted")
kept = loggers() - before
size, _ = tracemalloc.get_traced_memory()
print(f"{kept} loggers still exist after their peers left, holding {size / 1024 / 1024:.1f} MiB")
