package mochi_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/mochi"
)

// The attacks of the quota tests are scaled down from the hostile-load run
// that found them (40 slow subscribers × 64 messages of 250 kB, 1,400
// retained messages of 250 kB, 40 kept sessions × 64 queued messages of
// 250 kB) so that each runs in a few seconds with the race detector, but
// keep the ratio that makes the point: what mochi would hold without the
// bounds is many times the bound the test asserts. MQTTSEC_MEASURE=1 runs
// them at full scale, with and without the bounds, and logs what the heap
// holds (the figures of mochi's package documentation).

// quotaBroker is a guarded mochi broker with the given bounds, on a
// loopback listener wrapped with HardenNetWith. Every user name is its own
// subject; every topic is allowed.
type quotaBroker struct {
	Addr   string
	Server *mqtt.Server
	Hook   *mochi.Hook
	g      *mqttsec.Guard
	events *recorder
}

var byUser = mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
	return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
})

var allowAll = mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil })

func startQuota(t testing.TB, lim mochi.Limits, q mqttsec.Quotas, hc mochi.HardenConfig) *quotaBroker {
	t.Helper()
	ev := &recorder{}
	g := mqttsec.New(mqttsec.Config{Authenticator: byUser, Authorizer: allowAll, Quotas: q, Events: ev})
	s := newServer()
	hook, err := mochi.NewHook(g, s, mochi.WithLogger(discard()), mochi.WithLimits(lim))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tr := &connTracker{Listener: listeners.NewNet("q", mochi.HardenNetWith(ln, hc)), conns: map[net.Conn]struct{}{}}
	require.NoError(t, s.AddListener(tr))
	require.NoError(t, s.Serve())
	t.Cleanup(func() {
		tr.closeAll()
		_ = s.Close()
	})
	return &quotaBroker{Addr: ln.Addr().String(), Server: s, Hook: hook, g: g, events: ev}
}

// connTracker records the connections being served, so that the broker
// is closed after they all ended (mochi v2.7.9 races Close against the
// goroutines of connections still running).
type connTracker struct {
	listeners.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	stop  bool
}

func (l *connTracker) Serve(establish listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) error {
		l.mu.Lock()
		if l.stop {
			l.mu.Unlock()
			return c.Close()
		}
		l.conns[c] = struct{}{}
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
		}()
		return establish(id, c)
	})
}

func (l *connTracker) closeAll() {
	l.mu.Lock()
	l.stop = true
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		n := len(l.conns)
		l.mu.Unlock()
		if n == 0 {
			return
		}
	}
}

// unbounded switches every bound of the hook off; unboundedWrites lets
// writes block for as long as mochi's keep-alive deadline allows.
var (
	unbounded = mochi.Limits{DropBacklog: -1, MaxBacklog: -1, SubjectBacklog: -1, Outbound: -1, QueuedMessages: -1,
		QueuedBytes: -1, Subscriptions: -1, SubscriptionBytes: -1, FiltersPerSubscribe: -1, TopicLength: -1,
		PropertyBytes: -1, Inflight: -1, WritesPending: -1, TopicAliases: -1, WriteStall: -1}
	unboundedWrites = mochi.HardenConfig{WriteTimeout: -1}
)

var noQuotas = mqttsec.Quotas{RetainedPerSubject: -1, RetainedBytesPerSubject: -1, Retained: -1, RetainedBytes: -1,
	SessionsPerSubject: -1, Sessions: -1}

// heapBytes returns the live heap after two garbage collections.
func heapBytes() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

func measure() bool { return os.Getenv("MQTTSEC_MEASURE") != "" }

// rawConn is an MQTT 3.1.1 client on a socket with a 4 KiB receive
// buffer: once it stops reading, the broker's writes to it block after a
// few kilobytes and mochi queues the rest in its memory.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func smallRcvBuf(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	}); err != nil {
		return err
	}
	return serr
}

// dialRaw connects user with client ID id (clean session unless keep) and
// returns the CONNACK return code and the connection.
func dialRaw(t testing.TB, addr, id, user string, keep bool) (byte, *rawConn) {
	t.Helper()
	d := net.Dialer{Control: smallRcvBuf, Timeout: testbroker.Timeout}
	nc, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	flags := byte(0xC2)
	if keep {
		flags = 0xC0
	}
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0, 60}
	for _, s := range []string{id, user, "pw"} {
		body = binary.BigEndian.AppendUint16(body, uint16(len(s)))
		body = append(body, s...)
	}
	c := &rawConn{Conn: nc, r: bufio.NewReader(nc)}
	_, err = nc.Write(frameRaw(0x10, body))
	require.NoError(t, err)
	typ, b := c.read(t)
	require.Equal(t, byte(0x20), typ)
	return b[1], c
}

func (c *rawConn) read(t testing.TB) (byte, []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(testbroker.Timeout))
	typ, err := c.r.ReadByte()
	require.NoError(t, err)
	n, mul := 0, 1
	for {
		d, err := c.r.ReadByte()
		require.NoError(t, err)
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
	}
	b := make([]byte, n)
	_, err = io.ReadFull(c.r, b)
	require.NoError(t, err)
	return typ, b
}

// subscribe sends one SUBSCRIBE with filters at qos and returns the
// SUBACK's return codes.
func (c *rawConn) subscribe(t testing.TB, qos byte, filters ...string) []byte {
	t.Helper()
	body := []byte{0, 1}
	for _, f := range filters {
		body = binary.BigEndian.AppendUint16(body, uint16(len(f)))
		body = append(body, f...)
		body = append(body, qos)
	}
	_, err := c.Write(frameRaw(0x82, body))
	require.NoError(t, err)
	typ, b := c.read(t)
	require.Equal(t, byte(0x90), typ)
	return b[2:]
}

