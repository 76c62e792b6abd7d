package minibroker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/minibroker"
)

// waitEnded waits until the Guard has seen n disconnects of clientID.
func (f *fixture) waitEnded(t *testing.T, clientID string, n int) {
	t.Helper()
	eventually(t, func() bool { return f.events.count(mqttsec.EventDisconnected, clientID) >= n },
		fmt.Sprintf("%q did not disconnect %d times", clientID, n))
}

func TestKeptSessionOwnedByIdentityV5(t *testing.T) {
	f := start(t, minibroker.Options{})
	alice := v5opts{id: "dev-1", user: "alice", expiry: 300}
	c := mustDial5(t, f.addr, alice)
	require.Equal(t, byte(1), c.sub(t, "q/#", 1))
	c.leave(t)
	f.waitEnded(t, "dev-1", 1)

	pub := mustDial5(t, f.addr, v5opts{id: "pub", user: "carol"})
	for i := range 3 {
		require.Zero(t, pub.pub(t, fmt.Sprintf("q/%d", i), "m", 1, false))
	}

	// bob may neither resume nor discard alice's kept session.
	bob := v5opts{id: "dev-1", user: "bob", expiry: 300}
	require.Equal(t, byte(0x85), refused5(t, f.addr, bob))
	bob.resume = true
	require.Equal(t, byte(0x85), refused5(t, f.addr, bob))
	code, _, _ := dial3(t, f.addr, v3opts{id: "dev-1", user: "bob", pass: "pw"})
	require.Equal(t, mqttsec.V3IdentifierRejected, code)

	alice.resume = true
	c, ca, err := dial5(t, f.addr, alice)
	require.NoError(t, err)
	require.True(t, ca.SessionPresent)
	for i := range 3 {
		c.expect(t, fmt.Sprintf("q/%d", i))
	}
	c.none(t)
}

func TestKeptSessionOwnedByIdentityV3(t *testing.T) {
	f := start(t, minibroker.Options{})
	c := mustDial3(t, f.addr, v3opts{id: "dev-3", user: "alice", persistent: true})
	require.Equal(t, byte(1), c.subscribe(t, "q/#", 1))
	c.disconnect()
	f.waitEnded(t, "dev-3", 1)

	pub := mustDial3(t, f.addr, v3opts{id: "pub", user: "carol"})
	pub.publish(t, "q/1", "one", 1, false)
	pub.publish(t, "q/2", "two", 2, false) // delivered at the granted QoS 1

	code, _, _ := dial3(t, f.addr, v3opts{id: "dev-3", user: "bob", pass: "pw", persistent: true})
	require.Equal(t, mqttsec.V3IdentifierRejected, code)
	code, _, _ = dial3(t, f.addr, v3opts{id: "dev-3", user: "bob", pass: "pw"})
	require.Equal(t, mqttsec.V3IdentifierRejected, code, "a clean session of another identity must not discard it")

	code, present, c := dial3(t, f.addr, v3opts{id: "dev-3", user: "alice", pass: "pw", persistent: true})
	require.Zero(t, code)
	require.True(t, present)
	require.Equal(t, "one", c.expect(t, "q/1"))
	require.Equal(t, "two", c.expect(t, "q/2"))
	c.none(t)
}

