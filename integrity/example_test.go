package integrity_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/url"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/integrity"
)

// A device signs; a receiver with the device's public key verifies, and
// refuses the message when it was altered or moved to another topic.
func ExampleSigner_Seal() {
	// On the device: its private key (integrity.LoadPrivateKey in practice).
	key, err := integrity.GenerateKey(integrity.EdDSA, "sensor-7-1", "sensor-7")
	if err != nil {
		log.Fatal(err)
	}
	signer := integrity.NewSigner(key, integrity.SignerConfig{})
	msg, err := signer.Seal("plant/sensor-7/temp", []byte("21.5"), integrity.Envelope, nil)
	if err != nil {
		log.Fatal(err)
	}

	// On the receiver: the public keys (integrity.LoadKeyring in practice).
	ring, err := integrity.NewKeyring(key.Public())
	if err != nil {
		log.Fatal(err)
	}
	pol, err := integrity.NewPolicy(integrity.Rule{Filter: "plant/%u/#"})
	if err != nil {
		log.Fatal(err)
	}
	v, err := integrity.NewVerifier(integrity.VerifierConfig{Keys: ring, Policy: pol})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), "plant/sensor-7/alarm", msg.Payload, ""); err != nil {
		fmt.Println(errors.Is(err, integrity.ErrBadSignature))
	}
	vd, err := v.Verify(context.Background(), "plant/sensor-7/temp", msg.Payload, "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s from %s\n", vd.Payload, vd.Subject)
	_, err = v.Verify(context.Background(), "plant/sensor-7/temp", msg.Payload, "")
	fmt.Println(errors.Is(err, integrity.ErrReplay))
	// Output:
	// true
	// 21.5 from sensor-7
	// true
}

// A broker's Guard refuses unsigned messages on protected topics (0x99)
// and messages signed with a key not bound to the publisher (0x87), after
// the ACL authorizer it wraps.
func ExampleProtect() {
	key, err := integrity.GenerateKey(integrity.EdDSA, "sensor-7-1", "sensor-7")
	if err != nil {
		log.Fatal(err)
	}
	ring, err := integrity.NewKeyring(key.Public()) // integrity.LoadKeyring("keyring.json")
	if err != nil {
		log.Fatal(err)
	}
	pol, err := integrity.NewPolicy(integrity.Rule{Filter: "plant/#"})
	if err != nil {
		log.Fatal(err)
	}
	v, err := integrity.NewVerifier(integrity.VerifierConfig{Keys: ring, Policy: pol})
	if err != nil {
		log.Fatal(err)
	}
	var policy mqttsec.Authorizer = mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error {
		return nil // an acl.Casbin in practice
	})
	g := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
			return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword} /* auth.Passwords in practice */, nil
		}),
		Authorizer: integrity.Protect(policy, v),
		Logger:     slog.New(slog.DiscardHandler),
	})
	publish := func(user string, payload []byte) {
		s, err := g.Connect(context.Background(), mqttsec.Client{ID: user + "-1", Username: user, RemoteAddr: "192.0.2.1:5000", Protocol: 5}, mqttsec.Credentials{}, nil)
		if err != nil {
			log.Fatal(err)
		}
		defer g.Disconnect(s, 0)
		err = g.Publish(context.Background(), s, &mqttsec.Message{Topic: "plant/sensor-7/temp", Payload: payload, QoS: 1})
		fmt.Printf("%s 0x%02X\n", user, byte(mqttsec.CodeOf(err).ForPuback()))
	}
	msg, err := integrity.NewSigner(key, integrity.SignerConfig{}).Seal("plant/sensor-7/temp", []byte("21.5"), integrity.Envelope, nil)
	if err != nil {
		log.Fatal(err)
	}
	publish("sensor-7", []byte("21.5"))
	publish("sensor-8", msg.Payload)
	publish("sensor-7", msg.Payload)
	// Output:
	// sensor-7 0x99
	// sensor-8 0x87
	// sensor-7 0x00
}

// An autopaho client that signs what it publishes and hands the
// application only verified messages.
func ExampleReceiver() {
	key, err := integrity.LoadPrivateKey("/etc/sensor/key.jwk")
	if err != nil {
		log.Fatal(err)
	}
	ring, err := integrity.LoadKeyring("/etc/sensor/keyring.json")
	if err != nil {
		log.Fatal(err)
	}
	pol, err := integrity.NewPolicy(integrity.Rule{Filter: "plant/%u/#"})
	if err != nil {
		log.Fatal(err)
	}
	v, err := integrity.NewVerifier(integrity.VerifierConfig{Keys: ring, Policy: pol})
	if err != nil {
		log.Fatal(err)
	}
	recv := integrity.NewReceiver(v, func(r integrity.Received) {
		fmt.Printf("%s from %s: %s\n", r.Publish.Topic, r.Verified.Subject, r.Publish.Payload)
	}, integrity.ReceiverConfig{
		OnRefused: func(p *paho.Publish, err error) { slog.Warn("refused", "topic", p.Topic, "error", err) },
	})
	u, _ := url.Parse("mqtts://broker.example.com:8883")
	cm, err := autopaho.NewConnection(context.Background(), autopaho.ClientConfig{
		ServerUrls: []*url.URL{u},
		ClientConfig: paho.ClientConfig{
			ClientID:          "sensor-7",
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){recv.OnPublishReceived},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	sender := integrity.NewSender(integrity.NewSigner(key, integrity.SignerConfig{}), integrity.SenderConfig{Policy: pol})
	if _, err := sender.Publish(context.Background(), cm, &paho.Publish{Topic: "plant/sensor-7/temp", Payload: []byte("21.5"), QoS: 1}); err != nil {
		log.Fatal(err)
	}
}
