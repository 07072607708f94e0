#!/usr/bin/env node
// A graceful TCP chat server for procgate's `tcp` type (Node 20, `net` module, no npm packages).
//
// Listens on $HOST:$PORT (HOST defaults to 127.0.0.1) and greets each client with
// `welcome to chat on $DYNO, you are guest-N`; every line a client sends goes to every other
// client as `guest-N: text`, and the line `/quit` closes that client. SIGTERM (or SIGINT) is
// handled before listening. On SIGTERM it prints `SIGTERM received: closing N clients`, closes
// its listener (new connections are refused at once), sends each client `server restarting,
// please reconnect` and ends its write side (a FIN, not a reset) while still reading until the
// client hangs up (so nothing is left unread at close, which would turn the close into a reset),
// then prints `bye` and exits 0, within 2 s however the clients behave. Same protocol as
// python/chat_server.py, go/chat and rust/chat.rs. (Writes to a pipe are synchronous on Linux,
// so each log line is out before the next statement runs.)
'use strict';
const net = require('net');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT);
const dyno = process.env.DYNO || 'chat';
const LINGER_MS = 2000; // how long a client may take to hang up after our FIN
const MAX_LINE = 64 * 1024;

const clients = new Map(); // socket -> guest name, for the clients still chatting
const open = new Set(); // every connection not yet closed
let guests = 0;
let stopping = false;

function log(line) {
  process.stdout.write(`${line}\n`);
}

// Sends `last` (if any), then a FIN; the socket keeps reading until the client's own FIN
// (Node then closes it: allowHalfOpen is false), or is dropped after LINGER_MS.
function hangUp(socket, last) {
  clients.delete(socket);
  socket.end(last);
  socket.setTimeout(LINGER_MS, () => socket.destroy());
}

const server = net.createServer((socket) => {
  const name = `guest-${++guests}`;
  clients.set(socket, name);
  open.add(socket);
  socket.setEncoding('utf8');
  socket.write(`welcome to chat on ${dyno}, you are ${name}\n`);
  if (stopping) hangUp(socket, 'server restarting, please reconnect\n'); // accepted just before the close
  let pending = '';
  socket.on('data', (chunk) => {
    if (!clients.has(socket)) return; // closing: only read until the client hangs up
    pending += chunk;
    let newline;
    while ((newline = pending.indexOf('\n')) >= 0 && clients.has(socket)) {
      const text = pending.slice(0, newline).replace(/\r$/, '');
      pending = pending.slice(newline + 1);
      if (text === '/quit') {
        hangUp(socket);
        return;
      }
      for (const other of clients.keys()) {
        if (other !== socket) other.write(`${name}: ${text}\n`);
      }
    }
    if (pending.length > MAX_LINE) hangUp(socket);
  });
  socket.on('error', () => {}); // a reset: 'close' follows
  socket.on('close', () => {
    clients.delete(socket);
    open.delete(socket);
    if (stopping && open.size === 0) finish();
  });
});

function finish() {
  log('bye');
  process.exit(0);
}

// Handle SIGTERM before listening: a platform may stop the app as soon as it is up.
function stop() {
  if (stopping) return;
  stopping = true;
  log(`SIGTERM received: closing ${clients.size} clients`);
  server.close(); // the listening socket is closed now: new connections are refused
  for (const socket of [...clients.keys()]) hangUp(socket, 'server restarting, please reconnect\n');
  if (open.size === 0) finish();
  setTimeout(() => {
    for (const socket of open) socket.destroy(); // a client that never hung up: drop it
    finish();
  }, LINGER_MS + 200);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

server.listen(port, host, () => log(`${dyno} listening on ${host}:${port}`));
