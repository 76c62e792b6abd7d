package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"

	"github.com/mqttsec/mqttsec"
)

// Watcher is a Casbin watcher ([persist.Watcher], [persist.WatcherEx] and
// [persist.UpdatableWatcher]) on the node's Redis pub/sub: a policy change
// made through the enforcer of one node is published, and every other node
// calls its update callback, which reloads the policy from the shared
// adapter. With the acl package:
//
//	c, err := acl.NewCasbin(e, acl.WithWatcher(node.Watcher()))
//
// acl installs a callback that calls e.LoadPolicy, which recompiles its
// index; the enforcers of all nodes must share one adapter (a database).
//
// # Messages
//
// The callback is called with a JSON object: "node" (the publishing node),
// "op" (update, add, remove, remove_filtered, save, add_many, remove_many,
// update_one, update_many, or resync), and for changes "sec", "ptype",
// "rules" (the rules added or removed, or the new rules), "old" (replaced
// rules), "field_index" and "field_values". Rules of invalid UTF-8 are
// passed with U+FFFD in place of the invalid bytes. A node does not call its
// own callback for its own changes. Callbacks run one at a time, in the
// order received, on a goroutine of the watcher; they must not block for
// long. acl's callback reloads the enforcer there: use a
// casbin.SyncedEnforcer when the policy is also changed from other
// goroutines. When they fall more than 1024 messages behind, those are dropped and
// one "resync" message follows, which asks for a reload.
//
// # Faults
//
// Redis pub/sub keeps no messages. When the node's subscription was broken,
// the callback is called with "resync" once it is back: the node may have
// missed changes, and reloading the policy catches up. A change whose
// notification could not be published (Redis down) returns the error to
// Casbin (the change itself is in force locally and in the adapter), and the
// watcher publishes an "update" as soon as Redis answers again, so the
// other nodes reload it.
//
// A Watcher is safe for concurrent use. [Watcher.Close] or [Node.Close]
// stops it.
type Watcher struct {
	n       *Node
	mu      sync.Mutex // guards cb
	cb      func(string)
	queue   chan string
	over    atomic.Bool // messages were dropped: send a resync
	pending atomic.Bool // a notification of ours was not published
	stop    chan struct{}
	stopped atomic.Bool
	done    chan struct{}
}

// watcherQueue bounds the messages waiting for the callback.
const watcherQueue = 1024

// Watcher returns a new [Watcher] on the node's policy channel and starts
// the goroutine that calls its callback (stopped by [Watcher.Close] or
// [Node.Close]). Give it to acl.NewCasbin with acl.WithWatcher.
func (n *Node) Watcher() *Watcher {
	w := &Watcher{n: n, queue: make(chan string, watcherQueue), stop: make(chan struct{}), done: make(chan struct{})}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed.Load() {
		w.stopped.Store(true)
		close(w.done)
		return w
	}
	n.watchers = append(n.watchers, w)
	n.wg.Add(1)
	go w.run()
	return w
}

// policyMsg is a message on the policy channel.
type policyMsg struct {
	V           int        `json:"v"`
	Node        string     `json:"node"`
	Op          string     `json:"op"`
	Sec         string     `json:"sec,omitempty"`
	Ptype       string     `json:"ptype,omitempty"`
	Rules       [][]string `json:"rules,omitempty"`
	Old         [][]string `json:"old,omitempty"`
	FieldIndex  *int       `json:"field_index,omitempty"`
	FieldValues []string   `json:"field_values,omitempty"`
}

// SetUpdateCallback implements [persist.Watcher]: f is called with each
// message from another node (see [Watcher]).
func (w *Watcher) SetUpdateCallback(f func(string)) error {
	w.mu.Lock()
	w.cb = f
	w.mu.Unlock()
	return nil
}

func (w *Watcher) callback() func(string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cb
}

// Update implements [persist.Watcher]: it tells the other nodes that the
// policy changed.
func (w *Watcher) Update() error { return w.publish(policyMsg{Op: "update"}) }

// UpdateForAddPolicy implements [persist.WatcherEx].
func (w *Watcher) UpdateForAddPolicy(sec, ptype string, params ...string) error {
	return w.publish(policyMsg{Op: "add", Sec: sec, Ptype: ptype, Rules: [][]string{params}})
}

// UpdateForRemovePolicy implements [persist.WatcherEx].
func (w *Watcher) UpdateForRemovePolicy(sec, ptype string, params ...string) error {
	return w.publish(policyMsg{Op: "remove", Sec: sec, Ptype: ptype, Rules: [][]string{params}})
}

// UpdateForRemoveFilteredPolicy implements [persist.WatcherEx].
func (w *Watcher) UpdateForRemoveFilteredPolicy(sec, ptype string, fieldIndex int, fieldValues ...string) error {
	return w.publish(policyMsg{Op: "remove_filtered", Sec: sec, Ptype: ptype, FieldIndex: &fieldIndex, FieldValues: fieldValues})
}

