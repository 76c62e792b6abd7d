package scan_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	mochiauth "github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/internal/testenv"
	"github.com/mqttsec/mqttsec/scan"
)

// TestMochiLedger scans a mochi-mqtt broker protected only by mochi's own
// auth ledger, with per-user topics: the scanner finds the two flaws
// mqttsec's Guard exists for, a will published where its sender may not
// publish (mochi #503) and a client-ID takeover across users (mochi #398),
// while the ACL itself holds for plain publishes.
func TestMochiLedger(t *testing.T) {
	t.Parallel()
	s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, s.AddHook(new(mochiauth.Hook), &mochiauth.Options{Ledger: &mochiauth.Ledger{
		Users: mochiauth.Users{
			"alice": {Username: "alice", Password: "alice-secret-pw"},
			"bob":   {Username: "bob", Password: "bob-secret-pw"},
		},
		ACL: mochiauth.ACLRules{
			{Username: "alice", Filters: mochiauth.Filters{"alice/#": mochiauth.ReadWrite}},
			{Username: "bob", Filters: mochiauth.Filters{"bob/#": mochiauth.ReadWrite, "alice/#": mochiauth.Deny}},
		},
	}}))
	addr := "127.0.0.1:" + itoa(testenv.FreePort(t))
	require.NoError(t, s.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})))
	require.NoError(t, s.Serve())
	t.Cleanup(func() {
		// mochi's Close races with connection goroutines that are still
		// starting; the scan has closed every connection, so wait for
		// them to be gone first.
		require.Eventually(t, func() bool { return s.Clients.Len() == 0 }, 10*time.Second, 10*time.Millisecond)
		_ = s.Close()
	})

	rep, err := scan.Run(context.Background(), "mqtt://"+addr, scan.Options{
		Principal:   scan.Credentials{Username: "alice", Password: []byte("alice-secret-pw")},
		Second:      &scan.Credentials{Username: "bob", Password: []byte("bob-secret-pw")},
		TopicPrefix: "alice/",
		Checks:      []string{"anonymous-connect", "publish-any-topic", "retained-poisoning", "will-acl-bypass", "clientid-takeover"},
	})
	require.NoError(t, err)
	requireStatus(t, rep, map[string]scan.Status{
		"anonymous-connect":  scan.Pass,
		"retained-poisoning": scan.Pass,
		"will-acl-bypass":    scan.Fail,
		"clientid-takeover":  scan.Fail,
	})
	f := byID(t, rep)
	require.Contains(t, f["will-acl-bypass"].Evidence, `user "bob" may not publish to "alice/mqttsec-scan-`)
}
