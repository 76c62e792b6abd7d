// Package severity is the ranking of findings shared by the scan and lint
// packages, which re-export it (scan.Severity and lint.Severity are this
// type), so that a report of either reads and compares the same way. It is
// not API.
package severity

import (
	"fmt"
	"strconv"
)

// Severity ranks a finding. The zero value is [Info].
type Severity uint8

// The severities, lowest first.
const (
	// Info is a fact worth knowing that is not a weakness by itself.
	Info Severity = iota
	// Low is a weakness that needs other conditions to be exploited.
	Low
	// Medium is a weakness that exposes data or availability in some
	// deployments.
	Medium
	// High is a weakness that lets an outsider read, write or disrupt.
	High
)

var names = [...]string{"info", "low", "medium", "high"}

// String returns "info", "low", "medium" or "high".
func (s Severity) String() string {
	if int(s) < len(names) {
		return names[s]
	}
	return "severity(" + strconv.Itoa(int(s)) + ")"
}

// Parse parses a severity name as [Severity.String] writes it.
func Parse(name string) (Severity, error) {
	for i, n := range names {
		if n == name {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q (want info, low, medium or high)", name)
}

// MarshalText implements [encoding.TextMarshaler].
func (s Severity) MarshalText() ([]byte, error) {
	if int(s) >= len(names) {
		return nil, fmt.Errorf("invalid severity %d", s)
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler].
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