// goodSubscriber subscribes a well-behaved paho client to filter at QoS 1
// and counts the QoS 1 messages it receives by topic, without keeping them.
type goodSubscriber struct {
	mu   sync.Mutex
	qos1 map[string]int
	n    atomic.Int64
}

func subscribeGood(t testing.TB, addr, id, filter string) *goodSubscriber {
	t.Helper()
	c, _, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: id, Username: id, Password: []byte("pw")})
	require.NoError(t, err)
	require.Equal(t, byte(1), c.Sub(t, filter, 1))
	g := &goodSubscriber{qos1: map[string]int{}}
	go func() {
		for {
			select {
			case m := <-c.Messages():
				if m.QoS == 1 {
					g.mu.Lock()
					g.qos1[m.Topic]++
					g.mu.Unlock()
					g.n.Add(1)
				}
			case <-c.Closed():
				return
			}
		}
	}()
	return g
}

// received reports whether every topic was received at QoS 1 exactly
// once (mochi may send a retained message twice: not used here).
func (g *goodSubscriber) received(topics []string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, tp := range topics {
		if g.qos1[tp] == 0 {
			return false
		}
	}
	return true
}

func payload(n int) []byte { return []byte(strings.Repeat("p", n)) }

// slowConsumers runs the slow-consumer attack: subs clients that subscribe
// to "load/#" at QoS 0 and never read, then msgs messages of size bytes
// published to it, alternately at QoS 1 and QoS 0, while a well-behaved
// client receives them at QoS 1. It returns the heap growth once the
// well-behaved client got the last message, the attackers still
// connected (those the bounds did not disconnect).
// The attackers are one user ("mallory"), or each its own user when
// manyUsers is set.
func slowConsumers(t *testing.T, b *quotaBroker, subs, msgs, size int, manyUsers bool) int64 {
	good := subscribeGood(t, b.Addr, "good", "load/#")
	pub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "pub", Username: "pub", Password: []byte("pw")})
	require.NoError(t, err)
	before := heapBytes()
	slow := make([]*rawConn, subs)
	for i := range slow {
		user := "mallory"
		if manyUsers {
			user = fmt.Sprintf("slow-%d", i)
		}
		code, c := dialRaw(t, b.Addr, fmt.Sprintf("slow-%d", i), user, false)
		require.Zero(t, code)
		require.Equal(t, []byte{0}, c.subscribe(t, 0, "load/#"))
		slow[i] = c
	}
	var qos1 []string
	p := payload(size)
	for i := range msgs {
		topic := fmt.Sprintf("load/%d", i)
		qos := byte(1 - i%2) // the last one is QoS 1: when it arrives, mochi has queued every message
		_, err := pub.Pub(t, topic, p, qos)
		require.NoError(t, err)
		if qos == 1 {
			qos1 = append(qos1, topic)
		}
	}
	require.Eventually(t, func() bool { return good.received(qos1) }, testbroker.Timeout, 10*time.Millisecond,
		"the well-behaved subscriber gets every QoS 1 message")
	growth := heapBytes() - before
	t.Logf("%d slow subscribers (many users: %v) × %d messages of %d bytes (%d MB unbounded): heap grew %.1f MB, outbound books %.1f MB",
		subs, manyUsers, msgs, size, subs*msgs*size/1e6, float64(growth)/1e6, float64(b.Hook.OutboundBytes())/1e6)
	return growth
}

// TestSlowConsumers: subscribers that never read cost the broker at most
// MaxBacklog each (QoS 0 messages to them are dropped beyond DropBacklog,
// and they are disconnected beyond MaxBacklog), while a well-behaved client
// on the same broker gets every QoS 1 message. Unbounded, mochi would hold
// 20 × 64 × 100 kB = 128 MB.
func TestSlowConsumers(t *testing.T) {
	b := startQuota(t, mochi.Limits{DropBacklog: 256 << 10, MaxBacklog: 1 << 20}, mqttsec.Quotas{}, mochi.HardenConfig{})
	growth := slowConsumers(t, b, 20, 64, 100_000, true)
	require.Less(t, growth, int64(24<<20), "20 slow subscribers, at most 1 MiB and a message each")
	require.Positive(t, b.events.count(mqttsec.EventDropped, "slow-0"), "drops and the disconnect are reported")
	require.LessOrEqual(t, b.Hook.OutboundBytes(), int64(20*(1<<20+100_000+4096)))
}

func TestMeasureSlowConsumers(t *testing.T) {
	if !measure() {
		t.Skip("MQTTSEC_MEASURE is not set")
	}
	for _, tt := range []struct {
		name string
		lim  mochi.Limits
		hc   mochi.HardenConfig
	}{{"defaults", mochi.Limits{}, mochi.HardenConfig{}}, {"unbounded", unbounded, unboundedWrites}} {
		for _, many := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/many-users=%v", tt.name, many), func(t *testing.T) {
				b := startQuota(t, tt.lim, mqttsec.Quotas{}, tt.hc)
				slowConsumers(t, b, 40, 64, 250_000, many)
			})
		}
	}
}

