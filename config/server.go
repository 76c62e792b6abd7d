package config

import (
	"errors"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttsec/mqttsec/bridge"
	"github.com/mqttsec/mqttsec/clientid"
	"github.com/mqttsec/mqttsec/mochi"
)

// Server is a mochi-mqtt broker built from a [Runtime]: bounded
// capabilities, mochi's log filtered through [mochi.Logger], exactly one
// hook ([mochi.NewHook]) driving the Runtime's Guard, and every listener
// wrapped with [mochi.HardenWith].
type Server struct {
	// MQTT is the mochi server. Its listeners are bound; call Serve.
	MQTT *mqtt.Server
	// Hook is the mqttsec hook registered on it.
	Hook *mochi.Hook

	listeners []listeners.Listener
	rt        *Runtime
	bridges   []*bridge.Bridge
}

// Server builds a mochi-mqtt broker for the file's listeners and binds
// them. Start it with Serve; Close disconnects every client (MQTT 5
// clients with a DISCONNECT 0x8B, server shutting down) and stops it.
func (r *Runtime) Server() (*Server, error) {
	f := r.f
	caps := mqtt.NewDefaultServerCapabilities()
	// Without a maximum mochi allocates whatever size a first,
	// unauthenticated packet claims (up to 256 MB).
	caps.MaximumPacketSize = uint32(f.MaxPacketSize())
	caps.MaximumSessionExpiryInterval = uint32(f.maxSessionExpiry() / time.Second)
	caps.MaximumClients = int64(f.maxClients())
	s := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: mochi.Logger(r.log)})
	ct := f.connectTimeout()
	// A client that sends no ID gets a random one: mochi's are predictable,
	// and an ID someone predicts is one they can take first.
	assign := func() string { return clientid.Generate("auto-") }
	hook, err := mochi.NewHook(r.g, s, mochi.WithLogger(r.log), mochi.WithConnectTimeout(ct), mochi.WithLimits(f.mochiLimits()),
		mochi.WithAssignClientID(assign))
	if err != nil {
		return nil, err
	}
	srv := &Server{MQTT: s, Hook: hook, rt: r}
	hc := mochi.HardenConfig{
		ConnectTimeout:  ct,
		MaxConnectSize:  f.Broker.MaxConnectSize,
		MaxPending:      f.Broker.MaxPending,
		MaxPendingPerIP: f.Broker.MaxPendingPerIP,
	}
	if f.Limits != nil {
		hc.WriteTimeout = f.Limits.WriteTimeout
		hc.InboundBudget = f.Limits.InboundBudget
		hc.PacketTimeout = f.Limits.PacketTimeout
	}
	for i, l := range f.Listeners {
		cfg := listeners.Config{ID: f.ListenerName(i), Address: l.Address, TLSConfig: r.serverTLS[i]}
		var ml listeners.Listener
		if l.Websocket {
			ml = listeners.NewWebsocket(cfg)
		} else {
			ml = listeners.NewTCP(cfg)
		}
		if err := s.AddListener(mochi.HardenWith(ml, hc)); err != nil {
			_ = s.Close()
			return nil, f.errAt(wrapf(ErrInvalid, "listen on %q: %w", l.Address, err), "listeners", i, "address")
		}
		srv.listeners = append(srv.listeners, ml)
	}
	if r.pipe != nil {
		if err := s.AddListener(listeners.NewNet(BridgeListener, mochi.HardenNetWith(r.pipe, hc))); err != nil {
			_ = s.Close()
			return nil, f.errAt(wrapf(ErrInvalid, "bridge listener: %w", err), "bridges")
		}
	}
	return srv, nil
}

// Serve starts serving the listeners, then the bridges, and returns at
// once.
func (s *Server) Serve() error {
	if err := s.MQTT.Serve(); err != nil {
		return err
	}
	return s.rt.startBridges(s)
}

// Addr returns the address listener i is bound to (for a TCP listener
// with port 0, the port the system chose).
func (s *Server) Addr(i int) string { return s.listeners[i].Address() }

// Close stops the bridges, disconnects every client, MQTT 5 clients with a
// DISCONNECT 0x8B (server shutting down), and stops the broker.
func (s *Server) Close() error {
	err := s.closeBridges()
	return errors.Join(err, s.MQTT.Close())
}

func (s *Server) closeBridges() error {
	var errs []error
	for _, b := range s.bridges {
		errs = append(errs, b.Close())
	}
	s.bridges = nil
	return errors.Join(errs...)
}

func (f *File) maxSessionExpiry() time.Duration {
	if f.Broker.MaxSessionExpiry > 0 {
		return f.Broker.MaxSessionExpiry
	}
	return DefaultMaxSessionExpiry
}

func (f *File) maxClients() int {
	if f.Broker.MaxClients > 0 {
		return f.Broker.MaxClients
	}
	return DefaultMaxClients
}

func (f *File) connectTimeout() time.Duration {
	if f.Broker.ConnectTimeout > 0 {
		return f.Broker.ConnectTimeout
	}
	return mochi.DefaultConnectTimeout
}

// mochiLimits maps the limits section to the hook's bounds; zero keeps a
// default.
func (f *File) mochiLimits() mochi.Limits {
	l := f.Limits
	if l == nil {
		return mochi.Limits{}
	}
	return mochi.Limits{
		DropBacklog:         l.DropQoS0Backlog,
		MaxBacklog:          l.ClientBacklog,
		SubjectBacklog:      l.UserBacklog,
		Outbound:            l.Outbound,
		QueuedMessages:      l.QueuedMessages,
		QueuedBytes:         l.QueuedBytes,
		Subscriptions:       l.Subscriptions,
		SubscriptionBytes:   l.SubscriptionBytes,
		FiltersPerSubscribe: l.FiltersPerSubscribe,
		TopicLength:         l.TopicLength,
		PropertyBytes:       l.PropertyBytes,
		Inflight:            l.Inflight,
		WritesPending:       l.WritesPending,
		TopicAliases:        l.TopicAliases,
		WriteStall:          l.WriteStall,
		MaxKeepAlive:        l.MaxKeepAlive,
	}
}
