package mochi_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/mochi"
)

// benchGuard allows everything except "secret/..." with a cheap authorizer,
// so that the benchmarks measure the adapter, not a policy engine.
func benchGuard() *mqttsec.Guard {
	return mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
			return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
		}),
		Authorizer: mqttsec.AuthorizerFunc(func(_ context.Context, _ *mqttsec.Client, _ mqttsec.Access, topic string) error {
			if strings.HasPrefix(topic, "secret/") {
				return mqttsec.ErrNotAuthorized
			}
			return nil
		}),
		Events: mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
}

// allowBroker starts mochi with its allow-all hook, the baseline.
func allowBroker(b *testing.B) (*mqtt.Server, string) {
	s := newServer()
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "t1", Address: addr})); err != nil {
		b.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s, addr
}

type setup struct {
	name  string
	start func(b *testing.B) (*mqtt.Server, string, mqtt.Hook)
}

var setups = []setup{
	{"mochi-allowhook", func(b *testing.B) (*mqtt.Server, string, mqtt.Hook) {
		s, addr := allowBroker(b)
		return s, addr, new(auth.AllowHook)
	}},
	{"mqttsec", func(b *testing.B) (*mqtt.Server, string, mqtt.Hook) {
		br := testbroker.Start(b, benchGuard(), testbroker.Options{})
		return br.Server, br.Addr, br.Hook
	}},
	// The same without the outbound books of mochi.Limits (every bound
	// lifted): the cost of the bookkeeping is the difference.
	{"mqttsec-nobooks", func(b *testing.B) (*mqtt.Server, string, mqtt.Hook) {
		br := testbroker.Start(b, benchGuard(), testbroker.Options{HookOptions: []mochi.Option{mochi.WithLimits(unbounded)}})
		return br.Server, br.Addr, br.Hook
	}},
}

func dialB(b *testing.B, addr, id string) *testbroker.Conn {
	c, _, err := testbroker.Dial(b, addr, testbroker.ClientOptions{ClientID: id, Username: "u-" + id, Password: []byte("pw")})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkACLCheckDeliver is the per-delivery read check mochi makes for
// every message to every subscriber: a direct call of the hook's
// OnACLCheck(cl, topic, false) for a connected client, for a message whose
// PUBLISH the hook saw (OnPublish), then the hook's OnPacketSent once mochi
// wrote it: with the outbound books, the delivery is charged and credited.
func BenchmarkACLCheckDeliver(b *testing.B) {
	for _, st := range setups {
		b.Run(st.name, func(b *testing.B) {
			s, addr, hook := st.start(b)
			dialB(b, addr, "sub")
			dialB(b, addr, "pub")
			cl, ok := s.Clients.Get("sub")
			if !ok {
				b.Fatal("no client")
			}
			pub, _ := s.Clients.Get("pub")
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "bench/topic/1", Payload: []byte("payload")}
			if _, err := hook.OnPublish(pub, pk); err != nil {
				b.Fatal(err)
			}
			out := pk.Copy(false)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if !hook.OnACLCheck(cl, pk.TopicName, false) {
					b.Fatal("denied")
				}
				hook.OnPacketSent(cl, out, nil)
			}
		})
	}
}

// BenchmarkACLCheckDeliverParallel is BenchmarkACLCheckDeliver from all
// cores at once on one client (fan-out to one subscriber from many
// publishers): it shows the check takes no lock.
func BenchmarkACLCheckDeliverParallel(b *testing.B) {
	for _, st := range setups {
		b.Run(st.name, func(b *testing.B) {
			s, addr, hook := st.start(b)
			dialB(b, addr, "sub")
			dialB(b, addr, "pub")
			cl, _ := s.Clients.Get("sub")
			pub, _ := s.Clients.Get("pub")
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "bench/topic/1", Payload: []byte("payload")}
			if _, err := hook.OnPublish(pub, pk); err != nil {
				b.Fatal(err)
			}
			out := pk.Copy(false)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if !hook.OnACLCheck(cl, pk.TopicName, false) {
						b.Error("denied")
						return
					}
					hook.OnPacketSent(cl, out, nil)
				}
			})
		})
	}
}