func TestPublishDeniedCodesV5(t *testing.T) {
	f := start(t, minibroker.Options{})
	sub := mustDial5(t, f.addr, v5opts{id: "sub", user: "carol"})
	require.Equal(t, byte(0), sub.sub(t, "#", 0))
	for _, tc := range []struct {
		code       byte
		puback     byte // the PUBACK/PUBREC code, or
		disconnect byte // the DISCONNECT code
	}{
		{code: 0x87, puback: 0x87},
		{code: 0x90, puback: 0x90},
		{code: 0x97, puback: 0x97},
		{code: 0x96, puback: 0x97}, // a rate is a quota in a PUBACK
		{code: 0x80, puback: 0x80},
		{code: 0x86, puback: 0x80},
		{code: 0x89, puback: 0x80},
		{code: 0x8F, puback: 0x80},
		{code: 0x95, disconnect: 0x95},
		{code: 0xA0, disconnect: 0xA0},
		{code: 0x8A, disconnect: 0x98}, // banned: administrative action
		{code: 0x98, disconnect: 0x98},
	} {
		for _, qos := range []byte{0, 1, 2} {
			t.Run(fmt.Sprintf("%#x/qos%d", tc.code, qos), func(t *testing.T) {
				c := mustDial5(t, f.addr, v5opts{id: "pub", user: "carol"})
				name := fmt.Sprintf("code/%02x/x", tc.code)
				if tc.disconnect != 0 {
					_, _ = c.tryPub(name, "no", qos, true)
					require.Equal(t, tc.disconnect, c.serverDisconnect(t))
					return
				}
				require.Equal(t, map[bool]byte{true: 0, false: tc.puback}[qos == 0], c.pub(t, name, "no", qos, true))
				c.leave(t)
			})
		}
	}
	sub.none(t)
	// Nothing was retained either.
	late := mustDial5(t, f.addr, v5opts{id: "late", user: "carol"})
	require.Equal(t, byte(0), late.sub(t, "#", 0))
	late.none(t)
}

func TestSubscribeDeniedCodes(t *testing.T) {
	f := start(t, minibroker.Options{})
	c := mustDial5(t, f.addr, v5opts{id: "s5", user: "carol"})
	v3c := mustDial3(t, f.addr, v3opts{id: "s3", user: "carol"})
	for _, tc := range []struct{ code, suback byte }{
		{0x87, 0x87}, {0x8F, 0x8F}, {0x97, 0x97}, {0xA2, 0xA2}, {0x9E, 0x9E},
		{0x96, 0x97}, {0x86, 0x80}, {0x8A, 0x80}, {0x90, 0x80}, {0xA0, 0x80}, {0x95, 0x80},
	} {
		filter := fmt.Sprintf("code/%02x/#", tc.code)
		require.Equal(t, tc.suback, c.sub(t, filter, 1), "v5 %s", filter)
		require.Equal(t, byte(0x80), v3c.subscribe(t, filter, 1), "v3 %s", filter)
	}
	require.Equal(t, byte(0x8F), c.sub(t, "a/#/b", 1), "an invalid filter")
	require.Equal(t, byte(0x80), v3c.subscribe(t, "a/#/b", 1))
	require.Equal(t, byte(1), c.sub(t, "ok/#", 2), "QoS 2 is granted as 1")
	require.Equal(t, byte(1), v3c.subscribe(t, "ok/#", 2))
	require.Equal(t, byte(0), c.sub(t, "ok0/#", 0))
}

func TestPublishDeniedV3(t *testing.T) {
	f := start(t, minibroker.Options{})
	watcher := mustDial5(t, f.addr, v5opts{id: "watch", user: "carol"})
	require.Equal(t, byte(1), watcher.sub(t, "#", 1))
	c := mustDial3(t, f.addr, v3opts{id: "p3", user: "carol"})
	// A 3.1.1 ack cannot carry a reason: the denied message is
	// acknowledged and dropped, at every QoS.
	for qos := range byte(3) {
		c.publish(t, "secret/x", "no", qos, true)
		c.publish(t, "code/97/x", "no", qos, true)
	}
	c.publish(t, "ok/x", "yes", 1, false)
	watcher.expect(t, "ok/x")
	watcher.none(t)
	// A code that calls for a disconnect closes the connection.
	c.publish(t, "code/95/x", "no", 0, false)
	c.closed(t)
}

