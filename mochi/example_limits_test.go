package mochi_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/mochi"
)

// The memory bounds of a guarded mochi broker: the Guard's quotas for
// retained messages and persistent sessions, the hook's Limits for what
// mochi holds per client, and the listener's pre-authentication and write
// bounds. Fields left zero keep their (bounded) defaults; NewHook lowers
// mochi's own capabilities to the limits.
func ExampleWithLimits() {
	g := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(context.Context, *mqttsec.Client, mqttsec.Credentials) (*mqttsec.Identity, error) {
			return nil, mqttsec.ErrBadCredentials // a real authenticator from the auth package
		}),
		Quotas: mqttsec.Quotas{RetainedPerSubject: 100, SessionsPerSubject: 4},
		Events: mqttsec.EventSinkFunc(func(mqttsec.Event) {}), // EventDropped reports slow consumers
	})
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = 256 << 10
	s := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: mochi.Logger(slog.New(slog.DiscardHandler))})
	_, err := mochi.NewHook(g, s, mochi.WithLimits(mochi.Limits{
		MaxBacklog: 4 << 20,  // a slow consumer is disconnected beyond 4 MiB
		Outbound:   64 << 20, // all clients together
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	tcp := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := s.AddListener(mochi.HardenWith(tcp, mochi.HardenConfig{ConnectTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(caps.MaximumInflight, caps.MaximumClientWritesPending, caps.TopicAliasMaximum)
	// Output: 1024 1024 10
}
