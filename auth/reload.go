package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultPollInterval is how often a [Watcher] checks the file when no
// interval is given.
const DefaultPollInterval = 2 * time.Second

// WatchOptions configure [WatchPasswordFile]. The zero value watches with
// fsnotify and polls every DefaultPollInterval. The callbacks are called
// from the Watcher's goroutine, one at a time.
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
	// OnReload is called after each successful reload with the number of
	// users. It must not block.
	OnReload func(users int)
	// OnError is called when a changed file cannot be read or parsed; the
	// previous users stay in force. It must not block.
	OnError func(err error)
}

// Watcher reloads a password file into a [Passwords] when it changes. Each
// reload parses the whole file first and swaps it in atomically, so a
// malformed file never replaces a good one and unchanged users never fail
// during a reload. Write the file atomically (temporary file and rename, as
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
	w := &Watcher{path: filepath.Clean(path), p: p, opt: opt, stop: make(chan struct{}), done: make(chan struct{})}
	if err := w.Reload(); err != nil {
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

// Reload reads the file now and swaps it in; on error the previous users
// stay in force.
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reload()
}

func (w *Watcher) reload() error {
	st, err := os.Stat(w.path)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	f, err := LoadPasswordFile(w.path)
	if err != nil {
		w.lastErr = st
		return err
	}
	w.p.Replace(f)
	w.last, w.lastErr = st, nil
	if w.opt.OnReload != nil {
		w.opt.OnReload(f.Len())
	}
	return nil
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
	if err := w.reload(); err != nil && w.opt.OnError != nil {
		w.opt.OnError(err)
	}
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
			if w.opt.OnError != nil {
				w.opt.OnError(fmt.Errorf("auth: watching %s: %w", w.path, err))
			}
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
