"""A client that echoes one message, then holds its connection open until the server ends it.

python docs/examples/hold.py PORT
"""

import socket
import sys

with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as sock:
    sock.sendall(b"hello")
    sock.recv(5)
    print("holding a connection open", flush=True)
    try:
        ended = "closed" if sock.recv(1) == b"" else "sent more"
    except ConnectionResetError:
        ended = "reset"
print(f"the server ended the connection ({ended})")
