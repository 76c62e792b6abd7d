package mochi_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/mochi"
)

var fuzzBroker = sync.OnceValue(func() string {
	g := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
			return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
		}),
		Authorizer: mqttsec.AuthorizerFunc(policy),
		Events:     mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
	s := newServer()
	if _, err := mochi.NewHook(g, s); err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	if err := s.AddListener(listeners.NewNet("fuzz", mochi.HardenNet(ln, time.Second))); err != nil {
		panic(err)
	}
	if err := s.Serve(); err != nil {
		panic(err)
	}
	// The broker lives as long as the fuzz process.
	return ln.Addr().String()
})

// v5Connect is a valid MQTT v5 CONNECT for client "fz", user "u".
func v5Connect() []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x82, 0, 30, 0}
	body = binary.BigEndian.AppendUint16(body, 2)
	body = append(body, "fz"...)
	body = binary.BigEndian.AppendUint16(body, 1)
	body = append(body, 'u')
	return append([]byte{0x10, byte(len(body))}, body...)
}

// FuzzBroker sends arbitrary bytes to a broker guarded by the hook, before
// or after a valid CONNECT. The broker (mochi and the hook) must not panic:
// a panic in any of its goroutines ends the fuzz process.
func FuzzBroker(f *testing.F) {
	f.Add(false, []byte{0x10, 0x00})
	f.Add(false, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Add(true, []byte{0x30, 0x07, 0x00, 0x03, 'r', 'o', '/', 'x', 'y'})                         // denied QoS 0 publish
	f.Add(true, []byte{0x32, 0x09, 0x00, 0x03, 'r', 'o', '/', 0x00, 0x01, 0x00, 'x'})            // denied QoS 1 publish
	f.Add(true, []byte{0x82, 0x0B, 0x00, 0x01, 0x00, 0x00, 0x05, 's', 'e', 'c', 'r', '/', 0x01}) // subscribe
	f.Add(true, []byte{0x82, 0x0A, 0x00, 0x01, 0x00, 0x00, 0x01, '#', 0x01, 0x00, 0x01, '+'})
	f.Add(true, []byte{0xE0, 0x00})
	f.Fuzz(func(t *testing.T, connect bool, data []byte) {
		c, err := net.Dial("tcp", fuzzBroker())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if connect {
			data = append(v5Connect(), data...)
		}
		_ = c.SetDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write(data)
		_, _ = io.Copy(io.Discard, c)
	})
}
