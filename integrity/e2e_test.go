package integrity_test

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/integrity"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/internal/testenv"
)

// TestMosquittoEndToEnd: signed messages cross a real Mosquitto between two
// paho clients and verify, with both carriers; a client holding the
// device's broker credentials (the broker lets it publish on the device's
// topic) alters a message on the way, or replays it, and the receiver
// detects it.
func TestMosquittoEndToEnd(t *testing.T) {
	passwd := testenv.Need(t, "mosquitto_passwd")
	dir := t.TempDir()
	pwfile := filepath.Join(dir, "passwd")
	for _, u := range [][2]string{{"dev-a", "device-password"}, {"app", "app-password"}} {
		args := []string{"-b", pwfile, u[0], u[1]}
		if u[0] == "dev-a" {
			args = append([]string{"-c"}, args...)
		}
		out, err := exec.Command(passwd, args...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	m := testenv.StartMosquitto(t, "allow_anonymous false", "password_file "+pwfile)

	f := keys(t)
	in := newInbox()
	v := verifier(t, integrity.VerifierConfig{Policy: policy(t, integrity.Rule{Filter: "plant/%u/#"})})
	connect(t, m.Addr, "app", "app-password", in.receiver(v, integrity.ReceiverConfig{}).OnPublishReceived, "plant/#")

	// The attacker holds dev-a's broker credentials, not its signing key:
	// it sees the messages as they are on the wire.
	captured := make(chan *paho.Publish, 8)
	attacker := connect(t, m.Addr, "dev-a", "device-password", func(pr paho.PublishReceived) (bool, error) {
		captured <- pr.Packet
		return true, nil
	}, "plant/#")

	device := connect(t, m.Addr, "dev-a", "device-password", nil, "")
	signer := integrity.NewSigner(f.a, integrity.SignerConfig{})
	pctx, cancel := context.WithTimeout(context.Background(), testbroker.Timeout)
	defer cancel()
	const topic = "plant/dev-a/temp"
	for _, c := range []integrity.Carrier{integrity.Detached, integrity.Envelope} {
		t.Run(c.String(), func(t *testing.T) {
			s := integrity.NewSender(signer, integrity.SenderConfig{Carrier: c})
			_, err := s.Publish(pctx, device, &paho.Publish{Topic: topic, Payload: []byte("21.5"), QoS: 1})
			require.NoError(t, err)
			r := in.next(t)
			require.Equal(t, "21.5", string(r.Publish.Payload))
			require.Equal(t, "dev-a", r.Verified.Subject)

			var orig *paho.Publish
			select {
			case orig = <-captured:
			case <-time.After(testbroker.Timeout):
				t.Fatal("the attacker saw nothing")
			}
			// Altered on the way: same signature, other value.
			forged := &paho.Publish{Topic: topic, QoS: 1, Properties: orig.Properties,
				Payload: bytes.Replace(bytes.Clone(orig.Payload), []byte("21.5"), []byte("99.5"), 1)}
			_, err = attacker.Publish(pctx, forged)
			require.NoError(t, err)
			require.ErrorIs(t, in.refusal(t), integrity.ErrBadSignature)
			// Sent again unchanged.
			_, err = attacker.Publish(pctx, &paho.Publish{Topic: topic, QoS: 1, Properties: orig.Properties, Payload: orig.Payload})
			require.NoError(t, err)
			require.ErrorIs(t, in.refusal(t), integrity.ErrReplay)
			// Moved to another topic of the device.
			_, err = attacker.Publish(pctx, &paho.Publish{Topic: "plant/dev-a/alarm", QoS: 1, Properties: orig.Properties, Payload: orig.Payload})
			require.NoError(t, err)
			require.ErrorIs(t, in.refusal(t), integrity.ErrBadSignature)
			// Drain the attacker's own copies.
			for range 3 {
				select {
				case <-captured:
				case <-time.After(testbroker.Timeout):
					t.Fatal("the attacker's copies did not arrive")
				}
			}
		})
	}
}
