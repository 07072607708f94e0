#!/usr/bin/env python3
"""A TCP app written for Heroku's Ruppell's Sockets add-on, standard library only.

It reads nothing but the add-on's variables: it listens on `RUPPELLS_SOCKETS_LOCAL_PORT` and
tells each client where the service is reached from outside, `RUPPELLS_SOCKETS_FRONTEND_URI`:
`welcome to tcp://HOST:PORT (socket.1)`. Then every line a client sends comes back upper-cased.
On SIGTERM (or SIGINT) it stops accepting, says `bye` to and closes each client, and exits 0.
"""
import asyncio
import os
import signal


async def main():
    port = int(os.environ["RUPPELLS_SOCKETS_LOCAL_PORT"])
    frontend = os.environ["RUPPELLS_SOCKETS_FRONTEND_URI"]
    dyno = os.environ.get("DYNO", "socket")
    clients = set()
    handlers = set()

    async def serve(reader, writer):
        clients.add(writer)
        handlers.add(asyncio.current_task())
        writer.write(f"welcome to {frontend} ({dyno})\n".encode())
        try:
            while line := await reader.readline():
                writer.write(line.upper())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            clients.discard(writer)
            writer.close()
            handlers.discard(asyncio.current_task())

    # Handle SIGTERM before listening: a platform may stop the app as soon as it is up.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    print(f"{dyno} listening on 127.0.0.1:{port}; clients connect to {frontend}", flush=True)
    await stop.wait()
    print(f"SIGTERM received: closing {len(clients)} clients", flush=True)
    server.close()
    for writer in list(clients):
        writer.write(b"bye\n")
        writer.close()
    await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), timeout=10)
    print("bye", flush=True)


asyncio.run(main())
