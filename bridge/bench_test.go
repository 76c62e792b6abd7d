package bridge_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttsec/mqttsec/bridge"
	"github.com/mqttsec/mqttsec/internal/testbroker"
)

// BenchmarkForwardQoS1 measures QoS 1 messages forwarded from an
// in-process local broker to an in-process remote broker over TLS, directly
// on loopback and through a relay that adds 5 ms each way (a WAN link), with
// one message in flight at a time (stop and wait, as a bridge that waits for
// each acknowledgement) and with the default window: ns/op is per message,
// from the local publish to the remote subscriber.
func BenchmarkForwardQoS1(b *testing.B) {
	for _, c := range []struct {
		link     string
		delay    time.Duration
		inflight int
	}{
		{"loopback", 0, 1}, {"loopback", 0, bridge.DefaultMaxInflight},
		{"5ms", 5 * time.Millisecond, 1}, {"5ms", 5 * time.Millisecond, bridge.DefaultMaxInflight},
	} {
		b.Run(fmt.Sprintf("link=%s/inflight=%d", c.link, c.inflight), func(b *testing.B) {
			inflight := c.inflight
			ca := devCA(b)
			local := testbroker.Start(b, guard(users), testbroker.Options{})
			remote := startTLSBroker(b, ca)
			px := startDelayProxy(b, remote.Addr, c.delay)
			cfg := baseConfig(b, px.addr(), ca, bridge.Mapping{Pattern: "bench/#", Direction: bridge.Out, QoS: 1})
			cfg.MaxInflight = inflight
			br, err := bridge.Start(context.Background(), cfg, localOf(local), bridge.WithEvents(&events{}))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = br.Close() })
			waitReady(b, br)
			rsub := dial(b, remote.Addr, "rsub", clientTLS(b, ca))
			rsub.Sub(b, "bench/#", 1)
			lpub := dial(b, local.Addr, "lpub", nil)
			ctx := context.Background()
			payload := make([]byte, 64)
			// At most 256 messages between the publisher and the remote
			// subscriber: mochi drops messages to a client beyond its
			// MaximumInflight (1024), and the subscriber's buffer holds 1024.
			window := make(chan struct{}, 256)
			b.ReportAllocs()
			b.ResetTimer()
			go func() {
				for i := range b.N {
					window <- struct{}{}
					_, _ = lpub.PublishWithOptions(ctx, &paho.Publish{Topic: "bench/" + strconv.Itoa(i%16), QoS: 1, Payload: payload},
						paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
				}
			}()
			for range b.N {
				<-rsub.Messages()
				<-window
			}
			b.StopTimer()
		})
	}
}
