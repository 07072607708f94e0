#!/usr/bin/env python3
"""A badly behaved TCP app, on purpose: it leaves a child process running when it exits.

A graceful chat server like chat_server.py in every other way (same protocol; on SIGTERM it
prints `SIGTERM received: closing N clients`, closes its listener, says `server restarting,
please reconnect` to each client, shuts down the write side, reads until the client hangs up,
closes, prints `bye` and exits 0). Its one mistake: at start it spawns a helper (`sleep 100000`,
standing for a background worker, a tunnel, a log shipper) in the app's process group (the
default) with SIGTERM ignored, and never stops it or waits for it. The group's SIGTERM does not stop the
helper and the server exits without it, so the helper is still running after the app has
exited: under procgate the keeper (a subreaper) finds it and SIGKILLs it when the grace ends;
under a plain shell it would live on. The fix: stop your children on SIGTERM (terminate them,
wait for them), or `exec` into the one process that matters. Standard library only.
"""
import asyncio
import itertools
import os
import signal
import subprocess

GOODBYE = b"server restarting, please reconnect\n"


def start_helper():
    # THE MISTAKE: a child that ignores SIGTERM (the disposition survives exec), never stopped.
    helper = subprocess.Popen(
        ["sleep", "100000"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # not even holding the log pipe: the leftover process is the only fault
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN),
    )
    print(f"started helper pid {helper.pid} (it ignores SIGTERM)", flush=True)


async def main():
    port = int(os.environ["PORT"])
    dyno = os.environ.get("DYNO", "chat")
    clients = {}  # writer -> guest name, for the clients still chatting
    handlers = {}  # task -> writer, for every connection still open
    numbers = itertools.count(1)

    async def serve(reader, writer):
        handlers[asyncio.current_task()] = writer
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
            clients.pop(writer, None)
            writer.write_eof()
            await asyncio.wait_for(reader.read(), 2)  # until the client's FIN
        except (ConnectionError, OSError, ValueError, asyncio.TimeoutError):
            pass
        finally:
            clients.pop(writer, None)
            writer.close()
            del handlers[asyncio.current_task()]

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
        del clients[writer]
        writer.write(GOODBYE)
        writer.write_eof()
    if handlers:
        _, stuck = await asyncio.wait(set(handlers), timeout=2)
        for task in stuck:
            handlers[task].transport.abort()
        if stuck:
            await asyncio.wait(stuck, timeout=1)
    print("bye", flush=True)


start_helper()
asyncio.run(main())
