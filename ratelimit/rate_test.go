package ratelimit

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// refBucket is the token bucket GCRA is meant to be, kept as a level of
// tokens in nanoseconds: the reference the GCRA is checked against.
type refBucket struct {
	level int64 // tokens × interval, at most tau; negative is debt
	last  int64
}

func (b *refBucket) take(g gcra, now, n int64) bool {
	b.level = min(g.tau, b.level+(now-b.last))
	b.last = now
	if b.level < min(n, g.burst)*g.t {
		return false
	}
	b.level -= n * g.t
	return true
}

// TestGCRAMatchesTokenBucket checks the GCRA against the token bucket it
// encodes, on random rates, times and event sizes (larger than the burst
// included).
func TestGCRAMatchesTokenBucket(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		r := Every(time.Duration(1+rng.IntN(1000)), 1+rng.IntN(20))
		g := r.gcra()
		ref := refBucket{level: g.tau}
		var tat, now int64
		for range 200 {
			now += rng.Int64N(3 * int64(r.Interval))
			n := rng.Int64N(int64(r.Burst) + 3)
			newTat, ok, rem, wait := g.take(tat, now, n)
			want := ref.take(g, now, n)
			require.Equal(t, want, ok, "rate %v at %d n %d", r, now, n)
			if ok {
				tat = newTat
				require.Zero(t, wait)
			} else {
				require.Equal(t, tat, newTat, "a refusal changes nothing")
				require.Positive(t, wait)
				// After wait, the same events are allowed.
				_, ok2, _, _ := g.take(tat, now+wait, n)
				require.True(t, ok2)
				_, ok3, _, _ := g.take(tat, now+wait-1, n)
				require.False(t, ok3)
			}
			require.Equal(t, max(0, ref.level)/g.t, rem, "remaining tokens")
		}
	}
}

// TestGCRAAgreesWithXTimeRate compares decisions with golang.org/x/time/rate
// on events of at most the burst, at times between token boundaries (where
// floating point cannot tip a decision).
func TestGCRAAgreesWithXTimeRate(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	base := time.Unix(1_700_000_000, 0)
	for range 300 {
		iv := time.Duration(1+rng.IntN(100)) * time.Millisecond
		burst := 1 + rng.IntN(10)
		r := Every(iv, burst)
		g := r.gcra()
		x := rate.NewLimiter(rate.Every(iv), burst)
		var tat int64
		now := int64(0)
		for range 100 {
			now += int64(rng.IntN(4)) * int64(iv)
			at := now + int64(iv)/2 // mid-interval
			n := 1 + rng.IntN(burst)
			newTat, ok, _, _ := g.take(tat, at, int64(n))
			if ok {
				tat = newTat
			}
			require.Equal(t, x.AllowN(base.Add(time.Duration(at)), n), ok)
		}
	}
}

func TestRateForms(t *testing.T) {
	require.Equal(t, Every(10*time.Millisecond, 5), PerSecond(100, 5))
	require.True(t, Unlimited().IsUnlimited())
	require.True(t, Unlimited().Valid())
	require.True(t, Rate{}.IsZero())
	for _, r := range []Rate{{}, {Interval: time.Second}, {Burst: 3}, PerSecond(0, 3), PerSecond(-1, 3)} {
		require.False(t, r.Valid(), "%+v", r)
		_, ok, _, wait := r.gcra().take(0, 0, 1)
		require.False(t, ok, "an invalid rate allows nothing: %+v", r)
		require.Negative(t, wait)
	}
	_, ok, _, _ := Unlimited().gcra().take(0, 0, 1<<40)
	require.True(t, ok)
	require.Equal(t, "100/s burst 5", PerSecond(100, 5).String())
	require.Equal(t, "unlimited", Unlimited().String())
	require.Equal(t, "none", Rate{}.String())
	// Extremes saturate instead of overflowing.
	g := Every(time.Duration(1<<62), 1<<30).gcra()
	newTat, ok, _, _ := g.take(0, 0, 1<<40)
	require.True(t, ok)
	require.Positive(t, newTat)
}
