package bridge

import (
	"context"
	"net"
	"sync"
)

// Pipe is an in-memory listener that connects a bridge to a broker in the
// same process without a network port: the broker serves it as any
// net.Listener (with mochi-mqtt: listeners.NewNet(id, pipe)) and the bridge
// dials it through [Local.Dial] = pipe.DialContext. The connection is a
// normal MQTT client connection, so the broker authenticates and authorizes
// the bridge as it does every client. Connections are [net.Pipe] pairs.
//
// A Pipe is safe for concurrent use.
type Pipe struct {
	name  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewPipe returns a Pipe whose address is name.
func NewPipe(name string) *Pipe {
	return &Pipe{name: name, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept waits for the next connection.
func (p *Pipe) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and DialContext; connections already made stay open.
// It is idempotent.
func (p *Pipe) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

// Addr returns the pipe's address (network "pipe", the name given to NewPipe).
func (p *Pipe) Addr() net.Addr { return pipeAddr(p.name) }

// DialContext opens a connection to the broker serving the pipe. It waits
// for the broker to accept it until ctx ends.
func (p *Pipe) DialContext(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case p.conns <- server:
		return client, nil
	case <-p.done:
	case <-ctx.Done():
	}
	_ = client.Close()
	_ = server.Close()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, ErrPipeClosed
}

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }
