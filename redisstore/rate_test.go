package redisstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/ratelimit"
	"github.com/mqttsec/mqttsec/redisstore"
)

// scriptCounter counts the scripts a client sends to Redis.
type scriptCounter struct{ n atomic.Int64 }

func (c *scriptCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *scriptCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *scriptCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// The buckets of a limit are shared: a burst of 3 is 3 in the whole
// cluster, whichever node asks.
func TestRateSharedAcrossNodes(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	a := newNode(t, rdb, p, nil).RateStore("connect_addr", redisstore.RateConfig{})
	b := newNode(t, rdb, p, nil).RateStore("connect_addr", redisstore.RateConfig{})
	r := ratelimit.Every(time.Hour, 3)
	ctx := context.Background()
	allowed := 0
	for i := range 6 {
		s := []*redisstore.RateStore{a, b}[i%2]
		res, err := s.AllowN(ctx, "192.0.2.1", r, 1, time.Now())
		require.NoError(t, err)
		if res.Allowed {
			allowed++
		} else {
			require.InDelta(t, float64(time.Hour), float64(res.RetryAfter), float64(time.Minute))
		}
	}
	require.Equal(t, 3, allowed)
	// Another key has its own bucket.
	res, err := a.AllowN(ctx, "192.0.2.2", r, 1, time.Now())
	require.NoError(t, err)
	require.True(t, res.Allowed)
	require.Equal(t, 2, res.Remaining)
	requireTTLs(t, rdb, p)
	d := rdb.PTTL(ctx, p+"rate:connect_addr:192.0.2.2").Val()
	require.InDelta(t, float64(time.Hour), float64(d), float64(time.Minute), "the key lives until the bucket is full again")
}

// The script's decisions are those of ratelimit.Rate: tokens come back
// with time, a request larger than the burst passes on a full bucket and
// empties it for as long as it needs, n = 0 only reports and writes
// nothing, Unlimited and invalid rates need no Redis.
func TestRateSemantics(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	s := newNode(t, rdb, p, nil).RateStore("x", redisstore.RateConfig{DenyCache: -1})
	ctx := context.Background()
	allow := func(key string, r ratelimit.Rate, n int) ratelimit.Result {
		t.Helper()
		res, err := s.AllowN(ctx, key, r, n, time.Now())
		require.NoError(t, err)
		return res
	}
	r := ratelimit.Every(100*time.Millisecond, 2)
	require.True(t, allow("k", r, 2).Allowed)
	res := allow("k", r, 1)
	require.False(t, res.Allowed)
	require.Greater(t, res.RetryAfter, time.Duration(0))
	require.LessOrEqual(t, res.RetryAfter, 100*time.Millisecond)
	time.Sleep(res.RetryAfter + 5*time.Millisecond)
	require.True(t, allow("k", r, 1).Allowed, "a token came back")

	require.True(t, allow("big", r, 10).Allowed, "larger than the burst on a full bucket")
	res = allow("big", r, 1)
	require.False(t, res.Allowed)
	require.Greater(t, res.RetryAfter, 800*time.Millisecond, "empty for 10 tokens' time")

	require.Equal(t, 2, allow("peek", r, 0).Remaining)
	require.Zero(t, rdb.Exists(ctx, p+"rate:x:peek").Val(), "n = 0 writes nothing")

	require.True(t, allow("u", ratelimit.Unlimited(), 1000).Allowed)
	res = allow("none", ratelimit.Rate{}, 1)
	require.False(t, res.Allowed)
	require.Negative(t, res.RetryAfter)
	require.Zero(t, rdb.Exists(ctx, p+"rate:x:u", p+"rate:x:none").Val())
}

// A refusal is remembered until its RetryAfter: a flood costs Redis one
// script, not one per packet, and the decisions do not change.
func TestRateDenyCache(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	counter := &scriptCounter{}
	counted := redis.NewClient(&redis.Options{Addr: redisAddr()})
	counted.AddHook(counter)
	t.Cleanup(func() { _ = counted.Close() })
	s := newNode(t, counted, p, nil).RateStore("messages", redisstore.RateConfig{})
	r := ratelimit.Every(time.Hour, 5)
	allowed := 0
	for range 1000 {
		res, err := s.AllowN(context.Background(), "flooder", r, 1, time.Now())
		require.NoError(t, err)
		if res.Allowed {
			allowed++
		}
	}
	require.Equal(t, 5, allowed)
	require.LessOrEqual(t, counter.n.Load(), int64(6+1), "5 allowed, 1 refused, then local refusals")
	// A smaller request than the one refused asks Redis again.
	big := ratelimit.Every(time.Hour, 100)
	res, err := s.AllowN(context.Background(), "bytes", big, 100, time.Now())
	require.NoError(t, err)
	require.True(t, res.Allowed)
	res, err = s.AllowN(context.Background(), "bytes", big, 50, time.Now())
	require.NoError(t, err)
	require.False(t, res.Allowed)
	before := counter.n.Load()
	_, _ = s.AllowN(context.Background(), "bytes", big, 60, time.Now())
	require.Equal(t, before, counter.n.Load(), "a larger request is refused locally")
	_, _ = s.AllowN(context.Background(), "bytes", big, 10, time.Now())
	require.Equal(t, before+1, counter.n.Load(), "a smaller one asks Redis")
}

// Two Guards sharing Redis share their CONNECT limits: an address gets
// its burst once in the cluster, not once per broker.
func TestRateLimiterAcrossNodes(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	var gs [2]*mqttsec.Guard
	for i := range gs {
		n := newNode(t, rdb, p, nil)
		lim, err := ratelimit.New(ratelimit.Config{ConnectPerAddr: ratelimit.Every(time.Hour, 4),
			NewStore: n.NewStore(redisstore.RateConfig{}), Events: &events{}})
		require.NoError(t, err)
		gs[i] = mqttsec.New(mqttsec.Config{Authenticator: passwords, Authorizer: allowAll,
			Registry: n.Registry(redisstore.RegistryConfig{}), Limiter: lim, Events: &events{}})
	}
	refused := 0
	for i := range 8 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := gs[i%2].Connect(ctx, mqttsec.Client{ID: "dev-" + string(rune('a'+i)), Username: "alice",
			RemoteAddr: "198.51.100.7:4000", Protocol: 5}, mqttsec.Credentials{Password: []byte("pw")}, nil)
		cancel()
		if err != nil {
			require.Equal(t, mqttsec.CodeConnectionRateExceeded, mqttsec.CodeOf(err), err.Error())
			refused++
			continue
		}
		gs[i%2].Disconnect(s, 0)
	}
	require.Equal(t, 4, refused, "4 of 8 attempts in the cluster, not 4 per broker")
}

