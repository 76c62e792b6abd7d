package clientid_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/clientid"
)

// plainRegistry is the peer of the benchmarks: the obvious registry, one
// map of pointers behind one Mutex, with the semantics of TakeoverOwner
// (the shape of the Guard's built-in registry).
type plainRegistry struct {
	mu sync.Mutex
	m  map[string]*plainEntry
}

type plainEntry struct {
	subject string
	method  mqttsec.Method
	claims  int
	until   time.Time
}

func newPlain() *plainRegistry { return &plainRegistry{m: map[string]*plainEntry{}} }

func (r *plainRegistry) Claim(_ context.Context, cl *mqttsec.Client) (mqttsec.Lease, error) {
	id := cl.Identity
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[cl.ID]
	if ok && e.claims == 0 && !now.Before(e.until) {
		delete(r.m, cl.ID)
		ok = false
	}
	if ok && (e.subject != id.Subject || e.method != id.Method) {
		return mqttsec.Lease{}, mqttsec.ErrClientIDTaken
	}
	if !ok {
		e = &plainEntry{subject: id.Subject, method: id.Method}
		r.m[cl.ID] = e
	}
	e.claims++
	key := cl.ID
	var once sync.Once
	return mqttsec.Lease{Resume: ok, Release: func(keep time.Duration) {
		once.Do(func() {
			now := time.Now()
			r.mu.Lock()
			defer r.mu.Unlock()
			e.claims--
			if u := now.Add(keep); keep > 0 && u.After(e.until) {
				e.until = u
			}
			if e.claims == 0 && !now.Before(e.until) && r.m[key] == e {
				delete(r.m, key)
			}
		})
	}}, nil
}

// ids returns n distinct client IDs of 16 bytes and one identity for each.
func ids(n int) ([]mqttsec.Client, []*mqttsec.Identity) {
	cls := make([]mqttsec.Client, n)
	who := make([]*mqttsec.Identity, n)
	for i := range cls {
		who[i] = &mqttsec.Identity{Subject: fmt.Sprintf("user-%011d", i), Method: mqttsec.MethodPassword}
		cls[i] = mqttsec.Client{ID: fmt.Sprintf("dev-%012d", i), Identity: who[i]}
	}
	return cls, who
}

var registries = []struct {
	name string
	make func() mqttsec.Registry
}{
	{"clientid", func() mqttsec.Registry { return clientid.NewRegistry() }},
	{"map+mutex", func() mqttsec.Registry { return newPlain() }},
}

// populated returns a registry already holding 100,000 kept sessions, so
// that the maps are not trivially small.
func populated(b *testing.B, mk func() mqttsec.Registry) mqttsec.Registry {
	r := mk()
	cls, _ := ids(100_000)
	for i := range cls {
		cls[i].ID = "bg-" + cls[i].ID
		l, err := r.Claim(context.Background(), &cls[i])
		require.NoError(b, err)
		l.Release(time.Hour)
	}
	return r
}

// processCPU returns the user and system CPU time of the process: on a
// machine shared with other jobs, CPU time per operation is steadier than
// wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkClaimRelease measures one connection's claim and release of its
// client ID: "new" claims an ID nobody holds and releases it without a kept
// session; "reconnect" resumes the ID's kept session and keeps it again.
func BenchmarkClaimRelease(b *testing.B) {
	const n = 1 << 14
	for _, kind := range []string{"new", "reconnect"} {
		keep := time.Duration(0)
		if kind == "reconnect" {
			keep = time.Hour
		}
		for _, reg := range registries {
			b.Run(kind+"/"+reg.name, func(b *testing.B) {
				r := populated(b, reg.make)
				cls, _ := ids(n)
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := processCPU()
				for i := 0; i < b.N; i++ {
					l, err := r.Claim(ctx, &cls[i&(n-1)])
					if err != nil {
						b.Fatal(err)
					}
					l.Release(keep)
				}
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
			b.Run(kind+"/"+reg.name+"/parallel", func(b *testing.B) {
				r := populated(b, reg.make)
				cls, _ := ids(n * 8)
				ctx := context.Background()
				var worker atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := processCPU()
				b.RunParallel(func(pb *testing.PB) {
					// Each goroutine has IDs of its own, as devices do.
					own := cls[(worker.Add(1)-1)%8*n:][:n]
					for i := 0; pb.Next(); i++ {
						l, err := r.Claim(ctx, &own[i&(n-1)])
						if err != nil {
							b.Error(err)
							return
						}
						l.Release(keep)
					}
				})
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// heapBytesPerID measures the heap a registry holds per client ID: n IDs
// claimed and held live (their leases kept, as the Guard's sessions keep
// them) or released with a kept session. The IDs and identities exist
// before the measurement, as the adapter's and authenticator's do.
func heapBytesPerID(t testing.TB, mk func() mqttsec.Registry, n int, live bool) float64 {
	cls, who := ids(n)
	leases := make([]mqttsec.Lease, n)
	ctx := context.Background()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := mk()
	for i := range cls {
		l, err := r.Claim(ctx, &cls[i])
		require.NoError(t, err)
		if live {
			leases[i] = l
		} else {
			l.Release(time.Hour)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(r)
	runtime.KeepAlive(leases)
	runtime.KeepAlive(cls)
	runtime.KeepAlive(who)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// BenchmarkMemory1M reports the heap held per client ID at 1,000,000 IDs,
// live and kept, beyond the ID strings (which the adapter holds anyway; both
// registries keep the string they are given). Run with -benchtime 1x.
func BenchmarkMemory1M(b *testing.B) {
	for _, state := range []string{"kept", "live"} {
		for _, reg := range registries {
			b.Run(state+"/"+reg.name, func(b *testing.B) {
				var per float64
				for i := 0; i < b.N; i++ {
					per = heapBytesPerID(b, reg.make, 1_000_000, state == "live")
				}
				b.ReportMetric(per, "B/ID")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// TestMemoryPerID keeps the memory claims of the documentation true: at
// most 100 bytes per bound ID beyond the ID string, and 48 bytes more for
// the lease of a live connection.
func TestMemoryPerID(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 200,000 IDs")
	}
	mk := func() mqttsec.Registry { return clientid.NewRegistry() }
	kept := heapBytesPerID(t, mk, 200_000, false)
	live := heapBytesPerID(t, mk, 200_000, true)
	t.Logf("%.1f bytes per kept ID, %.1f per live one", kept, live)
	require.LessOrEqual(t, kept, 100.0)
	require.LessOrEqual(t, live-kept, 49.0)
}
