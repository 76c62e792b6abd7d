package auth

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mqttsec/mqttsec"
)

// DefaultPollInterval is how often a [Watcher] checks the file when no
// interval is given.
const DefaultPollInterval = 2 * time.Second

// WatchOptions configure [WatchPasswordFile]. The zero value watches with
// fsnotify, polls every DefaultPollInterval and reports to slog.Default().
type WatchOptions struct {
	// PollInterval is how often the file's size, modification time and
	// identity are checked, as a fallback for file systems where fsnotify
	// sees nothing (network mounts, some container volumes). Zero means
	// DefaultPollInterval.
	PollInterval time.Duration
	// NoFSNotify disables fsnotify: the file is only polled.
	NoFSNotify bool
	// Debounce is how long to wait after a change notification before
	// reading, so a burst of writes is read once. Zero means 50 ms.
	Debounce time.Duration
	// Events receives what the Watcher does, as every watcher of this
	// module reports it: an [mqttsec.EventReload] after the file changed
	// and its users were swapped in, an [mqttsec.EventReloadFailed] with
	// the error when a changed file cannot be read or parsed (the previous
	// users stay in force), and an [mqttsec.EventError] when watching
	// fails; each with Source "passwords" and File the file's path. Give
	// the [mqttsec.Guard] (an EventSink): after a reload it revalidates
	// live sessions, so a user removed from the file, or given a new
	// password, is disconnected. Nil means mqttsec.SlogSink(nil), so a
	// failed reload is never silent. Events are sent from the Watcher's
	// goroutine (or the caller of [Watcher.Reload]), one at a time.
	Events mqttsec.EventSink
	// Clock stamps the events. Nil means time.Now.
	Clock func() time.Time
}

// PasswordsEventSource is the Source of the events a [Watcher] reports.
const PasswordsEventSource = "passwords"

// Watcher reloads a password file into a [Passwords] when its content
// changes, and reports each reload to an [mqttsec.EventSink] (see
// WatchOptions.Events). Each reload parses the whole file first and swaps
// it in atomically, so a malformed file never replaces a good one and
// unchanged users never fail during a reload. Write the file atomically (temporary file and rename, as
// [PasswordFile.WriteFile] and `mqttsec passwd` do): a reader of a file that
// is rewritten in place can see a shorter, still valid prefix.
//
// A Watcher runs one goroutine until [Watcher.Close]. It is safe for
// concurrent use.
type Watcher struct {
	path    string
	p       *Passwords
	opt     WatchOptions
	fsw     *fsnotify.Watcher
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	last    os.FileInfo
	lastErr os.FileInfo
	sum     [sha256.Size]byte // of the content last swapped in
}

// WatchPasswordFile loads the file at path into p, then reloads it on every
// change until Close. It returns an error when the first load fails.
func WatchPasswordFile(path string, p *Passwords, opt WatchOptions) (*Watcher, error) {
	if opt.PollInterval <= 0 {
		opt.PollInterval = DefaultPollInterval
	}
	if opt.Debounce <= 0 {
		opt.Debounce = 50 * time.Millisecond
	}
	if opt.Events == nil {
		opt.Events = mqttsec.SlogSink(nil)
	}
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	w := &Watcher{path: filepath.Clean(path), p: p, opt: opt, stop: make(chan struct{}), done: make(chan struct{})}
	w.mu.Lock()
	_, err := w.reload()
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if !opt.NoFSNotify {
		if fsw, err := fsnotify.NewWatcher(); err == nil {
			if err := fsw.Add(filepath.Dir(w.path)); err == nil {
				w.fsw = fsw
			} else {
				_ = fsw.Close()
			}
		}
	}
	go w.run()
	return w, nil
}

// Reload reads the file now (on SIGHUP, say) and swaps it in when its
// content changed, reporting to WatchOptions.Events as a change noticed by
// the Watcher is; on error the previous users stay in force.
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reloadAndReport()
}

// reload reads the file and swaps its users in when its content differs
// from the last load. It reports whether it did. w.mu is held.
func (w *Watcher) reload() (changed bool, err error) {
	st, err := os.Stat(w.path)
	if err != nil {
		return false, fmt.Errorf("auth: %w", err)
	}
	data, err := os.ReadFile(w.path)
	if err != nil {
		w.lastErr = st
		return false, fmt.Errorf("auth: %w", err)
	}
	sum := sha256.Sum256(data)
	if w.last != nil && sum == w.sum {
		w.last, w.lastErr = st, nil
		return false, nil
	}
	f, err := ParsePasswordFile(bytes.NewReader(data), w.path)
	if err != nil {
		w.lastErr = st
		return false, err
	}
	w.p.Replace(f)
	w.last, w.lastErr, w.sum = st, nil, sum
	return true, nil
}

// reloadAndReport reloads and reports the outcome. w.mu is held.
func (w *Watcher) reloadAndReport() error {
	changed, err := w.reload()
	switch {
	case err != nil:
		w.event(mqttsec.EventReloadFailed, err)
	case changed:
		w.event(mqttsec.EventReload, nil)
	}
	return err
}

func (w *Watcher) event(kind mqttsec.EventKind, err error) {
	w.opt.Events.Event(mqttsec.Event{Time: w.opt.Clock(), Kind: kind, Source: PasswordsEventSource, File: w.path, Err: err})
}

func sameStamp(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// check reloads when the file differs from the last load (or the last
// failed attempt), or unconditionally when force is set.
func (w *Watcher) check(force bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !force {
		st, err := os.Stat(w.path)
		if err != nil || sameStamp(st, w.last) || sameStamp(st, w.lastErr) {
			return
		}
	}
	_ = w.reloadAndReport()
}

func (w *Watcher) run() {
	defer close(w.done)
	poll := time.NewTicker(w.opt.PollInterval)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w.fsw != nil {
		events, errs = w.fsw.Events, w.fsw.Errors
	}
	for {
		select {
		case <-w.stop:
			return
		case <-poll.C:
			w.check(false)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if filepath.Clean(ev.Name) == w.path {
				debounce.Reset(w.opt.Debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.event(mqttsec.EventError, fmt.Errorf("auth: watching %s: %w", w.path, err))
		case <-debounce.C:
			w.check(true)
		}
	}
}

// Close stops watching and waits for the goroutine to end. It is safe to
// call more than once.
func (w *Watcher) Close() error {
	var err error
	w.once.Do(func() {
		close(w.stop)
		<-w.done
		if w.fsw != nil {
			err = w.fsw.Close()
		}
	})
	return err
}
