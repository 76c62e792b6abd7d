package mqttsec_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
)

func retained(topic string, n int) *mqttsec.Message {
	return &mqttsec.Message{Topic: topic, Payload: []byte(strings.Repeat("x", n)), QoS: 1, Retain: true}
}

// cost is what a retained message of n payload bytes on a two-level topic
// of three bytes ("r/0") counts.
func cost(n int) int64 {
	return int64(3+n) + mqttsec.RetainedOverhead + 2*mqttsec.LevelOverhead
}

// TestQuotaRetained: retained messages count against their publisher's
// quota until they are replaced, cleared or released; the quota is checked
// after authorization and denies with 0x97.
func TestQuotaRetained(t *testing.T) {
	ev := &events{}
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, Events: ev,
		Quotas: mqttsec.Quotas{RetainedPerSubject: 3, RetainedBytesPerSubject: 3*cost(10) + 50, Retained: 5, RetainedBytes: 100 * cost(10)}})
	alice, err := g.Connect(ctx, client("a", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	bob, err := g.Connect(ctx, client("b", "bob"), pw("pw"), nil)
	require.NoError(t, err)

	for i := range 3 {
		require.NoError(t, g.Publish(ctx, alice, retained(fmt.Sprintf("r/%d", i), 10)))
	}
	n, size := g.RetainedUsage(alice.Identity())
	require.Equal(t, 3, n)
	require.Equal(t, 3*cost(10), size)
	err = g.Publish(ctx, alice, retained("r/3", 10))
	require.ErrorIs(t, err, mqttsec.ErrQuotaExceeded)
	require.Equal(t, mqttsec.CodeQuotaExceeded, mqttsec.CodeOf(err).ForPuback())
	require.Contains(t, ev.kinds(), mqttsec.EventPublishDenied)
	require.NoError(t, g.Publish(ctx, alice, &mqttsec.Message{Topic: "r/3", Payload: []byte("x")}),
		"a message that is not retained does not count")

	// Replacing her own message takes no new slot; bytes are recounted.
	require.NoError(t, g.Publish(ctx, alice, retained("r/0", 60)))
	n, size = g.RetainedUsage(alice.Identity())
	require.Equal(t, 3, n)
	require.Equal(t, 2*cost(10)+cost(60), size)
	require.ErrorIs(t, g.Publish(ctx, alice, retained("r/1", 60)), mqttsec.ErrQuotaExceeded, "bytes per subject")

	// Bob replaces one of hers: it moves to his quota.
	require.NoError(t, g.Publish(ctx, bob, retained("r/1", 10)))
	n, _ = g.RetainedUsage(alice.Identity())
	require.Equal(t, 2, n)
	n, _ = g.RetainedUsage(bob.Identity())
	require.Equal(t, 1, n)
	n, size = g.RetainedUsage(nil)
	require.Equal(t, 3, n, "a replacement moves a message, it adds none")
	require.Equal(t, cost(10)+cost(60)+cost(10), size)

	// An empty payload clears, whoever sends it, and is always allowed.
	require.NoError(t, g.Publish(ctx, bob, &mqttsec.Message{Topic: "r/0", Retain: true}))
	n, _ = g.RetainedUsage(alice.Identity())
	require.Equal(t, 1, n)
	require.NoError(t, g.Publish(ctx, bob, &mqttsec.Message{Topic: "r/none", Retain: true}))

	// The broker dropped one (it expired): released.
	require.True(t, g.ReleaseRetained("r/2"))
	require.False(t, g.ReleaseRetained("r/2"), "absence is reported")
	n, size = g.RetainedUsage(alice.Identity())
	require.Zero(t, n)
	require.Zero(t, size)

	// Properties count, and so do topic levels.
	m := retained("p/q/r/s", 1)
	m.PropertyBytes = 10
	require.NoError(t, g.Publish(ctx, alice, m))
	_, size = g.RetainedUsage(alice.Identity())
	require.Equal(t, int64(7+1+10)+mqttsec.RetainedOverhead+4*mqttsec.LevelOverhead, size)
	require.NoError(t, g.Publish(ctx, alice, &mqttsec.Message{Topic: "p/q/r/s", Retain: true}))

	// The global count: bob holds 1; four more would be 5 (the cap), and
	// alice's next one is over it.
	for i := range 2 {
		require.NoError(t, g.Publish(ctx, bob, retained(fmt.Sprintf("b/%d", i), 1)))
	}
	for i := range 2 {
		require.NoError(t, g.Publish(ctx, alice, retained(fmt.Sprintf("a/%d", i), 1)))
	}
	err = g.Publish(ctx, alice, retained("a/2", 1))
	require.ErrorIs(t, err, mqttsec.ErrQuotaExceeded)
	require.Contains(t, err.Error(), "in all")
	n, _ = g.RetainedUsage(nil)
	require.Equal(t, 5, n)

	// A denied publish is not counted.
	before, _ := g.RetainedUsage(nil)
	require.ErrorIs(t, g.Publish(ctx, alice, retained("bad/#", 1)), mqttsec.ErrTopicNameInvalid)
	after, _ := g.RetainedUsage(nil)
	require.Equal(t, before, after)
}

// TestQuotaRetainedWill: a retained will counts when it is sent, and is
// refused (neither published nor retained) beyond the quota.
func TestQuotaRetainedWill(t *testing.T) {
	ev := &events{}
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, Events: ev,
		Quotas: mqttsec.Quotas{RetainedPerSubject: 1}})
	will := retained("w/alice", 4)
	s, err := g.Connect(ctx, client("a", "alice"), pw("pw"), will)
	require.NoError(t, err)
	n, _ := g.RetainedUsage(s.Identity())
	require.Zero(t, n, "a will is counted when it is sent, not at CONNECT")
	require.NoError(t, g.Publish(ctx, s, retained("w/other", 1)))
	err = g.Will(ctx, s, will)
	require.ErrorIs(t, err, mqttsec.ErrQuotaExceeded)
	require.Contains(t, ev.kinds(), mqttsec.EventWillDenied)
	require.NoError(t, g.Publish(ctx, s, &mqttsec.Message{Topic: "w/other", Retain: true}))
	require.NoError(t, g.Will(ctx, s, will))
	n, _ = g.RetainedUsage(s.Identity())
	require.Equal(t, 1, n)
}

