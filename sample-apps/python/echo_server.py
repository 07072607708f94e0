#!/usr/bin/env python3
"""A graceful TCP echo server for procgate's `tcp` type.

Greets each client with `hello $DYNO $PID`, echoes every line back (the line `whoami` gets
`$DYNO $PID` instead, so a client can check where it is), and on SIGTERM (or SIGINT)
stops accepting, says `bye` to and closes each client, then exits 0 within the grace.
"""
import asyncio
import os
import signal


async def main():
    port = int(os.environ["PORT"])
    dyno = os.environ.get("DYNO", "echo")
    clients = set()
    handlers = set()

    async def serve(reader, writer):
        clients.add(writer)
        handlers.add(asyncio.current_task())
        writer.write(f"hello {dyno} {os.getpid()}\n".encode())
        try:
            while line := await reader.readline():
                writer.write(f"{dyno} {os.getpid()}\n".encode() if line.strip() == b"whoami" else line)
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
    print(f"{dyno} listening on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    print(f"SIGTERM received: closing {len(clients)} clients", flush=True)
    server.close()
    for writer in list(clients):
        writer.write(b"bye\n")
        writer.close()
    await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), timeout=10)
    print("bye", flush=True)


asyncio.run(main())