// TestStalledSubscriber: subscribers at QoS 1 that stop reading do not
// stall the publishers of their topics. mochi writes to a client while
// holding its lock and takes the same lock to give a QoS 1 message a
// packet identifier: without the hook's WriteStall, every publish waits for
// the blocked write (here until the listener's 10 s WriteTimeout; without
// that, until the client's keep-alive runs out).
func TestStalledSubscriber(t *testing.T) {
	b := startQuota(t, mochi.Limits{WriteStall: 300 * time.Millisecond}, mqttsec.Quotas{}, mochi.HardenConfig{})
	good := subscribeGood(t, b.Addr, "good", "load/#")
	pub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "pub", Username: "pub", Password: []byte("pw")})
	require.NoError(t, err)
	for i := range 5 {
		code, c := dialRaw(t, b.Addr, fmt.Sprintf("slow-%d", i), "mallory", false)
		require.Zero(t, code)
		require.Equal(t, []byte{1}, c.subscribe(t, 1, "load/#"))
	}
	start := time.Now()
	var topics []string
	p := payload(100_000)
	for i := range 64 {
		topic := fmt.Sprintf("load/%d", i)
		code, err := pub.Pub(t, topic, p, 1)
		require.NoError(t, err)
		require.Zero(t, code)
		topics = append(topics, topic)
		if i == 31 {
			time.Sleep(400 * time.Millisecond) // the slow subscribers' writes are stalled by now
		}
	}
	require.Eventually(t, func() bool { return good.received(topics) }, testbroker.Timeout, 10*time.Millisecond)
	elapsed := time.Since(start)
	t.Logf("64 QoS 1 messages of 100 kB to a good and 5 stalled subscribers in %s", elapsed)
	require.Less(t, elapsed, 5*time.Second, "publishers did not wait for the stalled subscribers' writes")
	require.Eventually(t, func() bool { return atomic.LoadInt64(&b.Server.Info.ClientsConnected) == 2 }, testbroker.Timeout, 10*time.Millisecond,
		"the stalled subscribers were disconnected")
}

// retainedFlood publishes n retained messages of size bytes on distinct
// topics as user mallory, while alice keeps publishing QoS 1 messages that
// a well-behaved subscriber receives. It returns the heap growth and how
// many of mallory's messages were refused with 0x97.
func retainedFlood(t *testing.T, b *quotaBroker, n, size int) (int64, int) {
	good := subscribeGood(t, b.Addr, "good", "alice/#")
	alice, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "alice", Username: "alice", Password: []byte("pw")})
	require.NoError(t, err)
	mallory, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "mallory", Username: "mallory", Password: []byte("pw")})
	require.NoError(t, err)
	before := heapBytes()
	p := payload(size)
	refused := 0
	var topics []string
	for i := range n {
		pr, err := mallory.Publish(context.Background(), &paho.Publish{Topic: fmt.Sprintf("mallory/%d", i), Payload: p, QoS: 1, Retain: true})
		require.NotNil(t, pr, "a PUBACK: %v", err)
		if pr.ReasonCode == byte(mqttsec.CodeQuotaExceeded) {
			refused++
		} else {
			require.NoError(t, err)
			require.Zero(t, pr.ReasonCode)
		}
		if i%10 == 0 {
			topic := fmt.Sprintf("alice/%d", i)
			code, err := alice.Pub(t, topic, []byte("status"), 1)
			require.NoError(t, err)
			require.Zero(t, code)
			topics = append(topics, topic)
		}
	}
	require.Eventually(t, func() bool { return good.received(topics) }, testbroker.Timeout, 10*time.Millisecond)
	growth := heapBytes() - before
	t.Logf("%d retained messages of %d bytes (%d MB unbounded): %d refused, heap grew %.1f MB",
		n, size, n*size/1e6, refused, float64(growth)/1e6)
	return growth, refused
}

// TestRetainedFlood: one user retaining many large messages holds at most
// its quota; beyond it the PUBLISH is refused with 0x97 and the message is
// neither delivered nor retained. Unbounded: 200 × 100 kB = 20 MB.
func TestRetainedFlood(t *testing.T) {
	b := startQuota(t, mochi.Limits{}, mqttsec.Quotas{RetainedBytesPerSubject: 1 << 20}, mochi.HardenConfig{})
	growth, refused := retainedFlood(t, b, 200, 100_000)
	require.Less(t, growth, int64(4<<20), "a 1 MiB quota (mochi keeps one copy of a retained message)")
	require.Equal(t, 190, refused, "ten messages of 100 kB fit in 1 MiB")
	n, _ := b.g.RetainedUsage(&mqttsec.Identity{Subject: "mallory", Method: mqttsec.MethodPassword})
	require.Equal(t, 10, n)
	// A refused message was not retained: a new subscriber gets the ten.
	sub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "late", Username: "late", Password: []byte("pw")})
	require.NoError(t, err)
	require.Equal(t, byte(0), sub.Sub(t, "mallory/#", 0))
	got := map[string]bool{}
	require.Eventually(t, func() bool {
		for {
			select {
			case m := <-sub.Messages():
				got[m.Topic] = true
			default:
				return len(got) == 10
			}
		}
	}, testbroker.Timeout, 10*time.Millisecond)
	sub.NoMessage(t, 200*time.Millisecond)
	require.True(t, got["mallory/9"])
	// Clearing one frees its share of the quota.
	pr, err := sub.Publish(context.Background(), &paho.Publish{Topic: "mallory/0", QoS: 1, Retain: true})
	require.NoError(t, err)
	require.Zero(t, pr.ReasonCode)
	n, _ = b.g.RetainedUsage(&mqttsec.Identity{Subject: "mallory", Method: mqttsec.MethodPassword})
	require.Equal(t, 9, n)
}

