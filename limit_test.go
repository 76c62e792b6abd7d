package mqttsec_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
)

// connLimiter records what the Guard asks of a ConnectionLimiter.
type connLimiter struct {
	mu      sync.Mutex
	opened  []string // subjects seen by Open
	closed  map[string]int
	limits  []mqttsec.Limit
	deny    error // Open's answer
	denyPub error // the connection limiter's answer to LimitPublish
}

func (c *connLimiter) Allow(cl *mqttsec.Client, l mqttsec.Limit, _ int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limits = append(c.limits, l)
	return nil
}

func (c *connLimiter) Open(s *mqttsec.Session) (mqttsec.ConnLimiter, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.Identity() == nil {
		return nil, errors.New("opened before authentication")
	}
	c.opened = append(c.opened, s.Client().Username)
	if c.deny != nil {
		return nil, c.deny
	}
	return &perConn{c: c, id: s.Client().ID}, nil
}

type perConn struct {
	c  *connLimiter
	id string
}

func (p *perConn) Allow(cl *mqttsec.Client, l mqttsec.Limit, _ int) error {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	if cl.ID != p.id {
		return errors.New("wrong client")
	}
	if l == mqttsec.LimitPublish {
		return p.c.denyPub
	}
	return nil
}

func (p *perConn) Close() {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	if p.c.closed == nil {
		p.c.closed = map[string]int{}
	}
	p.c.closed[p.id]++
}

func (c *connLimiter) closes(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed[id]
}

func TestConnectionLimiter(t *testing.T) {
	lim := &connLimiter{denyPub: mqttsec.ErrRateTooHigh}
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: own, Limiter: lim, Events: &events{}})

	s, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	require.Equal(t, []string{"alice"}, lim.opened, "Open sees the authenticated subject")
	// The connection's own limiter answers PUBLISH and SUBSCRIBE.
	err = g.Publish(ctx, s, &mqttsec.Message{Topic: "u/alice/x"})
	require.ErrorIs(t, err, mqttsec.ErrRateTooHigh)
	require.NoError(t, sub(g, s, "u/alice/#"))
	require.Equal(t, []mqttsec.Limit{mqttsec.LimitConnect}, lim.limits, "the shared Limiter only saw the CONNECT")

	// Close runs once when the connection ends, kept session or not.
	g.Disconnect(s, time.Hour)
	require.Equal(t, 1, lim.closes("c1"))
	g.Disconnect(s, 0)
	require.Equal(t, 1, lim.closes("c1"))

	// A CONNECT refused after Open (the client ID is bound to alice's kept
	// session) closes what it opened.
	_, err = g.Connect(ctx, client("c1", "bob"), pw("pw"), nil)
	require.Equal(t, mqttsec.CodeClientIDNotValid, mqttsec.CodeOf(err))
	require.Equal(t, 2, lim.closes("c1"))

	// Open's denial refuses the CONNECT, with 0x97 when it carries no code.
	lim.deny = errors.New("cap reached")
	_, err = g.Connect(ctx, client("c2", "bob"), pw("pw"), nil)
	require.Equal(t, mqttsec.CodeQuotaExceeded, mqttsec.CodeOf(err))
	lim.deny = mqttsec.ErrBanned
	_, err = g.Connect(ctx, client("c2", "bob"), pw("pw"), nil)
	require.Equal(t, mqttsec.CodeBanned, mqttsec.CodeOf(err))
}

type recordDisc struct {
	mu    sync.Mutex
	codes []mqttsec.ReasonCode
}

func (r *recordDisc) Disconnect(_ *mqttsec.Session, code mqttsec.ReasonCode) {
	r.mu.Lock()
	r.codes = append(r.codes, code)
	r.mu.Unlock()
}

func TestSessionKick(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: own, Events: &events{}})
	d := &recordDisc{}
	g.SetDisconnector(d)
	s, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	require.True(t, s.Kick(mqttsec.CodeMessageRateTooHigh))
	require.False(t, s.Kick(mqttsec.CodeMessageRateTooHigh), "once")
	require.Equal(t, []mqttsec.ReasonCode{mqttsec.CodeMessageRateTooHigh}, d.codes)
	err = g.Publish(ctx, s, &mqttsec.Message{Topic: "u/alice/x"})
	require.Equal(t, mqttsec.CodeMessageRateTooHigh, mqttsec.CodeOf(err))

	s2, err := g.Connect(ctx, client("c2", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	require.True(t, s2.Kick(mqttsec.CodeAdministrativeAction))
	require.ErrorIs(t, s2.Err(), mqttsec.ErrKicked)
	g.Disconnect(s2, 0)
	var nilSession *mqttsec.Session
	require.False(t, nilSession.Kick(mqttsec.CodeBanned))
}
