//go:build !race

package ratelimit

// testCost is the bcrypt cost of the end-to-end tests (see race_on_test.go).
const testCost = 10
