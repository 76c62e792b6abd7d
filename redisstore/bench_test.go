package redisstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/clientid"
	"github.com/mqttsec/mqttsec/ratelimit"
	"github.com/mqttsec/mqttsec/redisstore"
)

// benchClients returns n clients with distinct IDs, each its own identity.
func benchClients(n int) []*mqttsec.Client {
	cls := make([]*mqttsec.Client, n)
	for i := range cls {
		cls[i] = &mqttsec.Client{ID: fmt.Sprintf("dev-%d", i),
			Identity: &mqttsec.Identity{Subject: fmt.Sprintf("user-%d", i), Method: mqttsec.MethodPassword}}
	}
	return cls
}

// BenchmarkClaimRelease is a CONNECT's claim and its DISCONNECT's release
// of a client ID: two Lua scripts, a round trip each, on the cluster
// registry, against the in-memory clientid.Registry of one broker.
func BenchmarkClaimRelease(b *testing.B) {
	rdb := needRedis(b)
	p := prefix(b, rdb)
	n := newNode(b, rdb, p, nil)
	regs := map[string]mqttsec.Registry{
		"redis":  n.Registry(redisstore.RegistryConfig{}),
		"memory": clientid.NewRegistry(),
	}
	for _, name := range []string{"redis", "memory"} {
		reg := regs[name]
		cls := benchClients(1024)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var i atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					cl := cls[int(i.Add(1))%len(cls)]
					l, err := reg.Claim(ctx, cl)
					if err != nil {
						if mqttsec.CodeOf(err) == mqttsec.CodeClientIDNotValid {
							continue // two goroutines on one ID: the same identity takes over
						}
						b.Fatal(err)
					}
					l.Release(0)
				}
			})
		})
	}
}

// BenchmarkRefresh is the periodic refresh of 2,000 live leases, pipelined
// (512 scripts a round trip) and one round trip per lease. ns/op is per
// lease.
func BenchmarkRefresh(b *testing.B) {
	rdb := needRedis(b)
	p := prefix(b, rdb)
	n := newNode(b, rdb, p, nil)
	reg := n.Registry(redisstore.RegistryConfig{LeaseTTL: time.Hour})
	const leases = 2000
	for _, cl := range benchClients(leases) {
		_, err := reg.Claim(context.Background(), cl)
		require.NoError(b, err)
	}
	for _, batch := range []int{512, 1} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			old := redisstore.SetRefreshBatch(batch)
			defer redisstore.SetRefreshBatch(old)
			b.ReportAllocs()
			for b.Loop() {
				reg.Refresh(context.Background())
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*leases), "ns/lease")
			b.ReportMetric(float64(b.N*leases)/b.Elapsed().Seconds(), "leases/s")
		})
	}
}

// BenchmarkKick publishes a cluster kick.
func BenchmarkKick(b *testing.B) {
	rdb := needRedis(b)
	p := prefix(b, rdb)
	n := newNode(b, rdb, p, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := n.Kick(context.Background(), redisstore.ClientID("nobody"), mqttsec.CodeAdministrativeAction); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPolicyPropagation is the time from a policy change on one node
// (AddPolicy or RemovePolicy through its enforcer) until the other node's
// index has reloaded it.
func BenchmarkPolicyPropagation(b *testing.B) {
	rdb := needRedis(b)
	p := prefix(b, rdb)
	policy := &sharedAdapter{}
	for i := range 1000 { // a policy of some size to reload
		policy.rules = append(policy.rules, []string{"p", fmt.Sprintf("user-%d", i), fmt.Sprintf("devices/%d/#", i), "readwrite", "allow"})
	}
	var cs [2]*acl.Casbin
	var es [2]*casbin.Enforcer
	for i := range 2 {
		n := newNode(b, rdb, p, nil)
		e, err := casbin.NewEnforcer(acl.NewModel(), policy)
		require.NoError(b, err)
		c, err := acl.NewCasbin(e, acl.WithWatcher(n.Watcher()))
		require.NoError(b, err)
		cs[i], es[i] = c, e
	}
	var worst time.Duration
	i := 0
	for b.Loop() {
		gen := cs[1].Generation()
		start := time.Now()
		var err error
		if i%2 == 0 {
			_, err = es[0].AddPolicy("bob", "x/#", "readwrite", "allow")
		} else {
			_, err = es[0].RemovePolicy("bob", "x/#", "readwrite", "allow")
		}
		if err != nil {
			b.Fatal(err)
		}
		for cs[1].Generation() == gen {
			if time.Since(start) > 10*time.Second {
				b.Fatal("no propagation within 10 s")
			}
			time.Sleep(20 * time.Microsecond)
		}
		worst = max(worst, time.Since(start))
		i++
	}
	b.ReportMetric(float64(worst.Microseconds()), "worst-µs")
}

// BenchmarkRateAllowN is one allowed decision of a cluster rate limit (a
// CONNECT from an address): a Lua script in Redis, against the in-memory
// ratelimit.MemoryStore of one broker.
func BenchmarkRateAllowN(b *testing.B) {
	rdb := needRedis(b)
	p := prefix(b, rdb)
	n := newNode(b, rdb, p, nil)
	r := ratelimit.PerSecond(1e9, 1<<30) // never refuses
	for _, c := range []struct {
		name string
		s    ratelimit.Store
	}{
		{"redis", n.RateStore("bench", redisstore.RateConfig{})},
		{"memory", ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var i atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				key := fmt.Sprintf("192.0.2.%d", i.Add(1))
				ctx := context.Background()
				for pb.Next() {
					res, err := c.s.AllowN(ctx, key, r, 1, time.Now())
					if err != nil || !res.Allowed {
						b.Fatal(err, res)
					}
				}
			})
		})
	}
}

// BenchmarkRateFlood is a refused decision of a client over its limit,
// the flood path: with the local refusal cache (no round trip until the
// refusal's RetryAfter), without it (a script per packet), and the
// in-memory store.
func BenchmarkRateFlood(b *testing.B) {
	rdb := needRedis(b)
	p := prefix(b, rdb)
	n := newNode(b, rdb, p, nil)
	r := ratelimit.Every(time.Hour, 1)
	for _, c := range []struct {
		name string
		s    ratelimit.Store
	}{
		{"redis-deny-cache", n.RateStore("flood-cached", redisstore.RateConfig{})},
		{"redis-no-cache", n.RateStore("flood-uncached", redisstore.RateConfig{DenyCache: -1})},
		{"memory", ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			_, _ = c.s.AllowN(ctx, "flooder", r, 1, time.Now())
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := c.s.AllowN(ctx, "flooder", r, 1, time.Now())
					if err != nil || res.Allowed {
						b.Fatal(err, res)
					}
				}
			})
		})
	}
}