func TestMeasureRetainedFlood(t *testing.T) {
	if !measure() {
		t.Skip("MQTTSEC_MEASURE is not set")
	}
	for _, tt := range []struct {
		name string
		q    mqttsec.Quotas
	}{{"defaults", mqttsec.Quotas{}}, {"unbounded", noQuotas}} {
		t.Run(tt.name, func(t *testing.T) {
			retainedFlood(t, startQuota(t, mochi.Limits{}, tt.q, mochi.HardenConfig{}), 1400, 250_000)
		})
	}
}

// offlineQueues runs the offline-queue attack: sessions kept sessions of
// user mallory (MQTT 3.1.1 clients without clean session) subscribe to "load/#" at QoS 1 and
// go offline, then msgs QoS 1 messages of size bytes are published, which
// a well-behaved subscriber receives. It returns the heap growth.
func offlineQueues(t *testing.T, b *quotaBroker, sessions, msgs, size int) int64 {
	good := subscribeGood(t, b.Addr, "good", "load/#")
	pub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "pub", Username: "pub", Password: []byte("pw")})
	require.NoError(t, err)
	before := heapBytes()
	for i := range sessions {
		code, c := dialRaw(t, b.Addr, fmt.Sprintf("kept-%d", i), "mallory", true)
		require.Zero(t, code)
		require.Equal(t, []byte{1}, c.subscribe(t, 1, "load/#"))
		_, err := c.Write([]byte{0xE0, 0}) // DISCONNECT
		require.NoError(t, err)
		_ = c.Close()
	}
	require.Eventually(t, func() bool {
		return sessions == 0 || b.events.count(mqttsec.EventDisconnected, fmt.Sprintf("kept-%d", sessions-1)) == 1
	}, testbroker.Timeout, 10*time.Millisecond)
	var topics []string
	p := payload(size)
	for i := range msgs {
		topic := fmt.Sprintf("load/%d", i)
		code, err := pub.Pub(t, topic, p, 1)
		require.NoError(t, err)
		require.Zero(t, code)
		topics = append(topics, topic)
	}
	require.Eventually(t, func() bool { return good.received(topics) }, testbroker.Timeout, 10*time.Millisecond)
	growth := heapBytes() - before
	t.Logf("%d kept sessions × %d QoS 1 messages of %d bytes (%d MB unbounded): heap grew %.1f MB, outbound books %.1f MB",
		sessions, msgs, size, sessions*msgs*size/1e6, float64(growth)/1e6, float64(b.Hook.OutboundBytes())/1e6)
	return growth
}

// TestOfflineQueues: messages queued for kept sessions whose clients are
// offline are bounded per session; a user's persistent sessions are
// bounded too (a new one beyond the quota is refused with 0x97, a
// reconnection to one it holds is not). Unbounded: 10 × 64 × 100 kB = 64 MB.
func TestOfflineQueues(t *testing.T) {
	b := startQuota(t, mochi.Limits{QueuedBytes: 512 << 10}, mqttsec.Quotas{SessionsPerSubject: 10}, mochi.HardenConfig{})
	growth := offlineQueues(t, b, 10, 64, 100_000)
	require.Less(t, growth, int64(10<<20), "10 sessions × 512 KiB and a message")
	require.Positive(t, b.events.count(mqttsec.EventDropped, "kept-0"))

	// An eleventh persistent session is refused; the owner gets hers back,
	// with what was queued for her within the bound.
	_, ca, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "kept-10", Username: "mallory",
		Password: []byte("pw"), SessionExpiry: 300})
	require.Error(t, err)
	require.Equal(t, byte(mqttsec.CodeQuotaExceeded), ca.ReasonCode)
	code, _ := dialRaw(t, b.Addr, "kept-11", "mallory", true)
	require.Equal(t, mqttsec.V3ServerUnavailable, code, "a 3.1.1 client without clean session")
	c, ca, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "kept-3", Username: "mallory",
		Password: []byte("pw"), SessionExpiry: 300, Resume: true})
	require.NoError(t, err)
	require.True(t, ca.SessionPresent)
	n := 0
	for {
		select {
		case <-c.Messages():
			n++
			continue
		case <-time.After(500 * time.Millisecond):
		}
		break
	}
	require.Positive(t, n)
	require.LessOrEqual(t, n, 6, "512 KiB of 100 kB messages, and one more")
	// A session that ends with its connection takes no slot.
	_, _, err = testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "clean", Username: "mallory", Password: []byte("pw")})
	require.NoError(t, err)
}

func TestMeasureOfflineQueues(t *testing.T) {
	if !measure() {
		t.Skip("MQTTSEC_MEASURE is not set")
	}
	for _, tt := range []struct {
		name string
		lim  mochi.Limits
		q    mqttsec.Quotas
	}{{"defaults", mochi.Limits{}, mqttsec.Quotas{}}, {"unbounded", unbounded, noQuotas}} {
		t.Run(tt.name, func(t *testing.T) {
			offlineQueues(t, startQuota(t, tt.lim, tt.q, unboundedWrites), 40, 64, 250_000)
		})
	}
}

