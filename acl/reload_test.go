package acl_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	fileadapter "github.com/casbin/casbin/v2/persist/file-adapter"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
)

// writeAtomic replaces path with content the way a careful writer does.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func TestWatchFileNoFailedCheckDuringSwap(t *testing.T) {
	for _, poll := range []bool{false, true} {
		t.Run(fmt.Sprintf("poll=%v", poll), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "policy.csv")
			base := "p, alice, a/#, read, allow\np, *, public/#, read, allow\n"
			writeAtomic(t, path, base)
			e, err := casbin.NewSyncedEnforcer(acl.NewModel(), fileadapter.NewAdapter(path))
			require.NoError(t, err)
			c, err := acl.NewCasbin(e)
			require.NoError(t, err)
			reloads := make(chan error, 100)
			opts := []acl.WatchOption{acl.WithDebounce(20 * time.Millisecond), acl.WithReloadHook(func(err error) { reloads <- err })}
			if poll {
				opts = append(opts, acl.WithPollInterval(10*time.Millisecond, true))
			}
			w, err := acl.WatchFile(e, path, opts...)
			require.NoError(t, err)
			defer w.Close()

			// Checkers run during every swap; alice's rule is in every
			// version of the file, so no check may fail.
			var failed, checks atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			cl := &mqttsec.Client{ID: "c1", Username: "alice"}
			bound := c.Bind(cl)
			for range 2 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						checks.Add(1)
						if bound.Authorize(context.Background(), cl, mqttsec.Receive, "a/b") != nil {
							failed.Add(1)
						}
					}
				})
			}
			const versions = 5
			for i := range versions {
				writeAtomic(t, path, base+strings.Repeat(fmt.Sprintf("p, user%d, t/%d, write, allow\n", i, i), 1))
				select {
				case err := <-reloads:
					require.NoError(t, err)
				case <-time.After(5 * time.Second):
					t.Fatal("no reload")
				}
				require.True(t, c.Allowed(fmt.Sprintf("user%d", i), "x", "write", fmt.Sprintf("t/%d", i)), "version %d loaded", i)
			}
			close(stop)
			wg.Wait()
			require.Zero(t, failed.Load(), "failed checks out of %d", checks.Load())
			require.Positive(t, checks.Load())

			// A broken file keeps the old policy and reports the error.
			writeAtomic(t, path, "p, alice, \"a/#, read\n")
			select {
			case err := <-reloads:
				require.Error(t, err)
			case <-time.After(5 * time.Second):
				t.Fatal("no reload")
			}
			require.True(t, c.Allowed("alice", "c1", "read", "a/b"))
			require.NoError(t, w.Close())
		})
	}
}

func TestWatchFileMosquitto(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acl_file")
	writeAtomic(t, path, "user alice\ntopic read a/#\n")
	e, err := casbin.NewEnforcer(acl.NewModel(), acl.MosquittoAdapter{Path: path})
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	reloads := make(chan error, 10)
	w, err := acl.WatchFile(e, path, acl.WithDebounce(20*time.Millisecond), acl.WithReloadHook(func(err error) { reloads <- err }))
	require.NoError(t, err)
	defer w.Close()
	require.False(t, c.Allowed("alice", "c", "write", "a/x"))
	writeAtomic(t, path, "user alice\ntopic readwrite a/#\n")
	select {
	case err := <-reloads:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("no reload")
	}
	require.True(t, c.Allowed("alice", "c", "write", "a/x"))
	// A syntax error names the line and keeps the old policy.
	writeAtomic(t, path, "user alice\ntopic sometimes a/#\n")
	select {
	case err := <-reloads:
		require.ErrorIs(t, err, acl.ErrSyntax)
		require.ErrorContains(t, err, "line 2")
	case <-time.After(5 * time.Second):
		t.Fatal("no reload")
	}
	require.True(t, c.Allowed("alice", "c", "write", "a/x"))
}

// Every reload reaches the event sink, a Guard included: a success as
// EventReload, a broken file as EventReloadFailed with its error, both
// naming the source and the file. The old policy stays in force.
func TestWatchFileEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	writeAtomic(t, path, "p, alice, a/#, read, allow\n")
	e, err := casbin.NewSyncedEnforcer(acl.NewModel(), fileadapter.NewAdapter(path))
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	events := make(chan mqttsec.Event, 20)
	guard := mqttsec.New(mqttsec.Config{Authorizer: c, Events: mqttsec.EventSinkFunc(func(ev mqttsec.Event) {
		if ev.Source == "acl" {
			events <- ev
		}
	})})
	w, err := acl.WatchFile(e, path, acl.WithDebounce(20*time.Millisecond), acl.WithEvents(guard))
	require.NoError(t, err)
	defer w.Close()
	next := func() mqttsec.Event {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no reload event")
			return mqttsec.Event{}
		}
	}

	writeAtomic(t, path, "p, bob, b/#, read, allow\n")
	ev := next()
	require.Equal(t, mqttsec.EventReload, ev.Kind)
	require.Equal(t, path, ev.File)
	require.NoError(t, ev.Err)
	require.False(t, ev.Time.IsZero())
	require.True(t, c.Allowed("bob", "c", "read", "b/1"))

	writeAtomic(t, path, "p, carol, \"c/#, read\n")
	ev = next()
	require.Equal(t, mqttsec.EventReloadFailed, ev.Kind)
	require.Equal(t, path, ev.File)
	require.Error(t, ev.Err)
	require.True(t, c.Allowed("bob", "c", "read", "b/1"), "the previous policy stays in force")
	require.False(t, c.Allowed("carol", "c", "read", "c/1"))
}

// Without WithEvents a failed reload is logged with slog.Default().
func TestWatchFileLogsByDefault(t *testing.T) {
	var mu sync.Mutex
	var buf strings.Builder
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	path := filepath.Join(t.TempDir(), "acl_file")
	writeAtomic(t, path, "user alice\ntopic read a/#\n")
	e, err := casbin.NewEnforcer(acl.NewModel(), acl.MosquittoAdapter{Path: path})
	require.NoError(t, err)
	w, err := acl.WatchFile(e, path, acl.WithDebounce(20*time.Millisecond))
	require.NoError(t, err)
	defer w.Close()
	writeAtomic(t, path, "user alice\ntopic sometimes a/#\n")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(buf.String(), "reload_failed") && strings.Contains(buf.String(), "line 2")
	}, 10*time.Second, 20*time.Millisecond, "the failed reload must be logged")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
