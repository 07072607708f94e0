// Command chat is a graceful TCP chat server for procgate's `tcp` type (Go standard library only).
//
// It listens on $HOST:$PORT (HOST defaults to 127.0.0.1) and greets each client with
// `welcome to chat on $DYNO, you are guest-N`; every line a client sends goes to every other
// client as `guest-N: text`, and the line `/quit` closes that client. SIGTERM (or SIGINT) is
// caught before listening. On SIGTERM it prints `SIGTERM received: closing N clients`, closes
// its listener (new connections are refused at once), sends each client `server restarting,
// please reconnect` and shuts down its write side (a FIN, not a reset) while still reading until
// the client hangs up (so nothing is left unread at close, which would turn the close into a
// reset), then prints `bye` and exits 0, within 2 s however the clients behave. Same protocol
// as python/chat_server.py, node/chat_server.js and rust/chat.rs. Build it and exec the binary
// (`go build -o bin/chat ./sample-apps/go/chat`): under `go run` the go tool is the process
// that gets SIGTERM, and it dies at once, before the server has said goodbye.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

const (
	goodbye = "server restarting, please reconnect\n"
	linger  = 2 * time.Second // how long a client may take to hang up after our FIN
	backlog = 256             // lines queued for a slow client before it misses some
)

type client struct {
	name     string
	conn     *net.TCPConn
	out      chan string // lines to send; closed when the server hangs up
	farewell string      // written after the last line, set before out is closed
}

type room struct {
	mu       sync.Mutex
	clients  map[*client]bool // the clients still chatting
	stopping bool
	guests   int
}

// join adds a client, or returns nil once the server is stopping.
func (r *room) join(conn *net.TCPConn) *client {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.guests++
	c := &client{name: fmt.Sprintf("guest-%d", r.guests), conn: conn, out: make(chan string, backlog)}
	c.out <- fmt.Sprintf("welcome to chat on %s, you are %s\n", os.Getenv("DYNO"), c.name)
	if r.stopping { // accepted just before the listener closed
		c.farewell = goodbye
		close(c.out)
		conn.SetReadDeadline(time.Now().Add(linger))
		return c
	}
	r.clients[c] = true
	return c
}

// leave stops a client's chat: its writer sends what is queued, then farewell, then a FIN.
func (r *room) leave(c *client, farewell string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.clients[c] {
		delete(r.clients, c)
		c.farewell = farewell
		close(c.out)
	}
}

func (r *room) broadcast(from *client, line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.clients {
		if c != from {
			select {
			case c.out <- line:
			default: // that client does not keep up: it misses this line
			}
		}
	}
}

// stop hangs up on every client; it returns how many there were.
func (r *room) stop() int {
	r.mu.Lock()
	r.stopping = true
	all := make([]*client, 0, len(r.clients))
	for c := range r.clients {
		all = append(all, c)
	}
	r.mu.Unlock()
	for _, c := range all {
		r.leave(c, goodbye)
		c.conn.SetReadDeadline(time.Now().Add(linger)) // a client that never hangs up is dropped
	}
	return len(all)
}

func (r *room) serve(c *client) {
	written := make(chan struct{})
	go func() {
		defer close(written)
		for line := range c.out {
			c.conn.SetWriteDeadline(time.Now().Add(linger))
			if _, err := io.WriteString(c.conn, line); err != nil {
				break
			}
		}
		if c.farewell != "" {
			c.conn.SetWriteDeadline(time.Now().Add(linger))
			io.WriteString(c.conn, c.farewell)
		}
		c.conn.CloseWrite() // the FIN
	}()

	lines := bufio.NewScanner(c.conn)
	for lines.Scan() {
		text := lines.Text()
		if len(text) > 0 && text[len(text)-1] == '\r' {
			text = text[:len(text)-1]
		}
		if text == "/quit" {
			break
		}
		r.broadcast(c, fmt.Sprintf("%s: %s\n", c.name, text))
	}
	// The client hung up, quit, or the server is stopping: send the FIN, then read (and drop)
	// until the client's own FIN so nothing is unread at close.
	r.leave(c, "")
	<-written
	r.mu.Lock()
	if !r.stopping { // (when stopping, the deadline is already set)
		c.conn.SetReadDeadline(time.Now().Add(linger))
	}
	r.mu.Unlock()
	io.Copy(io.Discard, c.conn)
	c.conn.Close()
}

func main() {
	host := os.Getenv("HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	dyno := os.Getenv("DYNO")
	if dyno == "" {
		dyno = "chat"
		os.Setenv("DYNO", dyno)
	}
	addr := net.JoinHostPort(host, os.Getenv("PORT"))

	// Catch SIGTERM before listening: a platform may stop the app as soon as it is up.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)

	listener, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s listening on %s\n", dyno, addr) // os.Stdout is not buffered in Go

	r := &room{clients: map[*client]bool{}}
	var open sync.WaitGroup
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			conn, err := listener.Accept()
			if err != nil {
				return // the listener is closed
			}
			open.Add(1)
			go func() {
				defer open.Done()
				r.serve(r.join(conn.(*net.TCPConn)))
			}()
		}
	}()

	<-signals
	r.mu.Lock()
	n := len(r.clients)
	r.mu.Unlock()
	fmt.Printf("SIGTERM received: closing %d clients\n", n)
	listener.Close() // new connections are refused from now on
	r.stop()
	<-accepting // no open.Add after this

	done := make(chan struct{})
	go func() { open.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(linger + time.Second): // should not happen: the deadlines end every connection
	}
	fmt.Println("bye")
}