// processCPUTime returns the user and system CPU time of the process.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestDeepTopicFlood: topic names of 16,000 levels cost mochi's topic tree
// 1–2 s of CPU per PUBLISH (quadratic in the depth); they are refused with
// 0x90 before mochi routes them, by their length ([Limits.TopicLength]) or,
// without that bound, by their depth (the Guard's MaxTopicLevels). Deep
// filters are refused with 0x8F. The flood costs little CPU and memory, and
// a well-behaved client keeps getting its QoS 1 messages.
func TestDeepTopicFlood(t *testing.T) {
	deep := strings.Repeat("a/", 16000) + "a"
	for _, tt := range []struct {
		name string
		lim  mochi.Limits
	}{{"length", mochi.Limits{}}, {"levels", mochi.Limits{TopicLength: -1}}} {
		t.Run(tt.name, func(t *testing.T) {
			b := startQuota(t, tt.lim, mqttsec.Quotas{}, mochi.HardenConfig{})
			good := subscribeGood(t, b.Addr, "good", "ok/#")
			c, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "deep", Username: "mallory", Password: []byte("pw")})
			require.NoError(t, err)
			before, cpu := heapBytes(), processCPUTime()
			var topics []string
			for i := range 20 {
				pr, err := c.Publish(context.Background(), &paho.Publish{Topic: deep, Payload: []byte("x"), QoS: 1, Retain: true})
				require.NotNil(t, pr, "a PUBACK: %v", err)
				require.Equal(t, byte(mqttsec.CodeTopicNameInvalid), pr.ReasonCode)
				topic := fmt.Sprintf("ok/%d", i)
				code, err := c.Pub(t, topic, []byte("fine"), 1)
				require.NoError(t, err)
				require.Zero(t, code)
				topics = append(topics, topic)
			}
			sa, err := c.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: deep + "/#", QoS: 1}}})
			require.NotNil(t, sa, "a SUBACK: %v", err)
			require.Equal(t, []byte{byte(mqttsec.CodeTopicFilterInvalid)}, sa.Reasons)
			require.Eventually(t, func() bool { return good.received(topics) }, testbroker.Timeout, 10*time.Millisecond)
			spent, growth := processCPUTime()-cpu, heapBytes()-before
			t.Logf("20 PUBLISHes and a SUBSCRIBE of 16,001 levels: %s CPU, heap grew %.1f MB", spent, float64(growth)/1e6)
			require.Less(t, spent, 2*time.Second, "unbounded, one such PUBLISH costs mochi 1-2 s")
			require.Less(t, growth, int64(2<<20))
			require.Zero(t, b.Server.Info.Retained, "nothing retained")
		})
	}
}

// TestSubscriptionFlood: one SUBSCRIBE with 5,000 filters is granted its
// first FiltersPerSubscribe filters only (0x97 for the rest, 0x80 for an
// MQTT 3.1.1 client), and a client's subscriptions stop at Subscriptions
// and SubscriptionBytes; the flood costs little CPU and memory.
// Unbounded, 20 such SUBSCRIBEs would subscribe 100,000 filters (about
// 120 MB of mochi's topic tree).
func TestSubscriptionFlood(t *testing.T) {
	b := startQuota(t, mochi.Limits{}, mqttsec.Quotas{}, mochi.HardenConfig{})
	good := subscribeGood(t, b.Addr, "good", "ok/#")
	c, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "flood", Username: "mallory", Password: []byte("pw")})
	require.NoError(t, err)
	pub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "pub", Username: "pub", Password: []byte("pw")})
	require.NoError(t, err)
	before, cpu := heapBytes(), processCPUTime()
	var topics []string
	granted := 0
	for round := range 20 {
		subs := make([]paho.SubscribeOptions, 5000)
		for i := range subs {
			subs[i] = paho.SubscribeOptions{Topic: fmt.Sprintf("f/%d/%d", round, i), QoS: 1}
		}
		sa, err := c.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: subs})
		require.NotNil(t, sa, "a SUBACK: %v", err)
		require.Len(t, sa.Reasons, 5000)
		for i, r := range sa.Reasons {
			switch {
			case r == 1:
				granted++
				require.Less(t, i, mochi.DefaultFiltersPerSubscribe)
			default:
				require.Equal(t, byte(mqttsec.CodeQuotaExceeded), r)
			}
		}
		topic := fmt.Sprintf("ok/%d", round)
		code, err := pub.Pub(t, topic, []byte("fine"), 1)
		require.NoError(t, err)
		require.Zero(t, code)
		topics = append(topics, topic)
	}
	require.Equal(t, mochi.DefaultSubscriptions, granted, "64, then 36 more: the per-client bound")
	require.Eventually(t, func() bool { return good.received(topics) }, testbroker.Timeout, 10*time.Millisecond)
	spent, growth := processCPUTime()-cpu, heapBytes()-before
	t.Logf("20 SUBSCRIBEs of 5,000 filters: %d granted, %s CPU, heap grew %.1f MB", granted, spent, float64(growth)/1e6)
	require.Less(t, growth, int64(4<<20))
	require.Less(t, spent, 5*time.Second)

	// An MQTT 3.1.1 client gets 0x80 for the refused filters.
	code, raw := dialRaw(t, b.Addr, "flood3", "mallory", false)
	require.Zero(t, code)
	filters := make([]string, 100)
	for i := range filters {
		filters[i] = fmt.Sprintf("g/%d", i)
	}
	codes := raw.subscribe(t, 1, filters...)
	require.Len(t, codes, 100)
	for i, r := range codes {
		if i < mochi.DefaultFiltersPerSubscribe {
			require.Equal(t, byte(1), r)
		} else {
			require.Equal(t, byte(0x80), r)
		}
	}
	// Subscription bytes: deep filters cost mochi a node per level.
	code, raw = dialRaw(t, b.Addr, "deepsubs", "mallory", false)
	require.Zero(t, code)
	deepFilter := func(i int) string { return fmt.Sprintf("%d/", i) + strings.Repeat("x/", 62) + "x" }
	n := 0
	for i := range 64 {
		if raw.subscribe(t, 1, deepFilter(i))[0] == 1 {
			n++
		}
	}
	require.Equal(t, int(mochi.DefaultSubscriptionBytes/(1024+int64(len(deepFilter(10)))+64*640)), n, "1 MiB of 64-level filters")
}

