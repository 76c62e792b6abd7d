package scan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// conn5 is an MQTT 5 probe connection on a paho.golang client.
type conn5 struct {
	c      *paho.Client
	nc     net.Conn
	ack    *paho.Connack
	msgs   chan message
	done   chan struct{}
	once   sync.Once
	reason atomic.Int32 // the server's DISCONNECT reason code, or -1
	opWait time.Duration
}

// refuseAuth answers an AUTH exchange the scanner did not ask for. paho
// panics on a CONNACK with an authentication method when no handler is set.
type refuseAuth struct{}

func (refuseAuth) Authenticate(*paho.Auth) *paho.Auth { return &paho.Auth{ReasonCode: 0x80} }
func (refuseAuth) Authenticated()                     {}

// receiveMaximum keeps paho's inbound queue small (it allocates a channel
// of that many entries per client).
const receiveMaximum = 64

// connect5 sends an MQTT 5 CONNECT on nc. On success the connection is
// ready; otherwise nc is closed and the CONNACK is returned when one came.
func connect5(ctx context.Context, nc net.Conn, o connOpts, maxPacket int, opWait time.Duration) (*conn5, *paho.Connack, error) {
	c := &conn5{nc: nc, msgs: make(chan message, 256), done: make(chan struct{}), opWait: opWait}
	c.reason.Store(-1)
	c.c = paho.NewClient(paho.ClientConfig{
		Conn:          packets.NewThreadSafeConn(nc),
		AuthHandler:   refuseAuth{},
		PacketTimeout: DefaultCheckTimeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case c.msgs <- message{topic: pr.Packet.Topic, payload: pr.Packet.Payload, retain: pr.Packet.Retain}:
			default:
			}
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			c.reason.Store(int32(d.ReasonCode))
			c.markDone()
		},
		OnClientError: func(error) { c.markDone() },
	})
	rm, mp := uint16(receiveMaximum), uint32(maxPacket)
	var se uint32
	cp := &paho.Connect{
		ClientID:   o.clientID,
		KeepAlive:  60,
		CleanStart: !o.keep,
		Username:   o.user, UsernameFlag: o.userFlag,
		Password: o.pass, PasswordFlag: o.passFlag,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &rm, MaximumPacketSize: &mp, SessionExpiryInterval: &se},
	}
	if o.keep {
		se = 60
	}
	if o.will != nil {
		cp.WillMessage = &paho.WillMessage{Topic: o.will.topic, Payload: o.will.payload, QoS: o.will.qos, Retain: o.will.retain}
	}
	ack, err := c.c.Connect(ctx, cp)
	if err == nil && ack.ReasonCode != 0 {
		// paho admits codes below 0x80; only 0x00 is success (a v3
		// broker's "unacceptable protocol version" reads as 0x01).
		_ = c.c.Disconnect(&paho.Disconnect{})
		err = fmt.Errorf("CONNACK 0x%02X", ack.ReasonCode)
	}
	if err != nil {
		_ = nc.Close()
		return nil, ack, err
	}
	c.ack = ack
	go func() {
		<-c.c.Done()
		c.markDone()
	}()
	return c, ack, nil
}

func (c *conn5) markDone() { c.once.Do(func() { close(c.done) }) }

// closed reports whether the connection has ended.
func (c *conn5) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// maxPacketSize is the Maximum Packet Size the broker announced, or 0.
func (c *conn5) maxPacketSize() uint32 {
	if c.ack != nil && c.ack.Properties != nil && c.ack.Properties.MaximumPacketSize != nil {
		return *c.ack.Properties.MaximumPacketSize
	}
	return 0
}

// publish publishes at QoS 1 and returns the PUBACK reason code. A nil
// error with a code >= 0x80 is a refusal.
func (c *conn5) publish(ctx context.Context, topic string, payload []byte, retain bool) (byte, error) {
	ctx, cancel := opContext(ctx, c.opWait, c.done)
	defer cancel()
	pr, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, Payload: payload, QoS: 1, Retain: retain})
	if pr != nil {
		return pr.ReasonCode, nil
	}
	if err == nil {
		err = errors.New("no PUBACK")
	}
	return 0, err
}

// subscribe subscribes to one filter at QoS 1 and returns the SUBACK
// reason code.
func (c *conn5) subscribe(ctx context.Context, filter string) (byte, error) {
	ctx, cancel := opContext(ctx, c.opWait, c.done)
	defer cancel()
	sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if sa == nil {
		if err == nil {
			err = errors.New("no SUBACK")
		}
		return 0, err
	}
	if len(sa.Reasons) != 1 {
		return 0, errors.New("SUBACK without exactly one reason code")
	}
	return sa.Reasons[0], nil
}

// Close sends DISCONNECT (so no will is published) and waits, briefly, for
// paho's goroutines to end.
func (c *conn5) Close() error {
	if !c.closed() {
		_ = c.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	}
	_ = c.nc.Close()
	select {
	case <-c.c.Done():
	case <-time.After(5 * time.Second):
	}
	return nil
}

// drop closes the socket without DISCONNECT, so the broker publishes the
// will.
func (c *conn5) drop() { _ = c.nc.Close() }

// expect waits up to d for a message on topic (other topics are skipped)
// and returns it, or false.
func expect(ctx context.Context, msgs <-chan message, topic string, d time.Duration) (message, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case m := <-msgs:
			if m.topic == topic {
				return m, true
			}
		case <-t.C:
			return message{}, false
		case <-ctx.Done():
			return message{}, false
		}
	}
}

// opContext bounds one request: it ends after d, when the connection ends
// (done closes) or with ctx, whichever comes first, so that a broker that
// never answers (or closes instead) costs one wait, not the whole check.
func opContext(ctx context.Context, d time.Duration, done <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, d)
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
