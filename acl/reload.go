package acl

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/fsnotify/fsnotify"

	"github.com/mqttsec/mqttsec"
)

// WatchOption configures [WatchFile].
type WatchOption func(*FileWatcher)

// WithPollInterval sets how often the file's size and modification time
// are polled (default 2s). Polling backs up file-system notifications, or,
// with force or when notifications are unavailable, replaces them.
func WithPollInterval(d time.Duration, force bool) WatchOption {
	return func(w *FileWatcher) { w.poll, w.forcePoll = d, force }
}

// WithDebounce sets how long the file must stay unchanged before it is
// reloaded (default 100ms), so a reload never reads a half-written file
// from a writer that writes in several steps.
func WithDebounce(d time.Duration) WatchOption { return func(w *FileWatcher) { w.debounce = d } }

// WithEvents reports every reload to sink: an [mqttsec.EventReload] on
// success and an [mqttsec.EventReloadFailed] with the error when the file
// does not load (the previous policy stays in force), both with Source
// "acl" and File the watched path. Give it the [mqttsec.Guard], which is an
// EventSink, so that policy reloads reach the same stream as every other
// security event. Without WithEvents, reloads are logged with
// slog.Default() ([mqttsec.SlogSink]): a broken policy file is never
// silent. This is the preferred way to observe reloads.
func WithEvents(sink mqttsec.EventSink) WatchOption {
	return func(w *FileWatcher) { w.events = sink }
}

// WithReloadHook sets a function called after every reload attempt with its
// error (nil on success), besides the event [WithEvents] describes. It must
// not block. Prefer WithEvents; the hook suits a test waiting for a reload.
func WithReloadHook(f func(error)) WatchOption { return func(w *FileWatcher) { w.hook = f } }

// FileWatcher reloads an enforcer's policy when its policy file changes.
// A reload calls e.LoadPolicy: with an enforcer watched by [NewCasbin], the
// new index is compiled beside the old one and swapped in atomically, so
// checks running during a reload see either the old policy or the new one
// and never fail because of the swap. A file that fails to load leaves the
// old policy in force and is reported (see [WithEvents]).
//
// Replace the file atomically (write a temporary file and rename it) for
// the best results; in-place writers are covered by the debounce.
//
// A FileWatcher runs one goroutine until Close. It is safe for concurrent
// use.
type FileWatcher struct {
	e         casbin.IEnforcer
	path      string
	poll      time.Duration
	forcePoll bool
	debounce  time.Duration
	hook      func(error)
	events    mqttsec.EventSink

	initial fileState
	fsw     *fsnotify.Watcher
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// WatchFile starts watching path (the file e's adapter loads) and reloads
// e's policy whenever it changes. It uses fsnotify on the file's folder
// (a symlink swap in that folder, as Kubernetes does, counts when the file
// it resolves to changed) and also polls the file's size and modification
// time.
func WatchFile(e casbin.IEnforcer, path string, opts ...WatchOption) (*FileWatcher, error) {
	if e == nil {
		return nil, errors.New("acl: nil enforcer")
	}
	w := &FileWatcher{e: e, path: filepath.Clean(path), poll: 2 * time.Second,
		debounce: 100 * time.Millisecond, stop: make(chan struct{}), done: make(chan struct{})}
	for _, o := range opts {
		o(w)
	}
	if w.events == nil {
		w.events = mqttsec.SlogSink(nil)
	}
	if _, err := os.Stat(w.path); err != nil {
		return nil, err
	}
	if !w.forcePoll {
		if fsw, err := fsnotify.NewWatcher(); err == nil {
			if err := fsw.Add(filepath.Dir(w.path)); err == nil {
				w.fsw = fsw
			} else {
				_ = fsw.Close()
			}
		}
	}
	w.initial = stat(w.path)
	go w.run()
	return w, nil
}

type fileState struct {
	size int64
	mod  time.Time
	ok   bool
}

func stat(path string) fileState {
	st, err := os.Stat(path)
	if err != nil {
		return fileState{}
	}
	return fileState{size: st.Size(), mod: st.ModTime(), ok: true}
}

func (w *FileWatcher) run() {
	defer close(w.done)
	var events chan fsnotify.Event
	var errs chan error
	var tick <-chan time.Time
	if w.fsw != nil {
		events, errs = w.fsw.Events, w.fsw.Errors
	}
	// Poll even with notifications: a watch can be lost (the folder
	// replaced, the watcher's queue overflowing) and a symlinked file can
	// change without an event that names it.
	t := time.NewTicker(w.poll)
	defer t.Stop()
	tick = t.C
	seen := w.initial
	var pending <-chan time.Time
	for {
		select {
		case <-w.stop:
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if filepath.Clean(ev.Name) == w.path {
				pending = time.After(w.debounce)
			} else if s := stat(w.path); s != seen {
				// Another name in the folder: Kubernetes swaps a
				// "..data" symlink the file points through.
				seen = s
				pending = time.After(w.debounce)
			}
		case <-errs:
		case <-tick:
			if s := stat(w.path); s != seen {
				seen = s
				pending = time.After(w.debounce)
			}
		case <-pending:
			pending = nil
			s := stat(w.path)
			if !s.ok {
				continue // removed for a moment by a rename: wait for it
			}
			time.Sleep(w.debounce / 4)
			if stat(w.path) != s {
				pending = time.After(w.debounce)
				continue
			}
			seen = s
			err := w.e.LoadPolicy()
			w.report(err)
		}
	}
}

// report sends the outcome of a reload to the event sink and the hook.
func (w *FileWatcher) report(err error) {
	ev := mqttsec.Event{Time: time.Now(), Kind: mqttsec.EventReload, Source: "acl", File: w.path}
	if err != nil {
		ev.Kind, ev.Err = mqttsec.EventReloadFailed, err
	}
	w.events.Event(ev)
	if w.hook != nil {
		w.hook(err)
	}
}

// Close stops watching. It waits for a reload in progress.
func (w *FileWatcher) Close() error {
	w.once.Do(func() {
		close(w.stop)
		<-w.done
		if w.fsw != nil {
			_ = w.fsw.Close()
		}
	})
	return nil
}
