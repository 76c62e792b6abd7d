package config

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mqttsec/mqttsec"
)

// The attribute keys of a security event record ([EventLogger]). They are
// a stable interface: tools may parse them.
const (
	// KeyEvent is the event kind: connect_denied, connected,
	// publish_denied, subscribe_denied, receive_denied, will_denied,
	// expired, revoked, dropped, banned, disconnected, reload,
	// reload_failed, warning, error (mqttsec.EventKind's String), and
	// suppressed for the count of denials left out of the log (KeyCount).
	KeyEvent = "event"
	// KeyClientID is the MQTT client ID.
	KeyClientID = "client_id"
	// KeyUsername is the authenticated user name (the CONNECT's, for a
	// refused CONNECT).
	KeyUsername = "username"
	// KeyRemoteAddr is the client's "ip:port".
	KeyRemoteAddr = "remote_addr"
	// KeyListener is the name of the listener the client connected
	// through.
	KeyListener = "listener"
	// KeyTopic is the topic name or filter of a publish, subscribe,
	// delivery or will event.
	KeyTopic = "topic"
	// KeyCode is the MQTT 5 reason code in hex ("0x87").
	KeyCode = "code"
	// KeyReason is the reason code's name ("not authorized").
	KeyReason = "reason"
	// KeySource names the part that reported a reload, warning or error:
	// "passwords", "tls", "acl", "jwks", "guard".
	KeySource = "source"
	// KeyFile is the file a reload is about.
	KeyFile = "file"
	// KeyError says why, in words. It never holds a password or token.
	KeyError = "error"
	// KeyCount is, in a record of the event "suppressed", how many
	// per-message denials of the last second were left out of the log
	// (see mqttsec.EventSampler); the metrics count them all.
	KeyCount = "count"
)

// EventMessage is the message of every security event record, so that
// they can be told from the rest of the log.
const EventMessage = "security event"

// EventLogger returns an [mqttsec.EventSink] that writes each event as one
// record to l, with the message [EventMessage] and the attributes Key...
// (those without a value left out): with a JSON handler, one JSON object
// per line:
//
//	{"time":"2025-01-02T15:04:05.123Z","level":"WARN","msg":"security event","event":"connect_denied",
//	 "client_id":"sensor-1","username":"bob","remote_addr":"127.0.0.1:53124","code":"0x86",
//	 "reason":"bad user name or password","error":"mqttsec: bad user name or password: ..."}
//
// Denials of one client's messages are logged at most once per second per
// client and kind (mqttsec.EventSampler); a record of the event
// "suppressed" with KeyCount says how many were left out. Denials, drops,
// bans, expiries, revocations, failed reloads, warnings and errors are
// logged at warn level; delivery denials (one per message and subscriber)
// and disconnections at debug; the rest at info. A nil l means
// slog.Default(). The sink is safe for concurrent use.
func EventLogger(l *slog.Logger) mqttsec.EventSink {
	if l == nil {
		l = slog.Default()
	}
	return &eventLog{l: l}
}

type eventLog struct {
	l *slog.Logger
	s mqttsec.EventSampler
}

func (s *eventLog) Event(e mqttsec.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	write, suppressed := s.s.Sample(e)
	if suppressed > 0 {
		r := slog.NewRecord(e.Time, slog.LevelWarn, EventMessage, 0)
		r.AddAttrs(slog.String(KeyEvent, "suppressed"), slog.Int(KeyCount, suppressed))
		_ = s.l.Handler().Handle(context.Background(), r)
	}
	if !write {
		return
	}
	level := slog.LevelInfo
	switch e.Kind {
	case mqttsec.EventConnectDenied, mqttsec.EventPublishDenied, mqttsec.EventSubscribeDenied,
		mqttsec.EventExpired, mqttsec.EventError, mqttsec.EventWarning, mqttsec.EventReloadFailed,
		mqttsec.EventRevoked, mqttsec.EventWillDenied, mqttsec.EventDropped, mqttsec.EventBanned:
		level = slog.LevelWarn
	case mqttsec.EventReceiveDenied, mqttsec.EventDisconnected:
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs, slog.String(KeyEvent, e.Kind.String()))
	str := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	str(KeyClientID, e.ClientID)
	str(KeyUsername, e.Username)
	str(KeyRemoteAddr, e.RemoteAddr)
	str(KeyListener, e.Listener)
	str(KeyTopic, e.Topic)
	if e.Code != mqttsec.CodeSuccess {
		str(KeyCode, fmt.Sprintf("0x%02X", byte(e.Code)))
		str(KeyReason, e.Code.Name())
	}
	str(KeySource, e.Source)
	str(KeyFile, e.File)
	if e.Err != nil {
		str(KeyError, e.Err.Error())
	}
	r := slog.NewRecord(e.Time, level, EventMessage, 0)
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.AddAttrs(attrs...)
	_ = s.l.Handler().Handle(ctx, r)
}

// fanout sends each event to every sink in order.
type fanout []mqttsec.EventSink

func (f fanout) Event(e mqttsec.Event) {
	for _, s := range f {
		s.Event(e)
	}
}

// maxKinds bounds the event kinds counted; mqttsec has 15.
const maxKinds = 32

// metrics counts security events by kind and reason code for Prometheus.
type metrics struct {
	reg     *prometheus.Registry
	events  *prometheus.CounterVec
	counter [maxKinds][256]atomic.Pointer[prometheus.Counter]
	srv     *http.Server
	ln      net.Listener
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mqttsec",
		Name:      "events_total",
		Help:      "Security events and decisions by kind (connected, connect_denied, publish_denied, ...) and MQTT 5 reason code.",
	}, []string{"kind", "code"})
	m.reg.MustRegister(m.events,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Event counts e. After the first event of a kind and code it takes no
// lock and allocates nothing.
func (m *metrics) Event(e mqttsec.Event) {
	k := int(e.Kind)
	if k < 0 || k >= maxKinds {
		k = 0
	}
	p := &m.counter[k][byte(e.Code)]
	if c := p.Load(); c != nil {
		(*c).Inc()
		return
	}
	c := m.events.WithLabelValues(e.Kind.String(), fmt.Sprintf("0x%02X", byte(e.Code)))
	p.Store(&c)
	c.Inc()
}

// serve starts the HTTP server of /metrics on addr.
func (m *metrics) serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	m.ln = ln
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	go func() { _ = m.srv.Serve(ln) }()
	return nil
}

func (m *metrics) close() error {
	if m.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.srv.Shutdown(ctx)
}
