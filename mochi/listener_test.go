package mochi_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/mochi"
)

func TestIdleNetListener(t *testing.T) {
	s := newServer()
	_, err := mochi.NewHook(mqttsec.New(mqttsec.Config{}), s)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := make(chan struct{})
	tl := &closeNotify{Listener: ln, closed: closed}
	require.NoError(t, s.AddListener(listeners.NewNet("net", mochi.IdleNetListener(tl, 200*time.Millisecond))))
	require.NoError(t, s.Serve())
	t.Cleanup(func() {
		// mochi v2.7.9 does not order a connection's ClientsWg.Add before
		// Close's Wait; waiting for the server to close the socket does.
		<-closed
		_ = s.Close()
	})

	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err)
	if ne, ok := err.(net.Error); ok {
		require.False(t, ne.Timeout(), "the broker did not close the idle socket")
	}
	require.Less(t, time.Since(start), 3*time.Second)
}

// closeNotify is a listener whose (single) accepted connection closes
// closed when the server closes it.
type closeNotify struct {
	net.Listener
	closed chan struct{}
}

func (l *closeNotify) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &notifyConn{Conn: c, closed: l.closed}, nil
}

type notifyConn struct {
	net.Conn
	closed chan struct{}
	once   sync.Once
}

func (c *notifyConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}