// Redis down: the store falls back to limits per node (default) or
// refuses (FailClosed), and reports the outage.
func TestFaultRateRedisDown(t *testing.T) {
	noLeak(t)
	srv := startRedis(t)
	rdb := srv.client(t)
	p := prefix(t, rdb)
	ev := &events{}
	n := newNode(t, rdb, p, ev)
	local := n.RateStore("connect_addr", redisstore.RateConfig{})
	closed := n.RateStore("connect_addr", redisstore.RateConfig{FailClosed: true})
	r := ratelimit.Every(time.Hour, 2)
	srv.Stop()
	allowed := 0
	for range 5 {
		res, err := local.AllowN(context.Background(), "k", r, 1, time.Now())
		require.NoError(t, err)
		if res.Allowed {
			allowed++
		}
	}
	require.Equal(t, 2, allowed, "still limited, on this node")
	_, err := closed.AllowN(context.Background(), "k", r, 1, time.Now())
	require.ErrorIs(t, err, redisstore.ErrUnavailable)
	require.Positive(t, ev.count(mqttsec.EventError, "redis"))
	srv.Start()
	require.Eventually(t, func() bool {
		res, err := closed.AllowN(context.Background(), "k2", r, 1, time.Now())
		return err == nil && res.Allowed
	}, 10*time.Second, 20*time.Millisecond)
}
