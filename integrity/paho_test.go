package integrity_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/integrity"
	"github.com/mqttsec/mqttsec/internal/testbroker"
)

// openBroker is a mochi broker that lets every authenticated client
// publish and subscribe anywhere, without the integrity check: what a
// compromised or misconfigured broker forwards.
func openBroker(t *testing.T) *testbroker.Broker {
	t.Helper()
	g := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			if string(cred.Password) != "pw" {
				return nil, mqttsec.ErrBadCredentials
			}
			return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
		}),
		Authorizer: mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil }),
		Events:     mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
	return testbroker.Start(t, g, testbroker.Options{})
}

// inbox collects what a Receiver hands over and refuses.
type inbox struct {
	got     chan integrity.Received
	refused chan error
}

func newInbox() *inbox {
	return &inbox{got: make(chan integrity.Received, 64), refused: make(chan error, 64)}
}

func (in *inbox) receiver(v *integrity.Verifier, cfg integrity.ReceiverConfig) *integrity.Receiver {
	cfg.OnRefused = func(_ *paho.Publish, err error) { in.refused <- err }
	return integrity.NewReceiver(v, func(r integrity.Received) { in.got <- r }, cfg)
}

func (in *inbox) next(t *testing.T) integrity.Received {
	t.Helper()
	select {
	case r := <-in.got:
		return r
	case <-time.After(testbroker.Timeout):
		t.Fatal("no message handed over")
		return integrity.Received{}
	}
}

func (in *inbox) refusal(t *testing.T) error {
	t.Helper()
	select {
	case err := <-in.refused:
		return err
	case <-time.After(testbroker.Timeout):
		t.Fatal("no refusal")
		return nil
	}
}

var clientSeq atomic.Int64

// connect starts an autopaho client as user, with handle (if any) as its
// only publish handler, subscribed to filter (if any).
func connect(t *testing.T, addr, user, password string, handle func(paho.PublishReceived) (bool, error), filter string) *autopaho.ConnectionManager {
	t.Helper()
	u, err := url.Parse("mqtt://" + addr)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     30,
		ReconnectBackoff:              autopaho.NewConstantBackoff(time.Second),
		ConnectTimeout:                testbroker.Timeout,
		CleanStartOnInitialConnection: true,
		ClientConfig:                  paho.ClientConfig{ClientID: fmt.Sprintf("%s-auto-%d", user, clientSeq.Add(1))},
	}
	if handle != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){handle}
	}
	auth.Configure(&cfg, auth.StaticCredentials(user, []byte(password)))
	cm, err := autopaho.NewConnection(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		_ = cm.Disconnect(dctx)
		cancel()
	})
	actx, acancel := context.WithTimeout(ctx, testbroker.Timeout)
	defer acancel()
	require.NoError(t, cm.AwaitConnection(actx))
	if filter != "" {
		sa, err := cm.Subscribe(actx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
		require.NoError(t, err)
		require.Equal(t, byte(1), sa.Reasons[0])
	}
	return cm
}

// TestReceiverRefusals: the attacks of the issue, forwarded by a broker
// that does not check, are each refused by the client wrapper with their
// own error kind, and the application gets only the verified messages.
func TestReceiverRefusals(t *testing.T) {
	f := keys(t)
	b := openBroker(t)
	in := newInbox()
	v := verifier(t, integrity.VerifierConfig{Policy: policy(t, integrity.Rule{Filter: "devices/%u/#"})})
	connect(t, b.Addr, "app", "pw", in.receiver(v, integrity.ReceiverConfig{}).OnPublishReceived, "devices/#")
	attacker := dial(t, b.Addr, "mallory")

	a := integrity.NewSigner(f.a, integrity.SignerConfig{})
	const topic = "devices/dev-a/temp"
	for _, c := range []integrity.Carrier{integrity.Envelope, integrity.Detached} {
		t.Run(c.String(), func(t *testing.T) {
			pub := func(tp string, m integrity.Sealed) {
				t.Helper()
				p := &paho.Publish{Topic: tp, Payload: m.Payload, QoS: 1}
				if m.Signature != "" {
					p.Properties = &paho.PublishProperties{User: paho.UserProperties{{Key: integrity.PropertyName, Value: m.Signature}}}
				}
				pctx, cancel := context.WithTimeout(context.Background(), testbroker.Timeout)
				defer cancel()
				_, err := attacker.Publish(pctx, p)
				require.NoError(t, err)
			}
			sealFor := func(s *integrity.Signer, tp, p string) integrity.Sealed {
				return seal(t, s, tp, []byte(p), c, nil)
			}
			good := sealFor(a, topic, "first")
			pub(topic, good)
			r := in.next(t)
			require.NotNil(t, r.Verified)
			require.Equal(t, "first", string(r.Publish.Payload))
			require.Equal(t, "dev-a", r.Verified.Subject)

			tampered := sealFor(a, topic, "21.5")
			tampered.Payload = bytes.Replace(bytes.Clone(tampered.Payload), []byte("21.5"), []byte("91.5"), 1)
			old := integrity.NewSigner(f.a, integrity.SignerConfig{Clock: func() time.Time { return time.Now().Add(-time.Hour) }})
			for _, tc := range []struct {
				name  string
				topic string
				msg   integrity.Sealed
				kind  error
			}{
				{"tampered payload", topic, tampered, integrity.ErrBadSignature},
				{"changed topic", "devices/dev-a/humidity", sealFor(a, topic, "x"), integrity.ErrBadSignature},
				{"replay", topic, good, integrity.ErrReplay},
				{"expired timestamp", topic, sealFor(old, topic, "x"), integrity.ErrExpired},
				{"unknown key", topic, sealFor(integrity.NewSigner(f.stranger, integrity.SignerConfig{}), topic, "x"), integrity.ErrUnknownKey},
				{"another device's key", topic, sealFor(integrity.NewSigner(f.b, integrity.SignerConfig{}), topic, "x"), integrity.ErrSignerNotAllowed},
				{"unsigned", topic, integrity.Sealed{Payload: []byte("21.5")}, integrity.ErrUnsigned},
			} {
				t.Run(tc.name, func(t *testing.T) {
					pub(tc.topic, tc.msg)
					require.ErrorIs(t, in.refusal(t), tc.kind)
					// The next valid message is the next one handed over.
					pub(topic, sealFor(a, topic, "after "+tc.name))
					require.Equal(t, "after "+tc.name, string(in.next(t).Publish.Payload))
				})
			}
		})
	}
}