func TestQoS2Inbound(t *testing.T) {
	f := start(t, minibroker.Options{})
	sub := mustDial5(t, f.addr, v5opts{id: "sub", user: "carol"})
	require.Equal(t, byte(1), sub.sub(t, "two/#", 2))
	pub := mustDial5(t, f.addr, v5opts{id: "pub", user: "carol"})
	require.Zero(t, pub.pub(t, "two/a", "x", 2, false))
	m := sub.expect(t, "two/a")
	require.Equal(t, byte(1), m.QoS)
	require.Equal(t, byte(0x87), pub.pub(t, "secret/a", "x", 2, false))
	sub.none(t)
}

func TestTakeover(t *testing.T) {
	f := start(t, minibroker.Options{})
	old := mustDial5(t, f.addr, v5opts{id: "dev", user: "alice", expiry: 60})
	require.Equal(t, byte(1), old.sub(t, "t/#", 1))
	require.Equal(t, byte(0x85), refused5(t, f.addr, v5opts{id: "dev", user: "bob"}))
	select {
	case <-old.closed:
		t.Fatal("a refused takeover closed the owner's connection")
	default:
	}
	// The same identity takes over and resumes the session.
	c, ca, err := dial5(t, f.addr, v5opts{id: "dev", user: "alice", expiry: 60, resume: true})
	require.NoError(t, err)
	require.True(t, ca.SessionPresent)
	require.Equal(t, byte(0x8E), old.serverDisconnect(t))
	pub := mustDial5(t, f.addr, v5opts{id: "pub", user: "carol"})
	require.Zero(t, pub.pub(t, "t/1", "x", 1, false))
	c.expect(t, "t/1")
}

func TestWill(t *testing.T) {
	f := start(t, minibroker.Options{})
	sub := mustDial5(t, f.addr, v5opts{id: "sub", user: "carol"})
	require.Equal(t, byte(1), sub.sub(t, "will/#", 1))

	// A will on a topic denied at CONNECT refuses the CONNECT.
	require.Equal(t, byte(0x87), refused5(t, f.addr, v5opts{id: "w0", user: "alice",
		will: &paho.WillMessage{Topic: "secret/w", Payload: []byte("x")}}))

	// An allowed will is sent when the connection drops, not after a
	// normal DISCONNECT.
	w := mustDial5(t, f.addr, v5opts{id: "w1", user: "alice", will: &paho.WillMessage{Topic: "will/1", Payload: []byte("bye"), QoS: 1}})
	w.drop()
	require.Equal(t, "bye", string(sub.expect(t, "will/1").Payload))
	w = mustDial5(t, f.addr, v5opts{id: "w2", user: "alice", will: &paho.WillMessage{Topic: "will/2", Payload: []byte("bye")}})
	w.leave(t)
	f.waitEnded(t, "w2", 1)
	sub.none(t)

	// A will the policy denies by the time it is due is neither published
	// nor retained.
	w = mustDial5(t, f.addr, v5opts{id: "w3", user: "alice", will: &paho.WillMessage{Topic: "will/3", Payload: []byte("bye"), Retain: true}})
	f.policy.denyAccess(mqttsec.Publish, "will/3")
	w.drop()
	eventually(t, func() bool { return f.events.count(mqttsec.EventWillDenied, "w3") == 1 }, "no will_denied event")
	sub.none(t)
	late := mustDial5(t, f.addr, v5opts{id: "late", user: "carol"})
	require.Equal(t, byte(0), late.sub(t, "will/#", 0))
	late.none(t)

	// v3 too.
	v3w := mustDial3(t, f.addr, v3opts{id: "w4", user: "alice", will: &mqttsec.Message{Topic: "will/4", Payload: []byte("v3")}})
	_ = v3w.c.Close()
	require.Equal(t, "v3", string(sub.expect(t, "will/4").Payload))
	v3w = mustDial3(t, f.addr, v3opts{id: "w5", user: "alice", will: &mqttsec.Message{Topic: "will/5", Payload: []byte("v3")}})
	f.policy.denyAccess(mqttsec.Publish, "will/5")
	_ = v3w.c.Close()
	eventually(t, func() bool { return f.events.count(mqttsec.EventWillDenied, "w5") == 1 }, "no will_denied event")
	sub.none(t)
}

