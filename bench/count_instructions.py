#!/usr/bin/env python3
"""Instructions per request (router: a new connection each, or `keepalive`: one connection) or
per connection (gateway) of one procgate binary under callgrind. procgate runs twice, with 200
and with 2,200 requests before it stops; the difference of its main process's totals, divided by
2,000, is the figure (the start, the warm-up and the stop cancel out). Deterministic, unlike
timings on a shared machine: run it on two binaries to compare them (bench/README.md, "Counting
instead of timing"). procgate's main process is its anchor's forked child, which
`callgrind_control` cannot reach, hence the two runs.
usage: bench/count_instructions.py BINARY router|keepalive|gateway WORKDIR [TARGET_DIR]
needs valgrind, python3, and `cargo build --release --examples` (the router's backend; TARGET_DIR
defaults to the checkout's target/)"""
import os, re, socket, subprocess, sys, time, glob, threading
binary, kind, work = sys.argv[1], sys.argv[2], sys.argv[3]
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
target = sys.argv[4] if len(sys.argv) > 4 else f"{repo}/target"
keepalive = kind == "keepalive"
if keepalive: kind = "router"
os.makedirs(work, exist_ok=True)
if kind == "router":
    procfile = f"web: exec {target}/release/examples/web\n"
    args = ["-m", "web=2", "--access-log", "none"]
else:
    procfile = f"tcp: exec python3 {repo}/sample-apps/python/echo_server.py\n"
    args = ["-m", "tcp=2"]
open(f"{work}/Procfile", "w").write(procfile)
base = "33000" if kind == "router" else "34000"

def one(addr, kept):
    if keepalive:
        if not kept:
            sock = socket.create_connection(addr); sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            kept.extend([sock, sock.makefile("rb")])
        kept[0].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        length = 0
        while True:
            line = kept[1].readline()
            if line.lower().startswith(b"content-length:"): length = int(line.split(b":")[1])
            if line in (b"\r\n", b""): break
        kept[1].read(length)
        return
    s = socket.create_connection(addr)
    if kind == "router":
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while s.recv(65536): pass
    else:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"0123456789abcde\n")
        f.readline()
    s.close()

def total_instructions(requests):
    """procgate's main process's instructions for a whole run with `requests` requests."""
    for old in glob.glob(f"{work}/callgrind.out.*"):
        os.remove(old)
    cmd = ["valgrind", "--tool=callgrind", "--dump-instr=no", f"--callgrind-out-file={work}/callgrind.out.%p",
           binary, "start", "-p", base, "--web-listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0", "--grace", "1s"] + args
    p = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    addr, routed = None, 0
    deadline = time.time() + 120
    while routed < 2:
        line = p.stdout.readline()
        if not line or time.time() > deadline:
            sys.exit("procgate did not come up: " + line)
        m = re.search(r"(router http|gateway tcp)://([0-9.]+):(\d+)", line)
        if m: addr = (m.group(2), int(m.group(3)))
        routed += "201 app connected" in line
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    # procgate's pid is its anchor; the main process, which routes, is the anchor's child.
    main_pid = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()[0]
    kept = []
    for _ in range(requests): one(addr, kept)
    for s in kept: s.close()
    p.terminate()
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()
    text = open(f"{work}/callgrind.out.{main_pid}").read()
    m = re.search(r"^totals: (\d+)", text, re.M) or re.search(r"^summary: (\d+)", text, re.M)
    return int(m.group(1))

warm, measured = total_instructions(200), total_instructions(2200)
unit = "request" if kind == "router" else "connection"
print(kind, binary, f"main process: {warm:,} instructions with 200, {measured:,} with 2,200")
print(f"{'keepalive' if keepalive else kind}: {(measured - warm) / 2000:,.0f} instructions per {unit}")
