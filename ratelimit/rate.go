package ratelimit

import (
	"fmt"
	"math"
	"time"
)

// Rate is a token bucket: it holds at most Burst tokens and gains one every
// Interval; an event takes one token (a PUBLISH of n bytes takes n from a
// byte rate). It is enforced with the generic cell rate algorithm (GCRA),
// which keeps a single time per key: the time at which the bucket will be
// full again. A key whose bucket is full needs no state at all, which is
// what lets idle keys be forgotten.
//
// An event of n > Burst tokens is allowed only when the bucket is full, and
// the bucket then stays empty until n tokens' worth of time has passed, so
// the long-run rate holds for large events too (golang.org/x/time/rate
// refuses such an event forever).
//
// A negative Interval means no limit ([Unlimited]). Otherwise Interval and
// Burst must be positive; any other Rate allows nothing. In a [Config], the
// zero Rate stands for the field's documented default.
type Rate struct {
	// Interval is the time in which the bucket gains one token: the
	// average time between two events.
	Interval time.Duration
	// Burst is the bucket's size: the number of events that may happen at
	// once after a quiet period.
	Burst int
}

// Every returns the Rate of one event per interval, with bursts of burst.
func Every(interval time.Duration, burst int) Rate {
	return Rate{Interval: interval, Burst: burst}
}

// PerSecond returns the Rate of n events per second, with bursts of burst.
// Rates above one event per nanosecond are rounded down to it; n <= 0
// returns a Rate that allows nothing.
func PerSecond(n float64, burst int) Rate {
	if !(n > 0) {
		return Rate{Burst: burst}
	}
	iv := float64(time.Second) / n
	if iv < 1 {
		iv = 1
	}
	if iv > math.MaxInt64/2 {
		iv = math.MaxInt64 / 2
	}
	return Rate{Interval: time.Duration(iv), Burst: burst}
}

// Unlimited returns the Rate that allows every event. In a [Config] it
// turns the limit off.
func Unlimited() Rate { return Rate{Interval: -1} }

// IsUnlimited reports whether r allows every event.
func (r Rate) IsUnlimited() bool { return r.Interval < 0 }

// IsZero reports whether r is the zero Rate (a [Config]'s default).
func (r Rate) IsZero() bool { return r == Rate{} }

// Valid reports whether r limits events sensibly: Unlimited, or a positive
// Interval and Burst.
func (r Rate) Valid() bool {
	return r.IsUnlimited() || (r.Interval > 0 && r.Burst > 0)
}

// String returns r as "unlimited", "none", or events per second and burst.
func (r Rate) String() string {
	switch {
	case r.IsUnlimited():
		return "unlimited"
	case !r.Valid():
		return "none"
	}
	return fmt.Sprintf("%.6g/s burst %d", float64(time.Second)/float64(r.Interval), r.Burst)
}

// gcra is a Rate in the integer form the algorithm uses: times are
// nanoseconds since a store's epoch.
type gcra struct {
	t     int64 // emission interval: ns per token
	burst int64
	tau   int64 // burst * t: the bucket's capacity in time
	state uint8 // limited, unlimited or none
}

const (
	gcraLimited uint8 = iota
	gcraUnlimited
	gcraNone
)

func (r Rate) gcra() gcra {
	switch {
	case r.IsUnlimited():
		return gcra{state: gcraUnlimited}
	case !r.Valid():
		return gcra{state: gcraNone}
	}
	t := int64(r.Interval)
	return gcra{t: t, burst: int64(r.Burst), tau: satMul(int64(r.Burst), t)}
}

// take applies n events at now to a bucket full again at tat. It returns
// whether they are allowed and the bucket's new full time (tat itself when
// they are not, or when n is 0). remaining is the number of tokens left
// after the decision; wait is, when not allowed, how long until they would
// be.
func (g gcra) take(tat, now int64, n int64) (newTat int64, ok bool, remaining int64, wait int64) {
	switch g.state {
	case gcraUnlimited:
		return tat, true, math.MaxInt64, 0
	case gcraNone:
		return tat, false, 0, -1
	}
	if tat < now {
		tat = now
	}
	if n < 0 {
		n = 0
	}
	need := min(n, g.burst) * g.t // <= tau: cannot overflow
	if late := tat - now - (g.tau - need); late > 0 {
		return tat, false, max(0, now+g.tau-tat) / g.t, late
	}
	newTat = satAdd(tat, satMul(n, g.t))
	rem := now + g.tau - newTat
	if rem < 0 {
		rem = 0
	}
	return newTat, true, rem / g.t, 0
}

func satMul(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
