#!/usr/bin/env python3
"""A badly behaved app: listens on $PORT but ignores SIGTERM, so only SIGKILL stops it (R12)."""
import os
import signal
import socket
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
listener = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
print(f"{os.environ.get('DYNO', 'app')} ignoring SIGTERM on port {os.environ['PORT']}", flush=True)
while True:
    time.sleep(3600)
