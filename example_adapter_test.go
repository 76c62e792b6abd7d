package mqttsec_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mqttsec/mqttsec"
)

// adapter is the smallest broker adapter: one method per hook point a
// broker has, each showing what it must do with the Guard's answer. A real
// adapter writes packets where this one prints them (internal/minibroker in
// this module is a complete one).
type adapter struct {
	g *mqttsec.Guard
	// live maps a Guard session to its connection (here: its client ID).
	live map[*mqttsec.Session]string
	// kept holds the sessions the broker keeps after their connection
	// ended, by client ID: subscriptions, queued messages, delayed will.
	kept map[string]*mqttsec.Session
}

func newAdapter(g *mqttsec.Guard) *adapter {
	a := &adapter{g: g, live: map[*mqttsec.Session]string{}, kept: map[string]*mqttsec.Session{}}
	g.SetDisconnector(a) // the Guard closes connections through the adapter
	return a
}

// onConnect answers a CONNECT.
func (a *adapter) onConnect(cl mqttsec.Client, password string, will *mqttsec.Message) *mqttsec.Session {
	s, err := a.g.Connect(context.Background(), cl, mqttsec.Credentials{Password: []byte(password)}, will)
	if err != nil {
		a.refuse(cl, mqttsec.CodeOf(err))
		return nil
	}
	// Register the session first, so that the Guard can disconnect it,
	// then refuse it if it was stopped meanwhile (expired, kicked).
	a.live[s] = cl.ID
	if err := s.Err(); err != nil {
		delete(a.live, s)
		a.refuse(cl, mqttsec.CodeOf(err))
		a.g.Disconnect(s, 0)
		return nil
	}
	// Resume a kept session only when the Guard says so; discard it
	// otherwise. It is never handed to another identity.
	present := false
	if _, ok := a.kept[cl.ID]; ok {
		present = s.Resume() && !cl.CleanStart
		delete(a.kept, cl.ID) // resumed (moved to s) or discarded
	}
	fmt.Printf("CONNACK %s to %s (session present: %t)\n", mqttsec.CodeSuccess, cl.ID, present)
	return s
}

func (a *adapter) refuse(cl mqttsec.Client, code mqttsec.ReasonCode) {
	if cl.Protocol == 5 {
		fmt.Printf("CONNACK %s to %s\n", code.ForConnack(), cl.ID)
		return
	}
	fmt.Printf("CONNACK return code %d to %s\n", code.V3Connack(), cl.ID)
}

// onPublish answers a QoS 1 PUBLISH of a v5 client. A denied message is
// neither delivered nor retained.
func (a *adapter) onPublish(s *mqttsec.Session, m *mqttsec.Message) {
	err := a.g.Publish(context.Background(), s, m)
	if err == nil {
		fmt.Printf("PUBACK %s for %q\n", mqttsec.CodeSuccess, m.Topic)
		a.route(m)
		return
	}
	code := mqttsec.CodeOf(err)
	if code.Disconnects() {
		a.close(s, code)
		return
	}
	// A v3 PUBACK cannot carry a code: acknowledge and drop instead.
	fmt.Printf("PUBACK %s for %q\n", code.ForPuback(), m.Topic)
}

// onSubscribe answers one filter of a SUBSCRIBE.
func (a *adapter) onSubscribe(s *mqttsec.Session, sub mqttsec.Subscription) {
	qos, err := a.g.Subscribe(context.Background(), s, sub)
	if err != nil {
		// v3: code.V3Suback()
		fmt.Printf("SUBACK %s for %q\n", mqttsec.CodeOf(err).ForSuback(), sub.Filter)
		return
	}
	fmt.Printf("SUBACK granted QoS %d for %q\n", qos, sub.Filter)
}

// route stands for the broker's routing: each delivery, to every
// subscriber, passes Deliver (retained and queued messages too).
func (a *adapter) route(m *mqttsec.Message) {
	for s, id := range a.live {
		if a.g.Deliver(context.Background(), s, m.Topic) != nil {
			fmt.Printf("  %q skipped for %s\n", m.Topic, id)
			continue
		}
		fmt.Printf("  %q delivered to %s\n", m.Topic, id)
	}
}

// onWillDue runs when a will is due: at once when the connection drops,
// or after the will delay. A denied will is neither published nor
// retained.
func (a *adapter) onWillDue(s *mqttsec.Session, will *mqttsec.Message) {
	if err := a.g.Will(context.Background(), s, will); err != nil {
		fmt.Printf("will %q not published: %s\n", will.Topic, mqttsec.CodeOf(err))
		return
	}
	fmt.Printf("will %q published\n", will.Topic)
}

// onConnectionEnd runs once when a connection ends; keep is how long the
// broker keeps the session (the session expiry, 0 for a clean session).
func (a *adapter) onConnectionEnd(s *mqttsec.Session, keep time.Duration) {
	id := a.live[s]
	delete(a.live, s)
	a.g.Disconnect(s, keep)
	if keep > 0 && s.Err() == nil {
		a.kept[id] = s
	}
}

// close sends a v5 DISCONNECT (a v3 client's socket is just closed).
func (a *adapter) close(s *mqttsec.Session, code mqttsec.ReasonCode) {
	fmt.Printf("DISCONNECT %s to %s\n", code.ForDisconnect(), s.Client().ID)
	a.onConnectionEnd(s, 0)
}

// Disconnect implements mqttsec.Disconnector: the Guard ends a session
// (credentials expired or withdrawn, an administrator's kick).
func (a *adapter) Disconnect(s *mqttsec.Session, code mqttsec.ReasonCode) {
	if _, ok := a.live[s]; ok {
		a.close(s, code)
		return
	}
	if s.Kept() && a.kept[s.Client().ID] == s {
		delete(a.kept, s.Client().ID) // subscriptions, queue and delayed will
		a.g.Disconnect(s, 0)
		fmt.Printf("kept session of %s discarded\n", s.Client().ID)
	}
}

