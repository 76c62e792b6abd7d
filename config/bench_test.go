package config

import (
	"fmt"
	"testing"

	"github.com/mqttsec/mqttsec"
)

// BenchmarkMetricsEvent measures counting one security event (a delivery
// denial, the most frequent kind) against its peer, the CounterVec lookup
// by label values that a plain Prometheus sink does per event.
func BenchmarkMetricsEvent(b *testing.B) {
	e := mqttsec.Event{Kind: mqttsec.EventReceiveDenied, Code: mqttsec.CodeNotAuthorized}
	b.Run("cached", func(b *testing.B) {
		m := newMetrics()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.Event(e)
			}
		})
	})
	b.Run("WithLabelValues", func(b *testing.B) {
		m := newMetrics()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.events.WithLabelValues(e.Kind.String(), fmt.Sprintf("0x%02X", byte(e.Code))).Inc()
			}
		})
	})
}