func TestDelayedWill(t *testing.T) {
	f := start(t, minibroker.Options{})
	sub := mustDial5(t, f.addr, v5opts{id: "sub", user: "carol"})
	require.Equal(t, byte(1), sub.sub(t, "will/#", 1))

	// Sent after the delay.
	w := mustDial5(t, f.addr, v5opts{id: "d1", user: "alice", expiry: 60, willDelay: 1,
		will: &paho.WillMessage{Topic: "will/d1", Payload: []byte("late")}})
	w.drop()
	dropped := time.Now()
	sub.expect(t, "will/d1")
	require.GreaterOrEqual(t, time.Since(dropped), 900*time.Millisecond, "sent before its delay")

	// Cancelled when the owner reconnects within the delay.
	w = mustDial5(t, f.addr, v5opts{id: "d2", user: "alice", expiry: 60, willDelay: 1,
		will: &paho.WillMessage{Topic: "will/d2", Payload: []byte("late")}})
	w.drop()
	f.waitEnded(t, "d2", 1)
	_ = mustDial5(t, f.addr, v5opts{id: "d2", user: "alice", expiry: 60, resume: true})
	time.Sleep(1200 * time.Millisecond) // past the delay: nothing may arrive
	sub.none(t)

	// Denied when the delay ends: a right withdrawn while it waited.
	w = mustDial5(t, f.addr, v5opts{id: "d3", user: "alice", expiry: 60, willDelay: 1,
		will: &paho.WillMessage{Topic: "will/d3", Payload: []byte("late"), Retain: true}})
	w.drop()
	f.waitEnded(t, "d3", 1)
	f.policy.denyAccess(mqttsec.Publish, "will/d3")
	eventually(t, func() bool { return f.events.count(mqttsec.EventWillDenied, "d3") == 1 }, "no will_denied event")
	sub.none(t)

	// A will delay longer than the session expiry: sent when the session ends.
	w = mustDial5(t, f.addr, v5opts{id: "d4", user: "alice", expiry: 1, willDelay: 30,
		will: &paho.WillMessage{Topic: "will/d4", Payload: []byte("end")}})
	w.drop()
	sub.expect(t, "will/d4")
}

func TestKick(t *testing.T) {
	f := start(t, minibroker.Options{})
	pub := mustDial5(t, f.addr, v5opts{id: "pub", user: "carol"})

	// A live session: DISCONNECT 0x98, and its state is not kept.
	c := mustDial5(t, f.addr, v5opts{id: "k1", user: "alice", expiry: 300})
	require.Equal(t, byte(1), c.sub(t, "k/#", 1))
	require.Equal(t, 1, f.g.Kick(mqttsec.MatchClientID("k1"), mqttsec.CodeAdministrativeAction))
	require.Equal(t, byte(0x98), c.serverDisconnect(t))
	f.waitEnded(t, "k1", 1)
	require.Zero(t, pub.pub(t, "k/1", "x", 1, false))
	c, ca, err := dial5(t, f.addr, v5opts{id: "k1", user: "alice", expiry: 300, resume: true})
	require.NoError(t, err)
	require.False(t, ca.SessionPresent, "the kicked session was kept")
	c.none(t)

	// A kept session: discarded with its subscriptions, queue and will.
	require.Equal(t, byte(1), c.sub(t, "k/#", 1))
	c.leave(t)
	c = mustDial5(t, f.addr, v5opts{id: "k1", user: "alice", expiry: 300, resume: true, willDelay: 30,
		will: &paho.WillMessage{Topic: "k/will", Payload: []byte("x")}})
	c.drop()
	f.waitEnded(t, "k1", 3)
	require.Zero(t, pub.pub(t, "k/2", "queued", 1, false))
	require.Equal(t, 1, f.g.Kick(mqttsec.MatchSubject("alice"), mqttsec.CodeAdministrativeAction))
	eventually(t, func() bool { return f.b.Stats().Sessions == 1 }, "the kept session was not discarded")
	watcher := mustDial5(t, f.addr, v5opts{id: "watch", user: "carol"})
	require.Equal(t, byte(1), watcher.sub(t, "k/#", 1))
	c, ca, err = dial5(t, f.addr, v5opts{id: "k1", user: "alice", expiry: 300, resume: true})
	require.NoError(t, err)
	require.False(t, ca.SessionPresent)
	c.none(t)
	watcher.none(t) // the delayed will was discarded too

	// A v3 client's socket is closed.
	v := mustDial3(t, f.addr, v3opts{id: "k3", user: "alice"})
	require.Equal(t, 1, f.g.Kick(mqttsec.MatchClientID("k3"), mqttsec.CodeAdministrativeAction))
	v.closed(t)
}

