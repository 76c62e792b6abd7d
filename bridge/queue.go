package bridge

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// item is a message held by a direction, from its receipt on the source to
// its acknowledgement by the destination.
type item struct {
	seq      uint64
	gen      uint64 // the source connection it came from
	topic    string // destination topic
	msg      *paho.Publish
	qos      byte // forwarded QoS: min(received, mapping)
	size     int  // bytes held (topic and payload)
	received time.Time
	src      *paho.Client // to acknowledge; nil for status messages
	status   bool         // a status message of the bridge itself
	inflight bool
}

// ack acknowledges the message to its source broker (QoS 1 and 2). It is a
// no-op for QoS 0 and for a source connection that has ended (the broker
// then redelivers the message on the next connection).
func (it *item) ack() {
	if it.src != nil && it.msg.QoS > 0 {
		_ = it.src.Ack(it.msg)
	}
}

type admission uint8

const (
	admitted admission = iota
	dropped            // QoS 0 beyond the limits
	full               // QoS 1 or 2 beyond the limits: wait for room
)

// queue holds the messages of one direction: new ones in arrival order, and
// ones to publish again (after a lost connection) ahead of them, in their
// original order. Counts cover everything held, in flight included.
type queue struct {
	capN, capBytes int

	mu     sync.Mutex
	fifo   []*item
	head   int
	retry  []*item // sorted by seq
	n0, n1 int     // held QoS 0 and QoS 1/2 messages
	bytes  int
	seq    uint64
	notify chan struct{} // an item was added
	room   chan struct{} // an item was released
}

func newQueue(capN, capBytes int) *queue {
	return &queue{capN: capN, capBytes: capBytes, notify: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

func (q *queue) signal() { poke(q.notify) }

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// admit adds a message unless it exceeds the limits. Status messages are
// always admitted and go first, replacing an older status not yet sent.
func (q *queue) admit(it *item) admission {
	q.mu.Lock()
	defer q.mu.Unlock()
	if it.status {
		q.retry = slices.DeleteFunc(q.retry, func(o *item) bool {
			if o.status && !o.inflight {
				q.release(o)
				return true
			}
			return false
		})
		it.seq = 0
		q.retry = slices.Insert(q.retry, 0, it)
		q.hold(it)
		q.signal()
		return admitted
	}
	if it.qos == 0 && (q.n0 >= q.capN || q.bytes+it.size > q.capBytes) {
		return dropped
	}
	if it.qos > 0 && (q.n1 >= q.capN || q.bytes+it.size > q.capBytes && q.n1 > 0) {
		// One message is always admitted, so a message as large as
		// the byte limit still moves.
		return full
	}
	q.seq++
	it.seq = q.seq
	q.fifo = append(q.fifo, it)
	q.hold(it)
	q.signal()
	return admitted
}

// admitWait admits a QoS 1 or 2 message, waiting for room while the queue
// is full. It returns false, without admitting it, when ctx ends or closed
// is closed (the source connection ended: the message will be redelivered).
func (q *queue) admitWait(ctx context.Context, closed <-chan struct{}, it *item) bool {
	for q.admit(it) != admitted {
		select {
		case <-q.room:
		case <-ctx.Done():
			return false
		case <-closed:
			return false
		}
	}
	return true
}

func (q *queue) hold(it *item) {
	if it.qos == 0 {
		q.n0++
	} else {
		q.n1++
	}
	q.bytes += it.size
}

func (q *queue) release(it *item) {
	if it.qos == 0 {
		q.n0--
	} else {
		q.n1--
	}
	q.bytes -= it.size
	poke(q.room)
}

// next returns the oldest message to send, retries first, and marks it in
// flight. It blocks until there is one or ctx or conn is done (then nil).
func (q *queue) next(ctx, conn context.Context) *item {
	for {
		q.mu.Lock()
		var it *item
		if len(q.retry) > 0 {
			it = q.retry[0]
			q.retry = q.retry[1:]
		} else if q.head < len(q.fifo) {
			it = q.fifo[q.head]
			q.fifo[q.head] = nil
			q.head++
			if q.head == len(q.fifo) {
				q.fifo, q.head = q.fifo[:0], 0
			} else if q.head > 1024 && q.head*2 > len(q.fifo) {
				q.fifo, q.head = append(q.fifo[:0], q.fifo[q.head:]...), 0
			}
		}
		if it != nil {
			it.inflight = true
			q.mu.Unlock()
			return it
		}
		q.mu.Unlock()
		select {
		case <-q.notify:
		case <-ctx.Done():
			return nil
		case <-conn.Done():
			return nil
		}
	}
}

// requeue puts an in-flight message back, ahead of newer ones.
func (q *queue) requeue(it *item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	it.inflight = false
	i, _ := slices.BinarySearchFunc(q.retry, it.seq, func(o *item, seq uint64) int {
		switch {
		case o.seq < seq:
			return -1
		case o.seq > seq:
			return 1
		}
		return 0
	})
	q.retry = slices.Insert(q.retry, i, it)
	q.signal()
}

// done releases an in-flight message that was delivered, refused or dropped.
func (q *queue) done(it *item) {
	q.mu.Lock()
	it.inflight = false
	q.release(it)
	q.mu.Unlock()
}

// purge discards the QoS 1 and 2 messages not in flight that came from
// source connections before gen: the source broker resumed the session and
// redelivers them. It returns how many were discarded.
func (q *queue) purge(gen uint64) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	stale := func(it *item) bool {
		if it == nil || it.inflight || it.status || it.qos == 0 || it.gen >= gen {
			return false
		}
		q.release(it)
		n++
		return true
	}
	q.retry = slices.DeleteFunc(q.retry, stale)
	live := q.fifo[q.head:]
	kept := slices.DeleteFunc(live, stale)
	q.fifo = append(q.fifo[:0], kept...)
	clear(q.fifo[len(q.fifo):cap(q.fifo)])
	q.head = 0
	return n
}

// held returns the number of messages held.
func (q *queue) held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n0 + q.n1
}
