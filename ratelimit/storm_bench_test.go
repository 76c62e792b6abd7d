package ratelimit

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/testbroker"
)

var stormUsers = flag.Int("storm.users", 1000, "first logins of BenchmarkLoginStorm")

// BenchmarkLoginStorm measures what a cold storm of first logins (bcrypt
// cost 10, each user's first login, from as many addresses) does to a
// connected client: the QoS 1 round trip of a client connected before the
// storm, idle (before and after the storm) and during the storm, with the Gate in front of the password
// verification ("gate") and without it ("ungated", the verification bound
// of auth.Passwords alone). Storm clients retry a refused CONNECT with an
// exponential back-off (0.2 s doubling up to 5 s, jittered), as real clients
// do, until all have logged in. Reported: the round trip's p50 and p99 idle
// and during the storm, their ratio, the CONNECTs refused with 0x89 (server
// busy, the Gate's slot budget), with 0x9F (the Limiter's global CONNECT
// rate, 1000/s) and with any other code or no answer at all, and the
// storm's duration. "control" is the floor of any design that verifies
// passwords at all: one goroutine verifying bcrypt-10 back to back, and no
// storm traffic.
//
//	go test -run '^$' -bench LoginStorm -benchtime 1x -timeout 60m ./ratelimit
func BenchmarkLoginStorm(b *testing.B) {
	users := make([]string, *stormUsers)
	for i := range users {
		users[i] = fmt.Sprintf("user%04d", i)
	}
	for _, gated := range []bool{true, false} {
		name := "gate"
		if !gated {
			name = "ungated"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				storm(b, append(users, "probe"), gated)
			}
		})
	}
	b.Run("control", func(b *testing.B) {
		for b.Loop() {
			control(b)
		}
	})
}

// control measures the probe's round trip idle and while one goroutine
// verifies bcrypt-10 hashes back to back (what one verification slot costs
// the broker), with no storm traffic.
func control(b *testing.B) {
	pw := passwords(b, 10, "secret", "probe", "x")
	lim, err := New(Config{Events: quiet})
	require.NoError(b, err)
	g := mqttsec.New(mqttsec.Config{Authenticator: pw, Authorizer: allowAll, Limiter: lim, Events: quiet})
	br := testbroker.Start(b, g, testbroker.Options{})
	rtt := probeRTT(b, br.Addr)
	idle := sample(rtt, 2000)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			cl := &mqttsec.Client{ID: "x", Username: "x", RemoteAddr: "127.0.0.9:1"}
			_, _ = pw.Authenticate(context.Background(), cl, mqttsec.Credentials{Password: []byte(fmt.Sprint("wrong", i))})
		}
	}()
	busy := sample(rtt, 2000)
	stop.Store(true)
	<-done
	report(b, idle, busy)
}

// probeRTT connects the probe client and returns its QoS 1 round trip.
func probeRTT(b *testing.B, addr string) func() time.Duration {
	probe, _, err := testbroker.Dial(b, addr, testbroker.ClientOptions{ClientID: "probe", Username: "probe", Password: []byte("secret")})
	require.NoError(b, err)
	rtt := func() time.Duration {
		start := time.Now()
		code, err := probe.Pub(b, "probe", []byte("ping"), 1)
		require.NoError(b, err)
		require.Zero(b, code)
		return time.Since(start)
	}
	for range 200 { // warm up
		rtt()
	}
	return rtt
}

// sample measures n round trips, 1 ms apart.
func sample(rtt func() time.Duration, n int) []time.Duration {
	d := make([]time.Duration, 0, n)
	for range n {
		d = append(d, rtt())
		time.Sleep(time.Millisecond)
	}
	return d
}

func quantile(d []time.Duration, q float64) float64 {
	slices.Sort(d)
	return float64(d[int(q*float64(len(d)-1))]) / float64(time.Millisecond)
}

func report(b *testing.B, idle, during []time.Duration) {
	b.ReportMetric(quantile(idle, 0.5), "idle-p50-ms")
	b.ReportMetric(quantile(idle, 0.99), "idle-p99-ms")
	b.ReportMetric(quantile(during, 0.5), "storm-p50-ms")
	b.ReportMetric(quantile(during, 0.99), "storm-p99-ms")
	b.ReportMetric(quantile(during, 0.99)/quantile(idle, 0.99), "p99-ratio")
}

func storm(b *testing.B, users []string, gated bool) {
	needLoopbacks(b)
	pw := passwords(b, 10, "secret", users...)
	authn := mqttsec.Authenticator(pw)
	if gated {
		authn = NewGate(pw, GateConfig{})
	}
	lim, err := New(Config{Events: quiet})
	require.NoError(b, err)
	g := mqttsec.New(mqttsec.Config{Authenticator: authn, Authorizer: allowAll, Limiter: lim, Events: quiet})
	br := testbroker.Start(b, g, testbroker.Options{})
	rtt := probeRTT(b, br.Addr)
	idle := sample(rtt, 2000)

	var busy, rate, other, done atomic.Int64
	var otherMu sync.Mutex
	others := map[string]int{}
	var wg sync.WaitGroup
	var connsMu sync.Mutex
	var conns []net.Conn
	start := time.Now()
	n := len(users) - 1
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := fmt.Sprintf("127.1.%d.%d", i/250, i%250+1)
			backoff := 200 * time.Millisecond
			for {
				code, c, err := rawConnect(b, br.Addr, local, users[i], users[i], "secret")
				switch {
				case err == nil && code == 0:
					connsMu.Lock()
					conns = append(conns, c)
					connsMu.Unlock()
					done.Add(1)
					return
				case err == nil && code == byte(mqttsec.CodeServerBusy):
					busy.Add(1)
				case err == nil && code == byte(mqttsec.CodeConnectionRateExceeded):
					rate.Add(1)
				default:
					other.Add(1)
					otherMu.Lock()
					if err != nil {
						others[err.Error()]++
					} else {
						others[fmt.Sprintf("0x%02X", code)]++
					}
					otherMu.Unlock()
				}
				time.Sleep(backoff/2 + rand.N(backoff))
				backoff = min(2*backoff, 5*time.Second)
			}
		}()
	}
	var during []time.Duration
	for done.Load() < int64(n) {
		during = append(during, rtt())
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	wg.Wait()
	for _, c := range conns {
		_ = c.Close()
	}
	time.Sleep(time.Second)
	idle = append(idle, sample(rtt, 2000)...) // the machine's load drifts: idle before and after
	report(b, idle, during)
	b.ReportMetric(float64(busy.Load()), "busy-0x89")
	b.ReportMetric(float64(rate.Load()), "rate-0x9F")
	b.ReportMetric(float64(other.Load()), "other-refusals")
	b.ReportMetric(took.Seconds(), "storm-s")
	if len(others) > 0 {
		b.Logf("other refusals: %v", others)
	}
}
