package ratelimit

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/mqttsec/mqttsec"
)

// The benchmarks compare this package's GCRA with golang.org/x/time/rate in
// the same run: one bucket (a connection's), and a keyed store (an address
// or client ID per key), where x/time/rate is a *rate.Limiter per key in a
// sync.Map, the usual way to key it. Both are given the time, so neither
// pays for reading the clock.

var benchT0 = time.Unix(1_700_000_000, 0)

func BenchmarkAllowBucket(b *testing.B) {
	b.Run("gcra", func(b *testing.B) {
		var bk bucket
		g := PerSecond(1e9, 1000).gcra()
		b.ReportAllocs()
		now := int64(0)
		for b.Loop() {
			now++
			bk.take(g, now, 1)
		}
	})
	b.Run("x-time-rate", func(b *testing.B) {
		l := rate.NewLimiter(1e9, 1000)
		b.ReportAllocs()
		now := benchT0
		for b.Loop() {
			now = now.Add(1)
			l.AllowN(now, 1)
		}
	})
}

func BenchmarkAllowBucketParallel(b *testing.B) {
	b.Run("gcra", func(b *testing.B) {
		var bk bucket
		g := PerSecond(1e9, 1000).gcra()
		var clock atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				bk.take(g, clock.Add(1), 1)
			}
		})
	})
	b.Run("x-time-rate", func(b *testing.B) {
		l := rate.NewLimiter(1e9, 1000)
		var clock atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.AllowN(benchT0.Add(time.Duration(clock.Add(1))), 1)
			}
		})
	})
}

// keys returns n distinct address-like keys.
func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255)
	}
	return out
}

// xrateStore is x/time/rate keyed the usual way.
type xrateStore struct{ m sync.Map }

func (s *xrateStore) allow(key string, now time.Time) bool {
	v, ok := s.m.Load(key)
	if !ok {
		v, _ = s.m.LoadOrStore(key, rate.NewLimiter(rate.Every(time.Second), 10))
	}
	return v.(*rate.Limiter).AllowN(now, 1)
}

const benchKeys = 100_000

func BenchmarkAllowKeyed(b *testing.B) {
	ks := keys(benchKeys)
	r := Every(time.Second, 10)
	b.Run("gcra", func(b *testing.B) {
		s := NewMemoryStore(MemoryConfig{})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s.AllowN(bg, ks[i%benchKeys], r, 1, benchT0)
			i++
		}
	})
	b.Run("x-time-rate", func(b *testing.B) {
		var s xrateStore
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s.allow(ks[i%benchKeys], benchT0)
			i++
		}
	})
}

func BenchmarkAllowKeyedParallel(b *testing.B) {
	ks := keys(benchKeys)
	r := Every(time.Second, 10)
	b.Run("gcra", func(b *testing.B) {
		s := NewMemoryStore(MemoryConfig{})
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919))
			for pb.Next() {
				s.AllowN(bg, ks[i%benchKeys], r, 1, benchT0)
				i++
			}
		})
	})
	b.Run("x-time-rate", func(b *testing.B) {
		var s xrateStore
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919))
			for pb.Next() {
				s.allow(ks[i%benchKeys], benchT0)
				i++
			}
		})
	})
}

// BenchmarkBytesPerKey measures the heap a store holds for 1,000,000 active
// keys (each took a token and is not idle yet), the keys' own strings
// included where the store keeps them.
func BenchmarkBytesPerKey(b *testing.B) {
	const n = 1_000_000
	measure := func(b *testing.B, fill func(key []byte)) {
		var buf []byte
		for b.Loop() {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := range n {
				buf = strconv.AppendInt(buf[:0], int64(i), 10)
				fill(buf)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/key")
		}
	}
	r := Every(time.Hour, 10)
	b.Run("gcra", func(b *testing.B) {
		var s *MemoryStore
		measure(b, func(key []byte) {
			if s == nil {
				s = NewMemoryStore(MemoryConfig{MaxKeys: 2 * n})
			}
			s.AllowN(bg, string(key), r, 1, benchT0)
		})
		if s != nil {
			b.ReportMetric(float64(s.Evictions()), "evictions")
		}
		runtime.KeepAlive(s)
	})
	b.Run("gcra-default-bound", func(b *testing.B) {
		var s *MemoryStore
		measure(b, func(key []byte) {
			if s == nil {
				s = NewMemoryStore(MemoryConfig{})
			}
			s.AllowN(bg, string(key), r, 1, benchT0)
		})
		if s != nil {
			b.ReportMetric(float64(s.Evictions()), "evictions")
		}
		runtime.KeepAlive(s)
	})
	b.Run("x-time-rate", func(b *testing.B) {
		var s *xrateStore
		measure(b, func(key []byte) {
			if s == nil {
				s = &xrateStore{}
			}
			s.allow(string(key), benchT0)
		})
		runtime.KeepAlive(s)
	})
}

// BenchmarkAllowPublish is the per-PUBLISH check of a connection: the
// message and byte buckets, the clock read included, against two
// x/time/rate limiters doing the same.
func BenchmarkAllowPublish(b *testing.B) {
	// Rates no benchmark reaches: each check allows, and pays for both buckets.
	cfg := Config{Messages: PerSecond(1e9, 1e9), Bytes: PerSecond(1e9, 1e9), Events: quiet}
	b.Run("ratelimit", func(b *testing.B) {
		l, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		c := &conn{l: l}
		cl := &mqttsec.Client{ID: "c"}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := c.Allow(cl, mqttsec.LimitPublish, 10); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("x-time-rate", func(b *testing.B) {
		msgs := rate.NewLimiter(1e9, 1e9)
		bytes := rate.NewLimiter(1e9, 1e9)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				now := time.Now()
				if !msgs.AllowN(now, 1) || !bytes.AllowN(now, 10) {
					b.Fatal("denied")
				}
			}
		})
	})
}