// TestSenderReceiver: a device publishes through a Sender on an autopaho
// connection; the application receives the verified payload, byte-identical
// on the wire with the detached carrier, and decrypted on an encrypted
// topic; an unsigned message on a protected topic is refused.
func TestSenderReceiver(t *testing.T) {
	f := keys(t)
	b := openBroker(t)
	pol := policy(t, integrity.Rule{Filter: "devices/%u/secret/#", EncryptionKey: "group-1"}, integrity.Rule{Filter: "devices/%u/#"})
	in := newInbox()
	v := verifier(t, integrity.VerifierConfig{Policy: pol})
	connect(t, b.Addr, "app", "pw", in.receiver(v, integrity.ReceiverConfig{}).OnPublishReceived, "devices/#")
	raw := dial(t, b.Addr, "observer") // sees the wire
	require.Equal(t, byte(1), raw.Sub(t, "devices/#", 1))
	device := connect(t, b.Addr, "dev-a", "pw", nil, "")
	s := integrity.NewSender(integrity.NewSigner(f.a, integrity.SignerConfig{}), integrity.SenderConfig{
		Carrier: integrity.Detached, Policy: pol, Keys: f.ring,
	})
	pctx, cancel := context.WithTimeout(context.Background(), testbroker.Timeout)
	defer cancel()

	p := &paho.Publish{Topic: "devices/dev-a/temp", Payload: []byte("21.5"), QoS: 1}
	_, err := s.Publish(pctx, device, p)
	require.NoError(t, err)
	require.Nil(t, p.Properties, "the caller's publish is not modified")
	r := in.next(t)
	require.Equal(t, "21.5", string(r.Publish.Payload))
	require.Equal(t, "dev-a-1", r.Verified.KeyID)
	wire := raw.ExpectMessage(t, "devices/dev-a/temp", testbroker.Timeout)
	require.Equal(t, "21.5", string(wire.Payload), "detached: the payload on the wire is unchanged")
	require.NotEmpty(t, wire.Properties.User.Get(integrity.PropertyName))

	_, err = s.Publish(pctx, device, &paho.Publish{Topic: "devices/dev-a/secret/key", Payload: []byte("hunter2"), QoS: 1})
	require.NoError(t, err)
	r = in.next(t)
	require.Equal(t, "hunter2", string(r.Publish.Payload))
	require.True(t, r.Verified.Encrypted)
	wire = raw.ExpectMessage(t, "devices/dev-a/secret/key", testbroker.Timeout)
	require.NotContains(t, string(wire.Payload), "hunter2")

	_, err = device.Publish(pctx, &paho.Publish{Topic: "devices/dev-a/temp", Payload: []byte("unsigned"), QoS: 1})
	require.NoError(t, err)
	require.ErrorIs(t, in.refusal(t), integrity.ErrUnsigned)
}

// TestReceiverDeliverRefused: by option, refused messages reach the
// handler with Verified nil and the reason; unsigned messages on topics
// the policy does not protect are handed over unverified.
func TestReceiverDeliverRefused(t *testing.T) {
	f := keys(t)
	v := verifier(t, integrity.VerifierConfig{Policy: policy(t, integrity.Rule{Filter: "p/#"})})
	var got []integrity.Received
	r := integrity.NewReceiver(v, func(rc integrity.Received) { got = append(got, rc) }, integrity.ReceiverConfig{DeliverRefused: true})
	handled, err := r.OnPublishReceived(paho.PublishReceived{Packet: &paho.Publish{Topic: "p/x", Payload: []byte("forged")}})
	require.True(t, handled)
	require.ErrorIs(t, err, integrity.ErrUnsigned)
	handled, err = r.OnPublishReceived(paho.PublishReceived{Packet: &paho.Publish{Topic: "q/x", Payload: []byte("open")}})
	require.True(t, handled)
	require.NoError(t, err)
	m := seal(t, integrity.NewSigner(f.a, integrity.SignerConfig{}), "p/x", []byte("ok"), integrity.Detached, nil)
	props := &paho.PublishProperties{User: paho.UserProperties{{Key: integrity.PropertyName, Value: m.Signature}, {Key: integrity.PropertyName, Value: m.Signature}}}
	_, err = r.OnPublishReceived(paho.PublishReceived{Packet: &paho.Publish{Topic: "p/x", Payload: m.Payload, Properties: props}})
	require.ErrorIs(t, err, integrity.ErrMalformed, "two signature properties")
	require.Len(t, got, 3)
	require.Nil(t, got[0].Verified)
	require.ErrorIs(t, got[0].Err, integrity.ErrUnsigned)
	require.Nil(t, got[1].Verified)
	require.NoError(t, got[1].Err)
	require.Equal(t, "open", string(got[1].Publish.Payload))
	require.True(t, errors.Is(got[2].Err, integrity.ErrMalformed))
}
