package mochi_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/mochi"
)

// A mochi broker guarded by mqttsec: one user, who may use topics under
// "sensors/" only. A wrong password is refused with 0x86, a will message on
// another topic with 0x87.
func Example() {
	g := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			// A real deployment uses the auth package (bcrypt, JWT, X.509).
			if cl.Username == "device" && string(cred.Password) == "s3cret" {
				return &mqttsec.Identity{Subject: "device", Method: mqttsec.MethodPassword}, nil
			}
			return nil, mqttsec.ErrBadCredentials
		}),
		Authorizer: mqttsec.AuthorizerFunc(func(_ context.Context, _ *mqttsec.Client, _ mqttsec.Access, topic string) error {
			if strings.HasPrefix(topic, "sensors/") {
				return nil
			}
			return mqttsec.ErrNotAuthorized
		}),
		Events: mqttsec.EventSinkFunc(func(mqttsec.Event) {}), // route to logs or metrics
	})

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = 1 << 20 // mochi allocates what a header claims otherwise
	s := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: slog.New(slog.DiscardHandler)})
	if _, err := mochi.NewHook(g, s); err != nil { // NewHook calls s.AddHook
		fmt.Println(err)
		return
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	if err := s.AddListener(mochi.Harden(tcp, 10*time.Second)); err != nil {
		fmt.Println(err)
		return
	}
	if err := s.Serve(); err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	connect := func(password string, will *paho.WillMessage) {
		nc, err := net.Dial("tcp", tcp.Address())
		if err != nil {
			fmt.Println(err)
			return
		}
		c := paho.NewClient(paho.ClientConfig{Conn: nc, AuthHandler: exampleAuth{}})
		ca, err := c.Connect(context.Background(), &paho.Connect{
			ClientID: "sensor-1", KeepAlive: 30, CleanStart: true,
			Username: "device", UsernameFlag: true, Password: []byte(password), PasswordFlag: true,
			WillMessage: will,
		})
		if ca != nil {
			fmt.Printf("CONNACK 0x%02X\n", ca.ReasonCode)
		}
		if err == nil {
			_ = c.Disconnect(&paho.Disconnect{})
			<-c.Done()
		}
	}
	connect("wrong", nil)
	connect("s3cret", &paho.WillMessage{Topic: "alarms/all", Payload: []byte("gone")})
	connect("s3cret", &paho.WillMessage{Topic: "sensors/sensor-1/status", Payload: []byte("gone")})
	// Output:
	// CONNACK 0x86
	// CONNACK 0x87
	// CONNACK 0x00
}

type exampleAuth struct{}

func (exampleAuth) Authenticate(*paho.Auth) *paho.Auth { return &paho.Auth{ReasonCode: 0x80} }
func (exampleAuth) Authenticated()                     {}