func persistent(id, user string) mqttsec.Client {
	c := client(id, user)
	c.SessionExpiry = time.Hour
	return c
}

// TestQuotaSessions: persistent sessions are bounded per subject and in
// all; a reconnection to a session the subject holds takes no new slot,
// and a slot is free again when its session ends.
func TestQuotaSessions(t *testing.T) {
	ev := &events{}
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, Events: ev,
		Quotas: mqttsec.Quotas{SessionsPerSubject: 2, Sessions: 3}})
	a1, err := g.Connect(ctx, persistent("a1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	a2, err := g.Connect(ctx, persistent("a2", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	_, err = g.Connect(ctx, persistent("a3", "alice"), pw("pw"), nil)
	require.ErrorIs(t, err, mqttsec.ErrQuotaExceeded)
	require.Equal(t, mqttsec.CodeQuotaExceeded, mqttsec.CodeOf(err).ForConnack())
	require.Equal(t, mqttsec.V3ServerUnavailable, mqttsec.CodeOf(err).V3Connack())
	require.Contains(t, ev.kinds(), mqttsec.EventConnectDenied)
	require.Equal(t, 2, g.SessionUsage(a1.Identity()))

	// Sessions that end with their connection do not count.
	c, err := g.Connect(ctx, client("a4", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	g.Disconnect(c, 0)

	// a1's connection ends and its session is kept: still counted; its
	// owner may come back to it (a takeover of the ID, too).
	g.Disconnect(a1, time.Hour)
	r1, err := g.Connect(ctx, persistent("a1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	require.True(t, r1.Resume())
	g.Disconnect(a1, 0) // the adapter ends the kept session it resumed
	t2, err := g.Connect(ctx, persistent("a2", "alice"), pw("pw"), nil)
	require.NoError(t, err, "a takeover of her own live session")
	g.Disconnect(a2, 0)
	require.Equal(t, 2, g.SessionUsage(a1.Identity()))

	// The global bound: bob takes the third slot, and no more.
	b1, err := g.Connect(ctx, persistent("b1", "bob"), pw("pw"), nil)
	require.NoError(t, err)
	_, err = g.Connect(ctx, persistent("b2", "bob"), pw("pw"), nil)
	require.ErrorIs(t, err, mqttsec.ErrQuotaExceeded)
	require.Contains(t, err.Error(), "in all")
	require.Equal(t, 3, g.SessionUsage(nil))

	// Ending sessions frees their slots.
	g.Disconnect(r1, 0)
	g.Disconnect(b1, 0)
	require.Equal(t, 1, g.SessionUsage(nil))
	_, err = g.Connect(ctx, persistent("b2", "bob"), pw("pw"), nil)
	require.NoError(t, err)
	g.Disconnect(t2, 0)
	require.Equal(t, 1, g.SessionUsage(nil))
	require.Zero(t, g.SessionUsage(a1.Identity()))
}

// TestQuotaSessionsClaimRefused: a CONNECT the registry refuses gives its
// slot back (it would otherwise leak one per refused attempt).
func TestQuotaSessionsClaimRefused(t *testing.T) {
	refuse := true
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, Events: &events{},
		Quotas: mqttsec.Quotas{SessionsPerSubject: 1},
		Registry: mqttsec.RegistryFunc(func(context.Context, *mqttsec.Client) (mqttsec.Lease, error) {
			if refuse {
				return mqttsec.Lease{}, mqttsec.ErrServerUnavailable
			}
			return mqttsec.Lease{}, nil
		})})
	for range 3 {
		_, err := g.Connect(ctx, persistent("a1", "alice"), pw("pw"), nil)
		require.ErrorIs(t, err, mqttsec.ErrServerUnavailable)
	}
	require.Zero(t, g.SessionUsage(nil))
	refuse = false
	_, err := g.Connect(ctx, persistent("a1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
}

// TestQuotaKeptSessionExpires: a kept session ending by itself (the Guard's
// keep timer) frees its slot.
func TestQuotaKeptSessionExpires(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, Events: &events{},
		Quotas: mqttsec.Quotas{SessionsPerSubject: 1}})
	s, err := g.Connect(ctx, persistent("a1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	g.Disconnect(s, time.Millisecond) // kept for 1 ms plus the Guard's grace
	_, err = g.Connect(ctx, persistent("a2", "alice"), pw("pw"), nil)
	require.ErrorIs(t, err, mqttsec.ErrQuotaExceeded)
	require.Eventually(t, func() bool { return g.SessionUsage(nil) == 0 }, 10*time.Second, 10*time.Millisecond)
	_, err = g.Connect(ctx, persistent("a2", "alice"), pw("pw"), nil)
	require.NoError(t, err)
}

func TestQuotasUnlimited(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, Events: &events{},
		Quotas: mqttsec.Quotas{RetainedPerSubject: -1, RetainedBytesPerSubject: -1, Retained: -1, RetainedBytes: -1,
			SessionsPerSubject: -1, Sessions: -1}})
	s, err := g.Connect(ctx, client("a", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	for i := range mqttsec.DefaultRetainedPerSubject + 1 {
		require.NoError(t, g.Publish(ctx, s, retained(fmt.Sprintf("r/%d", i), 1)))
	}
	for i := range mqttsec.DefaultSessionsPerSubject + 1 {
		_, err := g.Connect(ctx, persistent(fmt.Sprintf("p%d", i), "alice"), pw("pw"), nil)
		require.NoError(t, err)
	}
}

func TestEventDroppedString(t *testing.T) {
	require.Equal(t, "dropped", mqttsec.EventDropped.String())
}

// BenchmarkGuardPublishRetained is Guard.Publish of a retained message
// replacing the publisher's own (the quota's ledger is updated in place).
func BenchmarkGuardPublishRetained(b *testing.B) {
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, Events: &events{}})
	s, err := g.Connect(ctx, client("a", "alice"), pw("pw"), nil)
	require.NoError(b, err)
	m := retained("u/alice/status", 64)
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Publish(ctx, s, m); err != nil {
			b.Fatal(err)
		}
	}
}

// A retained message beyond the publisher's quota is denied with 0x97,
// which a PUBACK carries.
func ExampleQuotas() {
	g := mqttsec.New(mqttsec.Config{
		Authenticator: users,
		Authorizer:    own,
		Quotas:        mqttsec.Quotas{RetainedPerSubject: 1},
		Events:        mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
	s, err := g.Connect(context.Background(), mqttsec.Client{ID: "a1", Username: "alice", Protocol: 5},
		mqttsec.Credentials{Password: []byte("pw")}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, topic := range []string{"u/alice/status", "u/alice/config"} {
		err := g.Publish(context.Background(), s, &mqttsec.Message{Topic: topic, Payload: []byte("x"), QoS: 1, Retain: true})
		fmt.Println(topic, mqttsec.CodeOf(err).ForPuback())
	}
	// Output:
	// u/alice/status 0x00 success
	// u/alice/config 0x97 quota exceeded
}