func TestRevalidate(t *testing.T) {
	f := start(t, minibroker.Options{})
	c := mustDial5(t, f.addr, v5opts{id: "r1", user: "alice"})
	kept := mustDial5(t, f.addr, v5opts{id: "r2", user: "alice", expiry: 300})
	require.Equal(t, byte(1), kept.sub(t, "r/#", 1))
	kept.leave(t)
	f.waitEnded(t, "r2", 1)
	v := mustDial3(t, f.addr, v3opts{id: "r3", user: "alice"})
	other := mustDial5(t, f.addr, v5opts{id: "r4", user: "bob"})

	require.Zero(t, f.g.Revalidate(context.Background()))
	f.users.remove("alice")
	require.Equal(t, 3, f.g.Revalidate(context.Background()))
	require.Equal(t, byte(0x87), c.serverDisconnect(t))
	v.closed(t)
	eventually(t, func() bool { return f.b.Stats().Sessions == 1 }, "alice's kept session was not discarded")
	select {
	case <-other.closed:
		t.Fatal("bob was disconnected")
	default:
	}
	require.Equal(t, byte(0x86), refused5(t, f.addr, v5opts{id: "r1", user: "alice"}))
}

func TestExpiredCredentials(t *testing.T) {
	f := start(t, minibroker.Options{})
	c := mustDial5(t, f.addr, v5opts{id: "e1", user: "short-lived"})
	require.Equal(t, byte(0xA0), c.serverDisconnect(t))
}

func TestDeliveryAfterPolicyChange(t *testing.T) {
	f := start(t, minibroker.Options{})
	pub := mustDial5(t, f.addr, v5opts{id: "pub", user: "carol"})
	require.Zero(t, pub.pub(t, "news/retained", "r", 1, true))
	live := mustDial5(t, f.addr, v5opts{id: "live", user: "alice"})
	require.Equal(t, byte(1), live.sub(t, "news/#", 1))
	live.expect(t, "news/retained")
	v := mustDial3(t, f.addr, v3opts{id: "v3", user: "alice"})
	require.Equal(t, byte(1), v.subscribe(t, "news/#", 1))
	require.Equal(t, "r", v.expect(t, "news/retained"))
	off := mustDial5(t, f.addr, v5opts{id: "off", user: "alice", expiry: 300})
	require.Equal(t, byte(1), off.sub(t, "news/#", 1))
	off.expect(t, "news/retained")
	off.leave(t)
	f.waitEnded(t, "off", 1)
	require.Zero(t, pub.pub(t, "news/queued", "q", 1, false)) // queued for "off" while allowed
	live.expect(t, "news/queued")
	require.Equal(t, "q", v.expect(t, "news/queued"))

	f.policy.denyAccess(mqttsec.Receive, "news/")
	require.Zero(t, pub.pub(t, "news/live", "x", 1, false))
	live.none(t)
	v.none(t)
	// Retained messages are denied on a new subscription, and messages
	// queued before the change are denied when the session resumes.
	late := mustDial5(t, f.addr, v5opts{id: "late", user: "alice"})
	require.Equal(t, byte(1), late.sub(t, "news/#", 1))
	late.none(t)
	off, ca, err := dial5(t, f.addr, v5opts{id: "off", user: "alice", expiry: 300, resume: true})
	require.NoError(t, err)
	require.True(t, ca.SessionPresent)
	off.none(t)
	require.Positive(t, f.events.count(mqttsec.EventReceiveDenied, "off"))
}

