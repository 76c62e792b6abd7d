package bridge

import (
	"fmt"
	"testing"
)

// BenchmarkRoute measures the per-message routing decision of a bridge with
// ten mappings, the matching one last: the allocation-free match (which
// mapping, or none) and the remap, which allocates the destination topic.
func BenchmarkRoute(b *testing.B) {
	var ms []Mapping
	for i := range 9 {
		ms = append(ms, Mapping{Pattern: fmt.Sprintf("area%d/+/temp", i), Direction: Out, QoS: 1, RemotePrefix: "site1/"})
	}
	ms = append(ms, Mapping{Pattern: "sensors/#", Direction: Out, QoS: 1, LocalPrefix: "plant/", RemotePrefix: "site1/"})
	rs := routes(ms, true)
	const name = "plant/sensors/line4/temp"
	b.Run("match", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := matchRoute(rs, name); !ok {
				b.Fatal("no match")
			}
		}
	})
	b.Run("remap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if dst, _, _ := remap(rs, name); dst != "site1/sensors/line4/temp" {
				b.Fatal("bad remap", dst)
			}
		}
	})
}
