package mochi

import (
	"context"
	"errors"
	"log/slog"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Logger returns a logger for mochi itself (mqtt.Options.Logger) that
// writes to l (nil means slog.Default()) without what mochi v2.7.9 should
// not log next to a Guard:
//
//   - a second report of every CONNECT the hook refused (mochi's listener
//     logs it with an empty message) and of every PUBLISH it rejected
//     ("publish packet rejected"): the Guard's event sink has reported them
//     with their reason;
//   - the end of every connection at warn level with an empty message (its
//     listener logs the error a connection ended with, EOF included): it
//     is written at debug level, as "mochi: connection ended";
//   - message payloads: the packets mochi attaches to its records ("packet",
//     "pk") are reduced to their type, topic, QoS and payload size, so that
//     no payload reaches a log at any level.
func Logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		l = slog.Default()
	}
	return slog.New(&logHandler{next: l.Handler()})
}

type logHandler struct{ next slog.Handler }

func (h *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "publish packet rejected" {
		return nil
	}
	drop := false
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && errors.As(err, new(connectDenied)) {
			drop = true
			return false
		}
		out.AddAttrs(redact(a))
		return true
	})
	if drop {
		return nil
	}
	if out.Message == "" {
		// mochi's listener logs the end of every connection it served
		// (EOF, a closed socket, a client's protocol error) at warn with
		// an empty message: it is debug information.
		if !h.next.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		d := slog.NewRecord(out.Time, slog.LevelDebug, "mochi: connection ended", out.PC)
		out.Attrs(func(a slog.Attr) bool { d.AddAttrs(a); return true })
		return h.next.Handle(ctx, d)
	}
	return h.next.Handle(ctx, out)
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redact(a)
	}
	return &logHandler{next: h.next.WithAttrs(red)}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{next: h.next.WithGroup(name)}
}

// redact replaces a packet by what may be logged of it.
func redact(a slog.Attr) slog.Attr {
	pk, ok := a.Value.Any().(packets.Packet)
	if !ok {
		if p, isPtr := a.Value.Any().(*packets.Packet); isPtr && p != nil {
			pk, ok = *p, true
		}
	}
	if !ok {
		return a
	}
	return slog.Group(a.Key,
		slog.Int("type", int(pk.FixedHeader.Type)),
		slog.String("topic", pk.TopicName),
		slog.Int("qos", int(pk.FixedHeader.Qos)),
		slog.Int("payload_bytes", len(pk.Payload)))
}
