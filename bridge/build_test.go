package bridge

import (
	"bytes"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"
)

func testDirection(c capabilities, loopOff bool) *direction {
	cfg := Config{Name: "b", ClientID: "c", Remote: "mqtts://r", DisableLoopPrevention: loopOff, Topics: []Mapping{
		{Pattern: "req/#", Direction: Out, RemotePrefix: "site1/"},
		{Pattern: "replies/#", Direction: In, LocalPrefix: "cloud/", RemotePrefix: "site1/"},
	}}.withDefaults()
	b := &Bridge{cfg: cfg}
	dst := &side{b: b}
	dst.caps.Store(&c)
	return &direction{b: b, dst: dst, routes: routes(cfg.Topics, true), reverse: routes(cfg.Topics, false)}
}

func TestBuild(t *testing.T) {
	expiry := uint32(10)
	pf := byte(1)
	user := make(paho.UserProperties, 1, 4) // spare capacity: the copy must not write into it
	user[0] = paho.UserProperty{Key: "k", Value: "v"}
	src := &paho.Publish{Topic: "req/a", QoS: 2, Retain: true, Payload: []byte("x"), Properties: &paho.PublishProperties{
		ContentType: "ct", CorrelationData: []byte("cd"), ResponseTopic: "cloud/replies/d1", PayloadFormat: &pf,
		MessageExpiry: &expiry, User: user, TopicAlias: new(uint16), SubscriptionIdentifier: new(int),
	}}
	d := testDirection(capabilities{maxQoS: 1, retain: false}, false)
	it := &item{topic: "site1/req/a", msg: src, qos: 2, received: time.Now().Add(-3 * time.Second)}
	p, expired := d.build(it)
	require.False(t, expired)
	require.Equal(t, "site1/req/a", p.Topic)
	require.Equal(t, byte(1), p.QoS, "capped by the destination's Maximum QoS")
	require.False(t, p.Retain, "the destination has no retained messages")
	require.Equal(t, "ct", p.Properties.ContentType)
	require.Equal(t, "cd", string(p.Properties.CorrelationData))
	require.Equal(t, "site1/replies/d1", p.Properties.ResponseTopic, "mapped back through replies/#")
	require.Equal(t, &pf, p.Properties.PayloadFormat)
	require.Equal(t, uint32(7), *p.Properties.MessageExpiry)
	require.Nil(t, p.Properties.TopicAlias)
	require.Nil(t, p.Properties.SubscriptionIdentifier)
	require.Equal(t, paho.UserProperties{{Key: "k", Value: "v"}, {Key: LoopKey, Value: d.b.cfg.LoopID}}, p.Properties.User)
	require.Len(t, user[:cap(user)][1].Key, 0, "the source's user properties are untouched")

	it.received = time.Now().Add(-11 * time.Second)
	_, expired = d.build(it)
	require.True(t, expired)

	// Without loop prevention, no marker.
	d = testDirection(capabilities{maxQoS: 2, retain: true}, true)
	p, _ = d.build(&item{topic: "t", msg: &paho.Publish{Topic: "t", QoS: 1}, qos: 1, received: time.Now()})
	require.Empty(t, p.Properties.User)
}

// TestPublishSize compares publishSize with the bytes paho writes.
func TestPublishSize(t *testing.T) {
	expiry := uint32(10)
	pf := byte(1)
	for _, p := range []*paho.Publish{
		{Topic: "a", QoS: 0},
		{Topic: "a/b", QoS: 1, PacketID: 1, Payload: bytes.Repeat([]byte("x"), 200)},
		{Topic: "t", QoS: 2, PacketID: 9, Payload: bytes.Repeat([]byte("y"), 20000), Properties: &paho.PublishProperties{
			ContentType: "text/plain", CorrelationData: []byte("c"), ResponseTopic: "r/t", PayloadFormat: &pf, MessageExpiry: &expiry,
			User: paho.UserProperties{{Key: "k", Value: "v"}, {Key: LoopKey, Value: "0123456789abcdef"}},
		}},
	} {
		var b bytes.Buffer
		cp := &packets.ControlPacket{FixedHeader: packets.FixedHeader{Type: packets.PUBLISH}, Content: p.Packet()}
		_, err := cp.WriteTo(&b)
		require.NoError(t, err)
		require.Equal(t, b.Len(), publishSize(p), "%s", p)
	}
}

func TestBackoffDelay(t *testing.T) {
	require.Equal(t, time.Second, backoffDelay(time.Second, time.Minute, 1))
	require.Equal(t, 8*time.Second, backoffDelay(time.Second, time.Minute, 4))
	require.Equal(t, time.Minute, backoffDelay(time.Second, time.Minute, 10))
	require.Equal(t, 24*time.Hour, backoffDelay(24*time.Hour, 24*time.Hour, 1000), "no overflow")
	require.Equal(t, time.Hour, backoffDelay(time.Millisecond, time.Hour, 1<<30))
	for range 100 {
		d := jitter(time.Second)
		require.True(t, d >= 500*time.Millisecond && d <= time.Second, d)
	}
}
