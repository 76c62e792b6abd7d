package ratelimit

import (
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
// storm, idle and during the storm, with the Gate in front of the password
// verification ("gate") and without it ("ungated", the verification bound
// of auth.Passwords alone). Storm clients retry a refused CONNECT after a
// random back-off of 0.2 to 1 s, as real clients do, until all have logged
// in. Reported: the round trip's p50 and p99 idle and during the storm,
// their ratio, the CONNECTs refused with 0x89 (server busy) and with any
// other code or no answer at all, and the storm's duration.
//
//	go test -run '^$' -bench LoginStorm -benchtime 1x ./ratelimit
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
}

func storm(b *testing.B, users []string, gated bool) {
	pw := passwords(b, 10, "secret", users...)
	authn := mqttsec.Authenticator(pw)
	if gated {
		authn = NewGate(pw, GateConfig{})
	}
	lim, err := New(Config{Events: quiet})
	require.NoError(b, err)
	g := mqttsec.New(mqttsec.Config{Authenticator: authn, Authorizer: allowAll, Limiter: lim, Events: quiet})
	br := testbroker.Start(b, g, testbroker.Options{})
	probe, _, err := testbroker.Dial(b, br.Addr, testbroker.ClientOptions{ClientID: "probe", Username: "probe", Password: []byte("secret")})
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
	var idle []time.Duration
	for range 2000 {
		idle = append(idle, rtt())
		time.Sleep(time.Millisecond)
	}

	var busy, other, done atomic.Int64
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
				default:
					other.Add(1)
				}
				time.Sleep(time.Duration(200+rand.IntN(800)) * time.Millisecond)
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
	p := func(d []time.Duration, q float64) float64 {
		slices.Sort(d)
		return float64(d[int(q*float64(len(d)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(p(idle, 0.5), "idle-p50-ms")
	b.ReportMetric(p(idle, 0.99), "idle-p99-ms")
	b.ReportMetric(p(during, 0.5), "storm-p50-ms")
	b.ReportMetric(p(during, 0.99), "storm-p99-ms")
	b.ReportMetric(p(during, 0.99)/p(idle, 0.99), "p99-ratio")
	b.ReportMetric(float64(busy.Load()), "busy-0x89")
	b.ReportMetric(float64(other.Load()), "other-refusals")
	b.ReportMetric(took.Seconds(), "storm-s")
}
