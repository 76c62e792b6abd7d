package integrity

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWindowMemory measures the replay state per sender: it must stay
// under the bound the package documentation states (200 bytes plus the key
// ID, with 16-byte key IDs here), and the number of senders never exceeds
// MaxSenders whatever number of keys sign.
func TestWindowMemory(t *testing.T) {
	const n = 20_000
	kids := make([][]byte, 2*n)
	for i := range kids {
		kids[i] = fmt.Appendf(nil, "device-%09d", i) // 16 bytes
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w := newWindow(n)
	for i := range n {
		require.NoError(t, w.commit(kids[i], 1, 1, int64(i+1)))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("replay state: %.0f bytes per sender (16-byte key IDs, %d senders)", per, n)
	require.Less(t, per, 216.0)
	// Twice as many keys sign: the window stays at n senders.
	for i := n; i < 2*n; i++ {
		require.NoError(t, w.commit(kids[i], 1, 1, int64(i+1)))
	}
	require.Equal(t, n, w.len())
	runtime.KeepAlive(w)
}

// TestWindowShift checks the bitmap against a model (a set of seen
// numbers) over a walk of accepted and refused numbers.
func TestWindowShift(t *testing.T) {
	w := newWindow(1)
	seen := map[uint64]bool{}
	top := uint64(0)
	kid := []byte("k")
	for i, seq := range []uint64{10, 3, 64, 65, 1, 200, 72, 73, 199, 150, 329, 202, 201, 330, 330, 600, 473, 472, 599} {
		err := w.commit(kid, 1, seq, int64(i+1))
		want := !seen[seq] && (top == 0 || seq > top || top-seq < WindowSize)
		if want {
			require.NoError(t, err, "seq %d (top %d)", seq, top)
			seen[seq] = true
			top = max(top, seq)
		} else {
			require.ErrorIs(t, err, ErrReplay, "seq %d (top %d)", seq, top)
		}
	}
}