// dialPaho connects a paho v5 client with the given CONNECT properties,
// subscribes it to filter at QoS 1 and passes it each message.
func dialPaho(t *testing.T, addr, id string, props *paho.ConnectProperties, filter string, got func(*paho.Publish)) *paho.Client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: nc, AuthHandler: nopAuth{},
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			got(pr.Packet)
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), testbroker.Timeout)
	defer cancel()
	_, err = c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true, Username: id, UsernameFlag: true,
		Password: []byte("pw"), PasswordFlag: true, Properties: props})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	require.NoError(t, err)
	return c
}

// TestBooksBalance: once well-behaved clients got and acknowledged every
// message (QoS 0, 1 and 2, retained ones, through mochi's flow control,
// to an MQTT 3.1.1 client, and queued for a kept session that resumes),
// the hook's books hold nothing: what it charges a client it credits back.
func TestBooksBalance(t *testing.T) {
	b := startQuota(t, mochi.Limits{}, mqttsec.Quotas{}, mochi.HardenConfig{})
	// A kept session that goes offline.
	kept, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "kept", Username: "kept", Password: []byte("pw"), SessionExpiry: 300})
	require.NoError(t, err)
	require.Equal(t, byte(2), kept.Sub(t, "all/#", 2))
	require.NoError(t, kept.Disconnect(&paho.Disconnect{}))
	require.Eventually(t, func() bool { return b.events.count(mqttsec.EventDisconnected, "kept") == 1 }, testbroker.Timeout, 10*time.Millisecond)

	v5, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "v5", Username: "v5", Password: []byte("pw")})
	require.NoError(t, err)
	require.Equal(t, byte(2), v5.Sub(t, "all/#", 2))
	// A client with a receive maximum of 2: mochi holds back QoS 1/2
	// messages beyond two unacknowledged ones.
	var flow atomic.Int64
	two := uint16(2)
	dialPaho(t, b.Addr, "flow", &paho.ConnectProperties{ReceiveMaximum: &two}, "all/#", func(*paho.Publish) { flow.Add(1) })
	code, v3, err := testbroker.DialV3(t, b.Addr, "v3", "v3", "pw")
	require.NoError(t, err)
	require.Zero(t, code)
	granted, err := v3.Subscribe("all/#", 1)
	require.NoError(t, err)
	require.Equal(t, byte(1), granted)
	var v3got atomic.Int64
	go func() {
		for {
			if _, _, err := v3.ReadPublish(testbroker.Timeout); err != nil {
				return
			}
			v3got.Add(1)
		}
	}()

	pub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "pub", Username: "pub", Password: []byte("pw")})
	require.NoError(t, err)
	const n = 30
	for i := range n {
		_, err := pub.Publish(context.Background(), &paho.Publish{Topic: fmt.Sprintf("all/%d", i), Payload: payload(10_000),
			QoS: byte(i % 3), Retain: i%5 == 0})
		require.NoError(t, err)
	}
	v5got := 0
	require.Eventually(t, func() bool {
		for {
			select {
			case <-v5.Messages():
				v5got++
			default:
				// At least once: mochi may send a QoS 1 message twice.
				return v5got >= n && flow.Load() >= n && v3got.Load() >= n
			}
		}
	}, testbroker.Timeout, 10*time.Millisecond)

	// The kept session resumes: mochi resends what it queued (QoS 1 and 2).
	kept, ca, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "kept", Username: "kept", Password: []byte("pw"),
		SessionExpiry: 300, Resume: true})
	require.NoError(t, err)
	require.True(t, ca.SessionPresent)
	keptGot := 0
	require.Eventually(t, func() bool {
		for {
			select {
			case <-kept.Messages():
				keptGot++
			default:
				return keptGot >= 2*n/3
			}
		}
	}, testbroker.Timeout, 10*time.Millisecond)
	require.Eventually(t, func() bool { return b.Hook.OutboundBytes() == 0 }, testbroker.Timeout, 10*time.Millisecond,
		"books: %d bytes", b.Hook.OutboundBytes())
}

// propsConnect is an MQTT v5 CONNECT whose properties are n empty user
// properties (five bytes each: mochi decodes each into 32).
func propsConnect(id string, n int) []byte {
	props := make([]byte, 0, 5*n)
	for range n {
		props = append(props, 0x26, 0, 0, 0, 0)
	}
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30}
	for l := len(props); ; {
		d := byte(l % 128)
		l /= 128
		if l > 0 {
			d |= 0x80
		}
		body = append(body, d)
		if l == 0 {
			break
		}
	}
	body = append(body, props...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(id)))
	return frameRaw(0x10, append(body, id...))
}

// TestPreAuthUserProperties: a CONNECT within the pre-authentication size
// limit but packed with user properties decodes to 1 MB in mochi (twice
// 13,000 properties of 32 bytes, and the hook's copy), held while the
// client authenticates. It is refused (0x97) before authentication: 50
// such CONNECTs waiting for a slow authenticator would hold 50 MB.
func TestPreAuthUserProperties(t *testing.T) {
	var calls atomic.Int64
	slow := mqttsec.AuthenticatorFunc(func(ctx context.Context, _ *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
		calls.Add(1)
		select {
		case <-time.After(3 * time.Second):
		case <-ctx.Done():
		}
		return nil, mqttsec.ErrServerBusy
	})
	addr, _ := serveHardened(t, slow, mochi.HardenConfig{})
	pk := propsConnect("c", 13000)
	require.Greater(t, len(pk), 60_000)
	require.Less(t, len(pk), mochi.DefaultMaxConnectSize)
	before := heapBytes()
	conns := make([]net.Conn, 50)
	for i := range conns {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 2, byte(i/25), byte(1+i%25))}}
		c, err := d.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = c.Write(pk)
		require.NoError(t, err)
		conns[i] = c
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		ack := make([]byte, 5)
		_, err := io.ReadFull(c, ack)
		require.NoError(t, err, "a CONNACK before the authenticator's answer")
		require.Equal(t, []byte{0x20, ack[1], 0, byte(mqttsec.CodeQuotaExceeded)}, ack[:4])
	}
	growth := heapBytes() - before
	t.Logf("50 CONNECTs of %d bytes of user properties: heap grew %.1f MB", len(pk), float64(growth)/1e6)
	require.Less(t, growth, int64(5<<20))
	require.Zero(t, calls.Load(), "refused before authentication")
}