// newGuard returns the Guard of the examples: users alice and bob with
// password "pw"; "plant/..." may be published and subscribed to,
// "plant/secret/..." not received, "admin/..." nothing.
func newGuard() *mqttsec.Guard {
	return mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			if (cl.Username == "alice" || cl.Username == "bob") && string(cred.Password) == "pw" {
				return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
			}
			return nil, mqttsec.ErrBadCredentials
		}),
		Authorizer: mqttsec.AuthorizerFunc(func(_ context.Context, _ *mqttsec.Client, acc mqttsec.Access, name string) error {
			switch {
			case strings.HasPrefix(name, "admin/"):
				return mqttsec.ErrNotAuthorized
			case strings.HasPrefix(name, "plant/secret/") && acc == mqttsec.Receive:
				return mqttsec.ErrNotAuthorized
			}
			return nil
		}),
		MaxPayload: 64,
		Events:     mqttsec.EventSinkFunc(func(mqttsec.Event) {}), // a real broker logs them: nil means slog
	})
}

// ExampleGuard shows the hook points of a minimal broker adapter and what
// each does with the Guard's answer.
func ExampleGuard() {
	a := newAdapter(newGuard())

	a.onConnect(mqttsec.Client{ID: "intruder", Username: "alice", Protocol: 5}, "guess", nil)
	a.onConnect(mqttsec.Client{ID: "old-device", Username: "alice", Protocol: 4}, "guess", nil)
	sensor := a.onConnect(mqttsec.Client{ID: "sensor-1", Username: "alice", Protocol: 5, CleanStart: true}, "pw",
		&mqttsec.Message{Topic: "plant/status", Payload: []byte("offline")})
	a.onSubscribe(sensor, mqttsec.Subscription{Filter: "plant/#", QoS: 1})
	a.onSubscribe(sensor, mqttsec.Subscription{Filter: "admin/#", QoS: 1})
	a.onPublish(sensor, &mqttsec.Message{Topic: "plant/temp", Payload: []byte("21.5"), QoS: 1})
	a.onPublish(sensor, &mqttsec.Message{Topic: "plant/secret/key", Payload: []byte("k"), QoS: 1})
	a.onPublish(sensor, &mqttsec.Message{Topic: "admin/reboot", Payload: []byte("now"), QoS: 1})
	a.onPublish(sensor, &mqttsec.Message{Topic: "plant/+", Payload: []byte("x"), QoS: 1})

	// The connection drops: the will is due, then the connection ends.
	a.onWillDue(sensor, &mqttsec.Message{Topic: "plant/status", Payload: []byte("offline")})
	a.onConnectionEnd(sensor, 0)

	// A payload over MaxPayload ends the connection instead of a PUBACK.
	big := a.onConnect(mqttsec.Client{ID: "big", Username: "bob", Protocol: 5, CleanStart: true}, "pw", nil)
	a.onPublish(big, &mqttsec.Message{Topic: "plant/blob", Payload: make([]byte, 100), QoS: 1})
	// Output:
	// CONNACK 0x86 bad user name or password to intruder
	// CONNACK return code 4 to old-device
	// CONNACK 0x00 success to sensor-1 (session present: false)
	// SUBACK granted QoS 1 for "plant/#"
	// SUBACK 0x87 not authorized for "admin/#"
	// PUBACK 0x00 success for "plant/temp"
	//   "plant/temp" delivered to sensor-1
	// PUBACK 0x00 success for "plant/secret/key"
	//   "plant/secret/key" skipped for sensor-1
	// PUBACK 0x87 not authorized for "admin/reboot"
	// PUBACK 0x90 topic name invalid for "plant/+"
	// will "plant/status" published
	// CONNACK 0x00 success to big (session present: false)
	// DISCONNECT 0x95 packet too large to big
}

// ExampleSession shows a kept session: the client ID stays bound to its
// owner while the broker keeps the session, the owner resumes it, and an
// administrator's kick discards it.
func ExampleSession() {
	g := newGuard()
	a := newAdapter(g)

	s := a.onConnect(mqttsec.Client{ID: "device-1", Username: "alice", Protocol: 5}, "pw", nil)
	a.onConnectionEnd(s, 5*time.Minute) // session expiry interval: 300 s
	fmt.Println("kept:", s.Kept())

	// bob may neither resume nor discard alice's session.
	a.onConnect(mqttsec.Client{ID: "device-1", Username: "bob", Protocol: 5}, "pw", nil)
	a.onConnect(mqttsec.Client{ID: "device-1", Username: "bob", Protocol: 5, CleanStart: true}, "pw", nil)

	s = a.onConnect(mqttsec.Client{ID: "device-1", Username: "alice", Protocol: 5}, "pw", nil)
	fmt.Println("resume:", s.Resume())
	a.onConnectionEnd(s, 5*time.Minute)

	// An administrator ends alice's sessions, live or kept.
	n := g.Kick(mqttsec.MatchSubject("alice"), mqttsec.CodeAdministrativeAction)
	fmt.Println("kicked:", n, "err:", s.Err())
	// Output:
	// CONNACK 0x00 success to device-1 (session present: false)
	// kept: true
	// CONNACK 0x85 client identifier not valid to device-1
	// CONNACK 0x85 client identifier not valid to device-1
	// CONNACK 0x00 success to device-1 (session present: true)
	// resume: true
	// kept session of device-1 discarded
	// kicked: 1 err: mqttsec: disconnected by an administrator
}
