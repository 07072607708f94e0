#!/usr/bin/env python3
"""A graceful TCP chat server for procgate's `tcp` type (asyncio, standard library only).

Listens on $HOST:$PORT (HOST defaults to 127.0.0.1) and greets each client with
`welcome to chat on $DYNO, you are guest-N`; every line a client sends goes to every other
client as `guest-N: text`, and the line `/quit` closes that client. SIGTERM (or SIGINT) is
handled before listening. On SIGTERM it prints `SIGTERM received: closing N clients`, closes
its listener (new connections are refused at once), sends each client `server restarting,
please reconnect`, shuts down its write side (a FIN, not a reset) and keeps reading until the
client hangs up (so nothing is left unread at close, which would turn the close into a reset),
then prints `bye` and exits 0, within 2 s however the clients behave. The same protocol is
spoken by chat_server.js, go/chat and rust/chat.rs.
"""
import asyncio
import itertools
import os
import signal

GOODBYE = b"server restarting, please reconnect\n"
LINGER = 2.0  # how long a client may take to hang up after our FIN before we close anyway


async def main():
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ["PORT"])
    dyno = os.environ.get("DYNO", "chat")
    clients = {}  # writer -> guest name, for the clients still chatting
    handlers = {}  # task -> writer, for every connection still open
    numbers = itertools.count(1)

    async def hang_up(reader, writer):
        """Sends a FIN, reads until the client's own FIN (or LINGER), then closes."""
        try:
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
            await asyncio.wait_for(drain(reader), LINGER)
        except (ConnectionError, OSError, asyncio.TimeoutError, ValueError):
            pass
        writer.close()

    async def drain(reader):
        while await reader.read(65536):
            pass

    async def serve(reader, writer):
        handlers[asyncio.current_task()] = writer
        try:
            await chat(reader, writer)
            await hang_up(reader, writer)
        finally:
            del handlers[asyncio.current_task()]

    async def chat(reader, writer):
        name = f"guest-{next(numbers)}"
        clients[writer] = name
        writer.write(f"welcome to chat on {dyno}, you are {name}\n".encode())
        try:
            while line := await reader.readline():
                text = line.rstrip(b"\r\n").decode(errors="replace")
                if writer not in clients:  # shutting down: only read until the client hangs up
                    continue
                if text == "/quit":
                    break
                for other in clients:
                    if other is not writer:
                        other.write(f"{name}: {text}\n".encode())
        except (ConnectionError, ValueError):  # reset, or a line longer than 64 KiB
            pass
        finally:
            clients.pop(writer, None)

    # Handle SIGTERM before listening: a platform may stop the app as soon as it is up.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(serve, host, port)
    print(f"{dyno} listening on {host}:{port}", flush=True)

    await stop.wait()
    print(f"SIGTERM received: closing {len(clients)} clients", flush=True)
    server.close()  # the listening socket is closed now: new connections are refused
    for writer in list(clients):
        del clients[writer]
        writer.write(GOODBYE)
        try:
            writer.write_eof()  # sent once the goodbye is out; the handler reads until the client's FIN
        except OSError:
            pass
    if handlers:
        _, stuck = await asyncio.wait(set(handlers), timeout=LINGER)
        for task in stuck:  # a client that never hung up: drop it
            handlers[task].transport.abort()
        if stuck:
            await asyncio.wait(stuck, timeout=1)
    print("bye", flush=True)


asyncio.run(main())