func TestSharedSubscription(t *testing.T) {
	f := start(t, minibroker.Options{})
	a := mustDial5(t, f.addr, v5opts{id: "a", user: "carol"})
	b := mustDial5(t, f.addr, v5opts{id: "b", user: "carol"})
	require.Equal(t, byte(1), a.sub(t, "$share/g/jobs/#", 1))
	require.Equal(t, byte(1), b.sub(t, "$share/g/jobs/#", 1))
	// The Guard authorizes the filter inside the share.
	require.Equal(t, byte(0x87), a.sub(t, "$share/g/secret/#", 1))
	// "$SHARE/" is not the shared-subscription prefix: it is a literal
	// filter, and matches only topics starting with "$SHARE/".
	require.Equal(t, byte(1), a.sub(t, "$SHARE/g/secret/#", 1))
	pub := mustDial5(t, f.addr, v5opts{id: "pub", user: "carol"})
	for i := range 4 {
		require.Zero(t, pub.pub(t, fmt.Sprintf("jobs/%d", i), "j", 1, false))
	}
	require.Zero(t, pub.pub(t, "g/secret/x", "s", 1, false))
	n := 0
	for _, c := range []*v5{a, b} {
	drain:
		for {
			select {
			case m := <-c.msgs:
				require.Regexp(t, `^jobs/\d$`, m.Topic)
				n++
			case <-time.After(quiet):
				break drain
			}
		}
	}
	require.Equal(t, 4, n, "each message goes to one member of the group")
}

func TestRetainedAndUnsubscribe(t *testing.T) {
	f := start(t, minibroker.Options{})
	pub := mustDial5(t, f.addr, v5opts{id: "pub", user: "carol"})
	require.Zero(t, pub.pub(t, "r/a", "1", 1, true))
	require.Zero(t, pub.pub(t, "r/b", "2", 0, true))
	require.Zero(t, pub.pub(t, "r/b", "", 1, true)) // clears it
	c := mustDial5(t, f.addr, v5opts{id: "c", user: "carol"})
	require.Equal(t, byte(1), c.sub(t, "r/#", 1))
	m := c.expect(t, "r/a")
	require.True(t, m.Retain)
	c.none(t)
	require.Zero(t, pub.pub(t, "r/a", "3", 1, true))
	m = c.expect(t, "r/a")
	require.False(t, m.Retain, "retain is cleared on an established subscription")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ua, err := c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"r/#", "none/#"}})
	require.NoError(t, err)
	require.Equal(t, []byte{0x00, 0x11}, ua.Reasons)
	require.Zero(t, pub.pub(t, "r/a", "4", 1, false))
	c.none(t)
}

func TestQueueBound(t *testing.T) {
	f := start(t, minibroker.Options{MaxQueue: 3})
	c := mustDial5(t, f.addr, v5opts{id: "slow", user: "alice", expiry: 300})
	require.Equal(t, byte(1), c.sub(t, "b/#", 1))
	c.leave(t)
	f.waitEnded(t, "slow", 1)
	pub := mustDial5(t, f.addr, v5opts{id: "pub", user: "carol"})
	for i := range 5 {
		require.Zero(t, pub.pub(t, fmt.Sprintf("b/%d", i), "x", 1, false))
	}
	require.Equal(t, int64(2), f.b.Stats().Dropped)
	c = mustDial5(t, f.addr, v5opts{id: "slow", user: "alice", expiry: 300, resume: true})
	for i := range 3 {
		c.expect(t, fmt.Sprintf("b/%d", i))
	}
	c.none(t)
}