// UpdateForSavePolicy implements [persist.WatcherEx]; the message does not
// carry the policy.
func (w *Watcher) UpdateForSavePolicy(model.Model) error { return w.publish(policyMsg{Op: "save"}) }

// UpdateForAddPolicies implements [persist.WatcherEx].
func (w *Watcher) UpdateForAddPolicies(sec, ptype string, rules ...[]string) error {
	return w.publish(policyMsg{Op: "add_many", Sec: sec, Ptype: ptype, Rules: rules})
}

// UpdateForRemovePolicies implements [persist.WatcherEx].
func (w *Watcher) UpdateForRemovePolicies(sec, ptype string, rules ...[]string) error {
	return w.publish(policyMsg{Op: "remove_many", Sec: sec, Ptype: ptype, Rules: rules})
}

// UpdateForUpdatePolicy implements [persist.UpdatableWatcher].
func (w *Watcher) UpdateForUpdatePolicy(sec, ptype string, oldRule, newRule []string) error {
	return w.publish(policyMsg{Op: "update_one", Sec: sec, Ptype: ptype, Old: [][]string{oldRule}, Rules: [][]string{newRule}})
}

// UpdateForUpdatePolicies implements [persist.UpdatableWatcher].
func (w *Watcher) UpdateForUpdatePolicies(sec, ptype string, oldRules, newRules [][]string) error {
	return w.publish(policyMsg{Op: "update_many", Sec: sec, Ptype: ptype, Old: oldRules, Rules: newRules})
}

// publish sends m to the other nodes. A message too large for the channel
// is sent as a plain update.
func (w *Watcher) publish(m policyMsg) error {
	if w.stopped.Load() {
		return ErrClosed
	}
	m.V, m.Node = 1, w.n.id
	b, err := json.Marshal(m)
	if err != nil || len(b) > maxMessage {
		b, _ = json.Marshal(policyMsg{V: 1, Node: w.n.id, Op: "update"})
	}
	ctx, cancel := w.n.opContext(context.Background())
	defer cancel()
	if err := w.n.rdb.Publish(ctx, w.n.policyChan, b).Err(); err != nil {
		w.pending.Store(true)
		return w.n.fail("publish policy change", err)
	}
	w.n.ok()
	return nil
}

// handlePolicy passes a message of the policy channel to every watcher.
func (n *Node) handlePolicy(payload string) {
	var m struct {
		V    int    `json:"v"`
		Node string `json:"node"`
	}
	if err := json.Unmarshal([]byte(payload), &m); err != nil || m.V != 1 {
		n.emit(mqttsec.Event{Kind: mqttsec.EventWarning, Source: "redis",
			Err: fmt.Errorf("redisstore: ignored a malformed message on %q", n.policyChan)})
		return
	}
	if m.Node == n.id {
		return
	}
	n.mu.Lock()
	ws := append([]*Watcher(nil), n.watchers...)
	n.mu.Unlock()
	for _, w := range ws {
		w.deliver(payload)
	}
}

func (w *Watcher) deliver(msg string) {
	select {
	case w.queue <- msg:
	default:
		w.over.Store(true)
	}
}

// resync asks for a reload after the subscription was broken, and
// publishes a notification that could not be published before.
func (w *Watcher) resync() {
	w.deliver(w.resyncMessage())
	w.retryPending()
}

func (w *Watcher) resyncMessage() string {
	b, _ := json.Marshal(policyMsg{V: 1, Node: w.n.id, Op: "resync"})
	return string(b)
}

func (w *Watcher) retryPending() {
	if w.pending.CompareAndSwap(true, false) {
		if err := w.Update(); err != nil {
			w.pending.Store(true)
		}
	}
}

func (w *Watcher) run() {
	defer w.n.wg.Done()
	defer close(w.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-w.n.ctx.Done():
			return
		case <-t.C:
			w.retryPending()
		case msg := <-w.queue:
			w.call(msg)
			if len(w.queue) == 0 && w.over.CompareAndSwap(true, false) {
				w.call(w.resyncMessage())
			}
		}
	}
}

func (w *Watcher) call(msg string) {
	if w.stopped.Load() {
		return
	}
	if cb := w.callback(); cb != nil {
		cb(msg)
	}
}

// Close implements [persist.Watcher]: the callback is not called any more.
func (w *Watcher) Close() {
	if w.stopped.CompareAndSwap(false, true) {
		close(w.stop)
		<-w.done
	}
}

var (
	_ persist.WatcherEx        = (*Watcher)(nil)
	_ persist.UpdatableWatcher = (*Watcher)(nil)
)
