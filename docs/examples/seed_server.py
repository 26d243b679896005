"""The textbook echo server, as the seed chapter builds it: a Protocol that logs each event and
writes every chunk straight back. No flow control, no drain on shutdown, a Logger per peer.

    python docs/examples/seed_server.py PORT
"""

import asyncio
import logging
import sys


class EchoServer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.address = transport.get_extra_info("peername")
        # one Logger per peer, as the chapter does: the logging module keeps each for ever
        self.log = logging.getLogger(f"EchoServer_{self.address[0]}_{self.address[1]}")
        self.log.debug("connection accepted")

    def data_received(self, data):
        self.log.debug("received %r", data)  # the whole payload formatted, every time
        self.transport.write(data)  # queued without limit when the peer does not read
        self.log.debug("sent %r", data)

    def eof_received(self):
        self.log.debug("received EOF")
        if self.transport.can_write_eof():
            self.transport.write_eof()

    def connection_lost(self, error):
        if error:
            self.log.error("ERROR: %s", error)
        else:
            self.log.debug("closing")
        super().connection_lost(error)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    port = int(sys.argv[1])
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(EchoServer, "127.0.0.1", port))
    logging.getLogger("main").info("listening on 127.0.0.1 port %d", port)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


if __name__ == "__main__":
    main()
