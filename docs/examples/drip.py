"""A client that writes its message one byte at a time, 20 ms apart, then half-closes and prints
the echo: the server's data_received sees the chunks the network made, not the writes.

    python docs/examples/drip.py PORT TEXT
"""

import socket
import sys
import time

port, text = int(sys.argv[1]), sys.argv[2].encode()
with socket.create_connection(("127.0.0.1", port)) as sock:
    for byte in text:
        sock.sendall(bytes([byte]))
        time.sleep(0.02)
    sock.shutdown(socket.SHUT_WR)
    echo = b""
    while chunk := sock.recv(4096):
        echo += chunk
print(f"echo: {echo.decode()}")
