package redisstore

import "context"

// Refresh runs one refresh of r's leases now, for tests and benchmarks.
func (r *Registry) Refresh(ctx context.Context) { r.refresh(ctx) }

// SetRefreshBatch sets the number of leases refreshed per pipeline (1: a
// round trip per lease) and returns the previous value.
func SetRefreshBatch(n int) int {
	return int(refreshBatch.Swap(int64(n)))
}