// TestLimitsCapabilities: NewHook lowers mochi's capabilities to the
// limits, never raises them, and leaves them alone for a negative limit.
func TestLimitsCapabilities(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{Authenticator: byUser, Events: &recorder{}})
	s := newServer()
	_, err := mochi.NewHook(g, s, mochi.WithLogger(discard()))
	require.NoError(t, err)
	c := s.Options.Capabilities
	require.Equal(t, uint16(mochi.DefaultInflight), c.MaximumInflight)
	require.Equal(t, int32(mochi.DefaultWritesPending), c.MaximumClientWritesPending)
	require.Equal(t, uint16(mochi.DefaultTopicAliases), c.TopicAliasMaximum)

	s = newServer()
	s.Options.Capabilities.MaximumInflight = 16
	_, err = mochi.NewHook(g, s, mochi.WithLogger(discard()), mochi.WithLimits(mochi.Limits{WritesPending: -1, TopicAliases: 3}))
	require.NoError(t, err)
	c = s.Options.Capabilities
	require.Equal(t, uint16(16), c.MaximumInflight, "never raised")
	require.Equal(t, int32(8192), c.MaximumClientWritesPending, "mochi's own")
	require.Equal(t, uint16(3), c.TopicAliasMaximum)
}

// TestPublishBounds: a topic longer than TopicLength is refused with 0x90;
// properties larger than PropertyBytes with 0x97; the broker sends no topic
// aliases; the denials are reported.
func TestPublishBounds(t *testing.T) {
	b := startQuota(t, mochi.Limits{TopicLength: 64, PropertyBytes: 256}, mqttsec.Quotas{}, mochi.HardenConfig{})
	sub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "sub", Username: "sub", Password: []byte("pw")})
	require.NoError(t, err)
	require.Equal(t, byte(1), sub.Sub(t, "t/#", 1))
	require.Equal(t, byte(mqttsec.CodeTopicFilterInvalid), sub.Sub(t, "t/"+strings.Repeat("x", 64), 1))
	aliases := uint16(10)
	received := make(chan *paho.Publish, 4)
	dialPaho(t, b.Addr, "aliases", &paho.ConnectProperties{TopicAliasMaximum: &aliases}, "t/#", func(p *paho.Publish) { received <- p })
	pub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "pub", Username: "pub", Password: []byte("pw")})
	require.NoError(t, err)

	pr, _ := pub.Publish(context.Background(), &paho.Publish{Topic: "t/" + strings.Repeat("x", 63), QoS: 1, Payload: []byte("x")})
	require.NotNil(t, pr)
	require.Equal(t, byte(mqttsec.CodeTopicNameInvalid), pr.ReasonCode)
	big := []paho.UserProperty{{Key: "k", Value: strings.Repeat("v", 300)}}
	pr, _ = pub.Publish(context.Background(), &paho.Publish{Topic: "t/props", QoS: 1, Payload: []byte("x"),
		Properties: &paho.PublishProperties{User: big}})
	require.NotNil(t, pr)
	require.Equal(t, byte(mqttsec.CodeQuotaExceeded), pr.ReasonCode)
	sub.NoMessage(t, 200*time.Millisecond)
	require.Positive(t, b.events.count(mqttsec.EventPublishDenied, "pub"))

	// Within the bounds: delivered, without a topic alias although the
	// subscriber accepts ten.
	for range 2 {
		code, err := pub.Pub(t, "t/fine", []byte("x"), 1)
		require.NoError(t, err)
		require.Zero(t, code)
		sub.ExpectMessage(t, "t/fine", testbroker.Timeout)
		select {
		case m := <-received:
			require.Equal(t, "t/fine", m.Topic)
			require.Nil(t, m.Properties.TopicAlias)
		case <-time.After(testbroker.Timeout):
			t.Fatal("no message")
		}
	}

	// A CONNECT whose will topic is too long is refused.
	_, ca, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "w", Username: "w", Password: []byte("pw"),
		Will: &paho.WillMessage{Topic: "t/" + strings.Repeat("x", 63), Payload: []byte("bye")}})
	require.Error(t, err)
	require.Equal(t, byte(mqttsec.CodeTopicNameInvalid), ca.ReasonCode)
}

// TestAliasTooLong: a topic alias set for a topic beyond TopicLength
// disconnects the client with 0x94: mochi would keep the topic.
func TestAliasTooLong(t *testing.T) {
	b := startQuota(t, mochi.Limits{TopicLength: 64}, mqttsec.Quotas{}, mochi.HardenConfig{})
	c, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "a", Username: "a", Password: []byte("pw")})
	require.NoError(t, err)
	alias := uint16(1)
	_, _ = c.Publish(context.Background(), &paho.Publish{Topic: "t/" + strings.Repeat("x", 100), QoS: 0, Payload: []byte("x"),
		Properties: &paho.PublishProperties{TopicAlias: &alias}})
	select {
	case d := <-c.ServerDisconnect():
		require.Equal(t, byte(mqttsec.CodeTopicAliasInvalid), d.ReasonCode)
	case <-time.After(testbroker.Timeout):
		t.Fatal("no DISCONNECT 0x94")
	}
}

