// Command web is a graceful web app for procgate's `web` type (Go standard library, net/http).
//
// HTTP/1.1 with keep-alive on $HOST:$PORT (HOST defaults to 127.0.0.1): `GET /` answers
// `hello from $DYNO`, `GET /slow` the same after 1 s, anything else 404. SIGTERM (or SIGINT) is
// caught before listening. On SIGTERM it prints `SIGTERM received: finishing N requests in
// flight, closing idle connections` and calls Server.Shutdown: the listener is closed at once
// (new connections are refused), idle keep-alive connections are closed (a FIN each), requests
// in flight finish and answer with `Connection: close`. Shutdown leaves a connection that has
// not sent a byte yet open for 5 s, so this app closes those itself after 0.5 s. Then it prints
// `bye` and exits 0, within 4 s at most. Build it and exec the binary
// (`go build -o bin/web ./sample-apps/go/web`): under `go run` the go tool is the process that
// gets SIGTERM, and it dies at once.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	host := os.Getenv("HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	dyno := os.Getenv("DYNO")
	if dyno == "" {
		dyno = "web"
	}
	addr := net.JoinHostPort(host, os.Getenv("PORT"))

	var inFlight atomic.Int64
	routes := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/":
		case r.Method == http.MethodGet && r.URL.Path == "/slow":
			select {
			case <-time.After(time.Second):
			case <-r.Context().Done(): // the client went away
				return
			}
		default:
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "hello from %s\n", dyno)
	})

	// Connections that have not sent a byte yet, and since when.
	var mu sync.Mutex
	fresh := map[net.Conn]time.Time{}
	server := &http.Server{
		Handler:           routes,
		ReadHeaderTimeout: 30 * time.Second,
		ConnState: func(conn net.Conn, state http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			if state == http.StateNew {
				fresh[conn] = time.Now()
			} else {
				delete(fresh, conn)
			}
		},
	}

	// Catch SIGTERM before listening: a platform may stop the app as soon as it is up.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s serving HTTP on %s\n", dyno, addr) // os.Stdout is not buffered in Go
	go server.Serve(listener)

	<-signals
	fmt.Printf("SIGTERM received: finishing %d requests in flight, closing idle connections\n", inFlight.Load())
	stopped := make(chan struct{})
	go func() { // close the connections that never sent a byte, once 0.5 s old
		for {
			select {
			case <-stopped:
				return
			case <-time.After(100 * time.Millisecond):
			}
			mu.Lock()
			for conn, since := range fresh {
				if time.Since(since) > 500*time.Millisecond {
					conn.Close()
					delete(fresh, conn)
				}
			}
			mu.Unlock()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	if err := server.Shutdown(ctx); err != nil {
		fmt.Println("some connections did not close within 4s; dropping them")
		server.Close()
	}
	close(stopped)
	fmt.Println("bye")
}
