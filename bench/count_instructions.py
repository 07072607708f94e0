#!/usr/bin/env python3
"""Instructions per request (router: a new connection each, or `keepalive`: one connection) or
per connection (gateway) of one procgate binary under callgrind: 200 warm-up, the counters
zeroed, 2,000 measured, dumped and read. Deterministic, unlike timings on a shared machine: run it
on two binaries to compare them (bench/README.md, "Counting instead of timing").
usage: bench/count_instructions.py BINARY router|keepalive|gateway WORKDIR
needs valgrind, python3, and `cargo build --release --examples` (the router's backend)"""
import os, re, socket, subprocess, sys, time, glob
binary, kind, work = sys.argv[1], sys.argv[2], sys.argv[3]
keepalive = kind == "keepalive"
if keepalive: kind = "router"
os.makedirs(work, exist_ok=True)
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if kind == "router":
    procfile = f"web: exec {repo}/target/release/examples/web\n"
    args = ["-m", "web=2", "--no-access-log"]
else:
    procfile = f"tcp: exec python3 {repo}/sample-apps/python/echo_server.py\n"
    args = ["-m", "tcp=2"]
open(f"{work}/Procfile", "w").write(procfile)
for old in glob.glob(f"{work}/callgrind.out.*"):
    os.remove(old)
base = "33000" if kind == "router" else "34000"
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
import threading
threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
kept = None
def one():
    global kept
    if keepalive:
        if kept is None:
            sock = socket.create_connection(addr); sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            kept = (sock, sock.makefile("rb"))
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
for _ in range(200): one()
subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True, capture_output=True)
for _ in range(2000): one()
subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True, capture_output=True)
time.sleep(1)
p.terminate()
try:
    p.wait(timeout=30)
except subprocess.TimeoutExpired:
    p.kill(); p.wait()
totals = []
for f in glob.glob(f"{work}/callgrind.out.*"):
    text = open(f).read()
    m = re.search(r"^totals: (\d+)", text, re.M) or re.search(r"^summary: (\d+)", text, re.M)
    if m:
        totals.append((f, int(m.group(1))))
dumps = sorted(totals, key=lambda t: t[0])
measured = [t for t in dumps if re.search(r"\.\d+\.1$", t[0])] or dumps
print(kind, binary, [(os.path.basename(f), n) for f, n in dumps])
best = max(n for f, n in measured)
print(f"{'keepalive' if keepalive else kind}: {best / 2000:,.0f} instructions per {'request' if kind == 'router' else 'connection'}")