// TestPasswordCleared: the hook clears the password in mochi's CONNECT
// buffer once the Guard has decided, and gives the client its own copy of
// what mochi keeps from the packet.
func TestPasswordCleared(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{Authenticator: byUser, Authorizer: allowAll, Events: &recorder{}})
	s := newServer()
	h, err := mochi.NewHook(g, s, mochi.WithLogger(discard()))
	require.NoError(t, err)
	buf := []byte("client-1alicesecret-password")
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ClientIdentifier: string(buf[:8]), Clean: true, Keepalive: 30,
			UsernameFlag: true, Username: buf[8:13], PasswordFlag: true, Password: buf[13:]}}
	cl := s.NewClient(newDiscardConn(), "t", "", false)
	cl.ParseConnect("t", pk)
	require.NoError(t, h.OnConnect(cl, pk))
	require.Equal(t, make([]byte, len("secret-password")), buf[13:], "cleared")
	require.Equal(t, "client-1", cl.ID)
	require.Equal(t, "alice", string(cl.Properties.Username))
	copy(buf, "XXXXXXXXXXXXX")
	require.Equal(t, "alice", string(cl.Properties.Username), "not a view of the packet")
	cl.Stop(nil)
}

// TestMeasurePreAuth logs what 1,000 sockets that each claim a 383 kB
// CONNECT and never send it make the broker hold, with the default
// pre-authentication bounds and without them.
func TestMeasurePreAuth(t *testing.T) {
	if !measure() {
		t.Skip("MQTTSEC_MEASURE is not set")
	}
	for _, tt := range []struct {
		name string
		hc   mochi.HardenConfig
	}{{"defaults", mochi.HardenConfig{}}, {"unbounded", mochi.HardenConfig{MaxConnectSize: 1 << 20, MaxPending: -1, MaxPendingPerIP: -1}}} {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := serveHardened(t, anyone, tt.hc)
			before := heapBytes()
			var conns []net.Conn
			for i := range 1000 {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 3, byte(i/200), byte(1+i%200))}}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue
				}
				conns = append(conns, c)
				_, _ = c.Write([]byte{0x10, 0xFF, 0xB0, 0x17})
			}
			time.Sleep(time.Second)
			t.Logf("%d sockets claiming 383 kB: heap grew %.1f MB", len(conns), float64(heapBytes()-before)/1e6)
			for _, c := range conns {
				_ = c.Close()
			}
		})
	}
}

// TestMeasureClients logs what an idle authenticated connection, and a
// kept session with 100 one-level subscriptions, cost the broker.
func TestMeasureClients(t *testing.T) {
	if !measure() {
		t.Skip("MQTTSEC_MEASURE is not set")
	}
	b := startQuota(t, mochi.Limits{}, mqttsec.Quotas{}, mochi.HardenConfig{})
	const n = 200
	before := heapBytes()
	for i := range n {
		code, _ := dialRaw(t, b.Addr, fmt.Sprintf("idle-%d", i), fmt.Sprintf("u%d", i), false)
		require.Zero(t, code)
	}
	t.Logf("an idle connection: %.1f KB", float64(heapBytes()-before)/n/1e3)
	before = heapBytes()
	filters := make([]string, 50)
	for i := range n {
		code, c := dialRaw(t, b.Addr, fmt.Sprintf("kept-%d", i), fmt.Sprintf("k%d", i), true)
		require.Zero(t, code)
		for j := range filters {
			filters[j] = fmt.Sprintf("f%d-%d", i, j)
		}
		c.subscribe(t, 0, filters...)
		for j := range filters {
			filters[j] = fmt.Sprintf("g%d-%d", i, j)
		}
		c.subscribe(t, 0, filters...)
		_ = c.Close()
	}
	time.Sleep(500 * time.Millisecond)
	t.Logf("a kept session with 100 one-level subscriptions: %.1f KB", float64(heapBytes()-before)/n/1e3)
}

// TestRetainedBurst: a new subscription matching more retained messages
// than the client may hold at once gets what fits; the rest are dropped
// for it, and the client, which has not been slow, stays connected.
func TestRetainedBurst(t *testing.T) {
	b := startQuota(t, mochi.Limits{DropBacklog: 128 << 10, MaxBacklog: 512 << 10}, mqttsec.Quotas{}, mochi.HardenConfig{})
	pub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "pub", Username: "pub", Password: []byte("pw")})
	require.NoError(t, err)
	for i := range 20 {
		pr, err := pub.Publish(context.Background(), &paho.Publish{Topic: fmt.Sprintf("r/%d", i), Payload: payload(100_000), QoS: 1, Retain: true})
		require.NoError(t, err)
		require.Zero(t, pr.ReasonCode)
	}
	code, c := dialRaw(t, b.Addr, "late", "late", false)
	require.Zero(t, code)
	require.Equal(t, []byte{1}, c.subscribe(t, 1, "r/#"))
	require.Eventually(t, func() bool { return b.events.count(mqttsec.EventDropped, "late") > 0 }, testbroker.Timeout, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // mochi would have closed the connection by now
	cl, ok := b.Server.Clients.Get("late")
	require.True(t, ok)
	require.False(t, cl.Closed(), "not disconnected")
	require.LessOrEqual(t, b.Hook.BacklogBytes(cl), int64(512<<10+100_000+4096))
}
