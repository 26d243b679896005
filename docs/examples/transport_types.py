"""Which transport class does each event loop hand to connection_made?

python docs/examples/transport_types.py
"""

import asyncio

import uvloop


class Report(asyncio.Protocol):
    def connection_made(self, transport):
        kind = type(transport)
        verdict = isinstance(transport, asyncio.Transport)
        print(f"{kind.__module__}.{kind.__qualname__}: an asyncio.Transport? {verdict}")
        transport.close()


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Report, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.read()  # returns once the server has closed
    writer.close()
    server.close()
    await server.wait_closed()


for make_loop in (asyncio.new_event_loop, uvloop.new_event_loop):
    with asyncio.Runner(loop_factory=make_loop) as runner:
        runner.run(main())
