package topic_test

import (
	"testing"

	"github.com/mqttsec/mqttsec/topic"
)

var sink bool

func BenchmarkMatch(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink = topic.Match("plant/+/line/+/sensor/#", "plant/7/line/3/sensor/temp/c")
	}
}

func BenchmarkCovers(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink = topic.Covers("plant/+/line/#", "plant/7/line/+/sensor/#")
	}
}

func BenchmarkValidateName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink = topic.ValidateName("plant/7/line/3/sensor/temp/c") == nil
	}
}

func BenchmarkValidateFilter(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink = topic.ValidateFilter("$share/g/plant/+/line/#") == nil
	}
}
