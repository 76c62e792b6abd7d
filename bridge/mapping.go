package bridge

import (
	"strings"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttsec/mqttsec/topic"
)

// route is one mapping seen from one direction: messages on the source side
// that match filter (and start with srcPrefix) are forwarded to dstPrefix +
// the rest of their topic.
type route struct {
	index     int    // the mapping's index in Config.Topics
	filter    string // the source-side subscription filter
	srcPrefix string
	dstPrefix string
	qos       byte
}

// routes compiles the mappings of one direction, in configuration order.
func routes(ms []Mapping, out bool) []route {
	var rs []route
	for i, m := range ms {
		if out && !m.Direction.out() || !out && !m.Direction.in() {
			continue
		}
		src, dst := m.LocalPrefix, m.RemotePrefix
		if !out {
			src, dst = dst, src
		}
		rs = append(rs, route{index: i, filter: src + m.Pattern, srcPrefix: src, dstPrefix: dst, qos: m.QoS})
	}
	return rs
}

// subscriptions returns the subscriptions of a set of routes: one per
// distinct filter, at the highest QoS of its routes, with no-local (unless
// loop prevention is off), retain-as-published, and retained messages sent
// only when the subscription is new (so a resumed session does not forward
// them again).
func subscriptions(rs []route, noLocal bool) []paho.SubscribeOptions {
	var subs []paho.SubscribeOptions
	idx := map[string]int{}
	for _, r := range rs {
		if i, ok := idx[r.filter]; ok {
			subs[i].QoS = max(subs[i].QoS, r.qos)
			continue
		}
		idx[r.filter] = len(subs)
		subs = append(subs, paho.SubscribeOptions{
			Topic:             r.filter,
			QoS:               r.qos,
			NoLocal:           noLocal,
			RetainAsPublished: true,
			RetainHandling:    1,
		})
	}
	return subs
}

// remap returns the destination topic of a source topic and the route that
// maps it: the first route whose filter matches and whose source prefix the
// topic starts with (a filter "p/#" also matches "p", which lacks the prefix
// "p/": such a message is not forwarded). ok is false when no route applies
// or the result is not a valid topic name.
func remap(rs []route, name string) (dst string, r *route, ok bool) {
	for i := range rs {
		r := &rs[i]
		if !topic.Match(r.filter, name) || !strings.HasPrefix(name, r.srcPrefix) {
			continue
		}
		dst := r.dstPrefix + name[len(r.srcPrefix):]
		if dst == "" || len(dst) > topic.MaxLen {
			return "", nil, false
		}
		return dst, r, true
	}
	return "", nil, false
}

// matchRoute is remap without building the destination topic: it reports
// whether a message would be forwarded, allocating nothing.
func matchRoute(rs []route, name string) (*route, bool) {
	for i := range rs {
		r := &rs[i]
		if !topic.Match(r.filter, name) || !strings.HasPrefix(name, r.srcPrefix) {
			continue
		}
		n := len(r.dstPrefix) + len(name) - len(r.srcPrefix)
		if n == 0 || n > topic.MaxLen {
			return nil, false
		}
		return r, true
	}
	return nil, false
}

// reverseTopic maps a topic of the source side (a response topic) to the
// destination side through the routes of the opposite direction, whose
// source is our destination: it returns the destination-side topic T such
// that the reverse routes would forward T back to name. ok is false when no
// reverse route does.
func reverseTopic(reverse []route, name string) (string, bool) {
	for i := range reverse {
		r := &reverse[i]
		// r forwards topics srcPrefix+S (on our destination side) to
		// dstPrefix+S (on our source side).
		if !strings.HasPrefix(name, r.dstPrefix) {
			continue
		}
		t := r.srcPrefix + name[len(r.dstPrefix):]
		if t == "" || len(t) > topic.MaxLen || !topic.Match(r.filter, t) {
			continue
		}
		return t, true
	}
	return "", false
}

// overlaps reports whether some topic name matches both filters. A filter
// whose first level is a wildcard matches no name starting with '$'.
func overlaps(a, b string) bool {
	if startsWild(a) && strings.HasPrefix(b, "$") || startsWild(b) && strings.HasPrefix(a, "$") {
		return false
	}
	for first := true; ; first = false {
		la, resta, moreA := strings.Cut(a, "/")
		lb, restb, moreB := strings.Cut(b, "/")
		if la == "#" || lb == "#" {
			return true
		}
		if la != "+" && lb != "+" && la != lb {
			return false
		}
		// A one-level name made of an empty level is "", not a name.
		emptyName := first && (la == "" || lb == "")
		switch {
		case !moreA && !moreB:
			return !emptyName
		case !moreA:
			return restb == "#" && !emptyName // "x" and "x/#"
		case !moreB:
			return resta == "#" && !emptyName
		}
		a, b = resta, restb
	}
}

func startsWild(f string) bool { return f == "#" || f == "+" || strings.HasPrefix(f, "+/") }
