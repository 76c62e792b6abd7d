package mochi_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/mochi"
)

// v3Connect returns a raw MQTT 3.1.1 CONNECT of user "alice" with the given
// connect flags and password (the password flag set even when it is
// empty).
func v3Connect(id string, flags byte, password string) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags | 0xC0, 0, 30}
	for _, s := range []string{id, "alice", password} {
		body = binary.BigEndian.AppendUint16(body, uint16(len(s)))
		body = append(body, s...)
	}
	return frameRaw(0x10, body)
}

// TestV3ConnackCodes: mochi's own CONNECT checks answer MQTT 3.1.1 clients
// with 3.1.1 return codes, not MQTT 5 reason codes.
func TestV3ConnackCodes(t *testing.T) {
	f := start(t, testbroker.Options{})
	for _, tc := range []struct {
		name string
		pkt  []byte
		want byte
	}{
		{"empty client ID without clean session", v3Connect("", 0, "pw"), 0x02},
		{"password flag with an empty password", v3Connect("c1", 0x02, ""), 0x05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", f.b.Addr)
			require.NoError(t, err)
			defer c.Close()
			_, err = c.Write(tc.pkt)
			require.NoError(t, err)
			ack := make([]byte, 4)
			_ = c.SetReadDeadline(time.Now().Add(testbroker.Timeout))
			_, err = io.ReadFull(c, ack)
			require.NoError(t, err)
			require.Equal(t, byte(0x20), ack[0])
			require.Equal(t, tc.want, ack[3], "a 3.1.1 return code (0..5)")
		})
	}
}

// TestPubackClean: mochi answers an accepted QoS 1 PUBLISH with reason
// 0x01 (a SUBACK code) and echoes the PUBLISH's properties in the PUBACK;
// the hook sends 0x00 and no echo.
func TestPubackClean(t *testing.T) {
	f := start(t, testbroker.Options{})
	c := f.dial(t, "p", "alice")
	ctx, cancel := context.WithTimeout(context.Background(), testbroker.Timeout)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: "ok/x", QoS: 1, Payload: []byte("x"), Properties: &paho.PublishProperties{
		User: paho.UserProperties{{Key: "secret-signature", Value: strings.Repeat("s", 64)}}, CorrelationData: []byte("corr")}})
	require.NoError(t, err)
	require.Equal(t, byte(0), r.ReasonCode)
	if r.Properties != nil {
		require.Empty(t, r.Properties.User, "the PUBACK does not echo the PUBLISH's user properties")
	}
}

// TestAssignClientID: with WithAssignClientID, a client that sends no ID
// gets one from the given generator, announced in the CONNACK.
func TestAssignClientID(t *testing.T) {
	f := start(t, testbroker.Options{HookOptions: []mochi.Option{mochi.WithAssignClientID(func() string { return "auto-7f3k" })}})
	c, ca, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{Username: "alice", Password: []byte("pw")})
	require.NoError(t, err)
	require.Equal(t, "auto-7f3k", ca.Properties.AssignedClientID)
	require.Equal(t, byte(1), c.Sub(t, "ok/#", 1))
	var seen bool
	for _, cl := range f.seen() {
		if cl.ID == "auto-7f3k" {
			seen = true
			require.True(t, cl.Assigned)
		}
	}
	require.True(t, seen, "the Guard saw the assigned ID")
}

// TestUserPropertiesDelivered: a subscriber that asked for no problem
// information (paho does, whenever its CONNECT has a property) still gets
// the user properties of the messages it receives.
func TestUserPropertiesDelivered(t *testing.T) {
	f := start(t, testbroker.Options{})
	sub, _, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: "s", Username: "bob", Password: []byte("pw"), SessionExpiry: 60})
	require.NoError(t, err)
	require.Equal(t, byte(1), sub.Sub(t, "ok/#", 1))
	pub := f.dial(t, "p", "alice")
	ctx, cancel := context.WithTimeout(context.Background(), testbroker.Timeout)
	defer cancel()
	_, err = pub.Publish(ctx, &paho.Publish{Topic: "ok/p", QoS: 1, Payload: []byte("x"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "sig", Value: "abc"}}}})
	require.NoError(t, err)
	m := sub.ExpectMessage(t, "ok/p", testbroker.Timeout)
	require.NotNil(t, m.Properties)
	require.Equal(t, "abc", m.Properties.User.Get("sig"))
}

// TestMaxKeepAlive: a keep-alive above the maximum (or none) is lowered
// for an MQTT 5 client, which is told in the CONNACK, and refused for an
// MQTT 3.1.1 client, which cannot be told (0x02, as Mosquitto).
func TestMaxKeepAlive(t *testing.T) {
	f := start(t, testbroker.Options{HookOptions: []mochi.Option{mochi.WithLimits(mochi.Limits{MaxKeepAlive: 20 * time.Second})}})
	for _, tc := range []struct {
		keepAlive uint16
		v3code    byte
	}{{0, 0x02}, {60, 0x02}, {20, 0}, {10, 0}} {
		c, err := net.Dial("tcp", f.b.Addr)
		require.NoError(t, err)
		body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, byte(tc.keepAlive >> 8), byte(tc.keepAlive)}
		for _, s := range []string{"ka3", "alice", "pw"} {
			body = binary.BigEndian.AppendUint16(body, uint16(len(s)))
			body = append(body, s...)
		}
		_, err = c.Write(frameRaw(0x10, body))
		require.NoError(t, err)
		ack := make([]byte, 4)
		_ = c.SetReadDeadline(time.Now().Add(testbroker.Timeout))
		_, err = io.ReadFull(c, ack)
		require.NoError(t, err)
		require.Equal(t, tc.v3code, ack[3], "MQTT 3.1.1, keep alive %d", tc.keepAlive)
		_ = c.Close()

		pc, ca, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: "ka5", Username: "alice", Password: []byte("pw"),
			KeepAlive: tc.keepAlive, NoKeepAlive: tc.keepAlive == 0})
		require.NoError(t, err)
		if tc.keepAlive == 0 || tc.keepAlive > 20 {
			require.NotNil(t, ca.Properties.ServerKeepAlive, "MQTT 5, keep alive %d", tc.keepAlive)
			require.Equal(t, uint16(20), *ca.Properties.ServerKeepAlive)
		} else {
			require.Nil(t, ca.Properties.ServerKeepAlive, "a keep-alive within the bound is the client's")
		}
		require.NoError(t, pc.Disconnect(&paho.Disconnect{}))
	}
}

// TestSysPublishAnswered: mochi drops a client's PUBLISH to $SYS without an
// acknowledgement, so a QoS 1 publisher would wait for ever; the hook
// answers it (0x87 for MQTT 5).
func TestSysPublishAnswered(t *testing.T) {
	f := start(t, testbroker.Options{})
	c := f.dial(t, "sys", "alice")
	for _, topic := range []string{"$SYS/broker/uptime", "$sys/x"} {
		code, err := c.Pub(t, topic, []byte("x"), 1)
		require.Error(t, err, topic)
		require.Equal(t, byte(0x87), code, topic)
	}
	code, v3, err := testbroker.DialV3(t, f.b.Addr, "sys3", "alice", "pw")
	require.NoError(t, err)
	require.Zero(t, code)
	require.NoError(t, v3.Publish("$SYS/x", []byte("x"), 1), "the 3.1.1 publisher gets its PUBACK")
	require.Positive(t, f.events.count(mqttsec.EventPublishDenied, "sys"), "reported like any denial")
}
