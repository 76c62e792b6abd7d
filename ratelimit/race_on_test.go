//go:build race

package ratelimit

// testCost is the bcrypt cost of the end-to-end tests: under the race
// detector a bcrypt-10 verification takes about 0.7 s instead of 70 ms, so
// the tests use cost 7, which keeps the time per verification near the
// uninstrumented cost 10.
const testCost = 7
