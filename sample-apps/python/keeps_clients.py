#!/usr/bin/env python3
"""A badly behaved TCP app, on purpose: on SIGTERM it keeps its clients open.

It speaks chat_server.py's protocol (`welcome to chat on $DYNO, you are guest-N`, lines relayed
to the other clients, `/quit`) and gets most of SIGTERM right: it prints `SIGTERM received:
waiting for N clients to leave` and closes its listener, so new connections are refused. Its one
mistake: it never closes the clients it has, it waits for them to leave on their own. Clients of
a long-lived connection (chat, a database, a game) never do, so it is still running when the
grace ends and procgate SIGKILLs it (R12): the clients are cut off without a goodbye, at the end
of the grace instead of at once. The fix (chat_server.py): say goodbye to each client, shut down
the write side, read until the client hangs up, close, exit. Standard library only.
"""
import asyncio
import itertools
import os
import signal


async def main():
    port = int(os.environ["PORT"])
    dyno = os.environ.get("DYNO", "chat")
    clients = {}  # writer -> guest name
    numbers = itertools.count(1)

    async def serve(reader, writer):
        name = f"guest-{next(numbers)}"
        clients[writer] = name
        writer.write(f"welcome to chat on {dyno}, you are {name}\n".encode())
        try:
            while line := await reader.readline():
                text = line.rstrip(b"\r\n").decode(errors="replace")
                if text == "/quit":
                    break
                for other in clients:
                    if other is not writer:
                        other.write(f"{name}: {text}\n".encode())
        except (ConnectionError, ValueError):
            pass
        finally:
            del clients[writer]
            writer.close()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    print(f"{dyno} listening on 127.0.0.1:{port}", flush=True)

    await stop.wait()
    print(f"SIGTERM received: waiting for {len(clients)} clients to leave", flush=True)
    server.close()
    # THE MISTAKE: nothing tells the clients to go, so this waits until SIGKILL.
    while clients:
        await asyncio.sleep(0.1)
    print("bye", flush=True)


asyncio.run(main())