// BenchmarkPublishCheck compares what the hook does for mochi's publish-time
// OnACLCheck(write=true) — a session lookup, since OnPublish decides with
// the whole message — with what deciding there too would cost (a second
// Guard.Publish).
func BenchmarkPublishCheck(b *testing.B) {
	br := testbroker.Start(b, benchGuard(), testbroker.Options{})
	dialB(b, br.Addr, "pub")
	cl, _ := br.Server.Clients.Get("pub")
	b.Run("OnACLCheck-write", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !br.Hook.OnACLCheck(cl, "bench/topic/1", true) {
				b.Fatal("denied")
			}
		}
	})
	b.Run("second-Guard.Publish", func(b *testing.B) {
		sess := br.Hook.Session(cl)
		m := &mqttsec.Message{Topic: "bench/topic/1", Payload: []byte("payload"), QoS: 1}
		b.ReportAllocs()
		for b.Loop() {
			if err := br.Hook.Guard().Publish(context.Background(), sess, m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("OnPublish", func(b *testing.B) {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1,
			TopicName: "bench/topic/1", Payload: []byte("payload")}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := br.Hook.OnPublish(cl, pk); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// discardConn is a net.Conn that discards writes and blocks reads until
// closed: a subscriber whose socket costs nothing, so that the fan-out
// benchmark measures the broker and the hook, not the kernel and a client.
type discardConn struct {
	closed chan struct{}
	once   sync.Once
}

func newDiscardConn() *discardConn { return &discardConn{closed: make(chan struct{})} }

func (c *discardConn) Read([]byte) (int, error)    { <-c.closed; return 0, io.EOF }
func (c *discardConn) Write(b []byte) (int, error) { return len(b), nil }
func (c *discardConn) Close() error                { c.once.Do(func() { close(c.closed) }); return nil }
func (c *discardConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1883}
}
func (c *discardConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *discardConn) SetDeadline(time.Time) error      { return nil }
func (c *discardConn) SetReadDeadline(time.Time) error  { return nil }
func (c *discardConn) SetWriteDeadline(time.Time) error { return nil }

// benchClient attaches a client to s the way mochi does after a CONNECT
// (hook OnConnect, client registered, writer started), with a discard
// socket, and subscribes it to filter through mochi's SUBSCRIBE path.
//
// Without a socket (write false) mochi stops at the point where it would
// queue the message to the client's writer, after the hook's read check:
// the whole path runs on the benchmark goroutine.
func benchClient(b *testing.B, s *mqtt.Server, hook mqtt.Hook, id, filter string, write bool) *mqtt.Client {
	var nc net.Conn
	if write {
		nc = newDiscardConn()
	}
	cl := s.NewClient(nc, "t1", id, false)
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ClientIdentifier: id, Clean: true, Keepalive: 30,
			UsernameFlag: true, Username: []byte("u-" + id), PasswordFlag: true, Password: []byte("pw")}}
	cl.ParseConnect("t1", connect)
	if err := hook.OnConnect(cl, connect); err != nil {
		b.Fatal(err)
	}
	if !hook.OnConnectAuthenticate(cl, connect) {
		b.Fatal("not authenticated")
	}
	hook.OnSessionEstablished(cl, connect)
	s.Clients.Add(cl)
	if write {
		go cl.WriteLoop()
	}
	b.Cleanup(func() { cl.Stop(nil) })
	if filter != "" {
		err := s.InjectPacket(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: filter}}})
		if err != nil {
			b.Fatal(err)
		}
		if cl.State.Subscriptions.Len() != 1 {
			b.Fatal("not subscribed")
		}
	}
	return cl
}

// processCPU returns the user and system CPU time of the process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFanout is a QoS 0 PUBLISH from a client through mochi's whole
// publish path (validation, ACL write check, OnPublish, topic matching,
// packet copy and read check per subscriber) to N subscribers, with mochi's
// allow-all hook and with the mqttsec hook, in the same run. In "queue"
// runs subscribers have no socket, so everything runs on the benchmark
// goroutine up to the writer queue (the stable measure); in "write" runs
// each subscriber has a writer goroutine encoding to a discarding socket.
func BenchmarkFanout(b *testing.B) {
	for _, write := range []bool{false, true} {
		mode := "queue"
		if write {
			mode = "write"
		}
		for _, n := range []int{1, 10, 100, 1000} {
			for _, st := range setups {
				b.Run(fmt.Sprintf("%s/subs=%d/%s", mode, n, st.name), func(b *testing.B) {
					s, _, hook := st.start(b)
					if !write {
						// Nothing is queued: keep the writer queues (and the
						// heap the GC scans) small.
						s.Options.Capabilities.MaximumClientWritesPending = 1
					}
					for i := range n {
						benchClient(b, s, hook, fmt.Sprintf("sub-%d", i), "bench/#", write)
					}
					pub := benchClient(b, s, hook, "pub", "", write)
					pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "bench/topic/1", Payload: []byte("payload")}
					b.ReportAllocs()
					cpu0 := processCPU()
					b.ResetTimer()
					for b.Loop() {
						if err := s.InjectPacket(pub, pk); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					// The process's CPU time per op does not count other
					// processes sharing the machine, unlike ns/op.
					b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
				})
			}
		}
	}
}
