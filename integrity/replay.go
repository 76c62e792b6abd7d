package integrity

import (
	"fmt"
	"sync"
)

// WindowSize is how many sequence numbers below the highest one seen from
// a sender are still accepted once (out-of-order delivery), per key.
const WindowSize = 128

// DefaultMaxSenders is the default number of senders (key IDs) whose replay
// state a [Verifier] keeps.
const DefaultMaxSenders = 10_000

// window is the replay state of every sender a verifier has seen, keyed
// by key ID, at most max of them; the least recently seen is evicted.
type window struct {
	mu   sync.Mutex
	m    map[string]*sender
	head *sender // most recently seen
	tail *sender // least recently seen
	max  int
	// horizon is the latest timestamp (ms) of any evicted sender: a
	// message from a sender without state must be newer, or it could be
	// one accepted before the state was evicted.
	horizon int64
}

// sender is the replay state of one key: the run (epoch) of its sender,
// the highest sequence number seen in that run and a bitmap of the
// WindowSize numbers below it (bit i set: top-i was seen).
type sender struct {
	kid        string
	epoch      uint64
	top        uint64
	seen       [WindowSize / 64]uint64
	last       int64 // latest timestamp seen, ms
	prev, next *sender
}

func newWindow(max int) *window {
	return &window{m: make(map[string]*sender), max: max}
}

var errEvicted = fmt.Errorf("%w: the sender's state was evicted after this message was signed", ErrReplay)

func (s *sender) check(epoch, seq uint64) error {
	switch {
	case epoch < s.epoch:
		return fmt.Errorf("%w: from an earlier run of the sender", ErrReplay)
	case epoch > s.epoch || seq > s.top:
		return nil
	}
	d := s.top - seq
	if d >= WindowSize {
		return fmt.Errorf("%w: sequence number %d is more than %d below the highest seen", ErrReplay, seq, WindowSize)
	}
	if s.seen[d/64]&(1<<(d%64)) != 0 {
		return fmt.Errorf("%w: sequence number %d seen before", ErrReplay, seq)
	}
	return nil
}

// commit records the message if it is acceptable, atomically with the
// check.
func (w *window) commit(kid []byte, epoch, seq uint64, ts int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.m[string(kid)]
	if s == nil {
		if ts <= w.horizon {
			return errEvicted
		}
		s = w.add(string(kid))
		s.epoch, s.top, s.seen, s.last = epoch, seq, [WindowSize / 64]uint64{1}, ts
		return nil
	}
	if err := s.check(epoch, seq); err != nil {
		return err
	}
	w.touch(s)
	s.last = max(s.last, ts)
	switch {
	case epoch > s.epoch:
		s.epoch, s.top, s.seen = epoch, seq, [WindowSize / 64]uint64{1}
	case seq > s.top:
		s.shift(seq - s.top)
		s.top = seq
		s.seen[0] |= 1
	default:
		d := s.top - seq
		s.seen[d/64] |= 1 << (d % 64)
	}
	return nil
}

// shift moves the bitmap n places up (towards older numbers).
func (s *sender) shift(n uint64) {
	if n >= WindowSize {
		s.seen = [WindowSize / 64]uint64{}
		return
	}
	words, b := int(n/64), uint(n%64)
	for i := len(s.seen) - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = s.seen[j] << b
			if b > 0 && j > 0 {
				v |= s.seen[j-1] >> (64 - b)
			}
		}
		s.seen[i] = v
	}
}

// add creates the state of kid, evicting the least recently seen sender
// when the window is full.
func (w *window) add(kid string) *sender {
	if len(w.m) >= w.max && w.tail != nil {
		old := w.tail
		w.unlink(old)
		delete(w.m, old.kid)
		w.horizon = max(w.horizon, old.last)
	}
	s := &sender{kid: kid}
	w.m[kid] = s
	w.pushFront(s)
	return s
}

func (w *window) touch(s *sender) {
	if w.head == s {
		return
	}
	w.unlink(s)
	w.pushFront(s)
}

func (w *window) unlink(s *sender) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		w.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		w.tail = s.prev
	}
	s.prev, s.next = nil, nil
}

func (w *window) pushFront(s *sender) {
	s.next = w.head
	if w.head != nil {
		w.head.prev = s
	}
	w.head = s
	if w.tail == nil {
		w.tail = s
	}
}

// len returns the number of senders tracked.
func (w *window) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}
