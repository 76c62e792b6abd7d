package acl_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/internal/testenv"
)

// TestMosquittoInterop loads the same acl_file into a real Mosquitto and
// into the Casbin authorizer and compares who receives and who may publish
// what. (SUBSCRIBE is not compared: Mosquitto's acl_file does not check it.)
func TestMosquittoInterop(t *testing.T) {
	aclFile, err := filepath.Abs("testdata/compare_acl_file")
	require.NoError(t, err)
	m := testenv.StartMosquitto(t, "allow_anonymous true", "acl_file "+aclFile)

	e, err := casbin.NewEnforcer(acl.NewModel(), acl.MosquittoAdapter{Path: aclFile})
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)

	type who struct{ user, client string }
	clients := []who{{"", "anon1"}, {"alice", "a1"}, {"bob", "b1"}}
	topics := []string{
		"public/news", "alice/x", "alice/secret/k", "shared/cmd", "shared/a/status",
		"shared/x", "bob/out", "devices/a1/t", "devices/b1/t", "devices/anon1/t",
		"devices/zz/t", "users/alice/inbox", "users/bob/inbox", "other",
	}
	dial := func(w who) *testbroker.Conn {
		conn, _, err := testbroker.Dial(t, m.Addr, testbroker.ClientOptions{ClientID: w.client, Username: w.user})
		require.NoError(t, err)
		return conn
	}
	// collect gathers messages until the sentinel on sync/CLIENT, which is
	// published after everything else, so that a slow delivery on a busy
	// machine is not taken for a denial.
	collect := func(t *testing.T, conn *testbroker.Conn, client string) map[string][]string {
		got := map[string][]string{}
		deadline := time.After(20 * time.Second)
		for {
			select {
			case msg := <-conn.Messages():
				if msg.Topic == "sync/"+client {
					return got
				}
				got[msg.Topic] = append(got[msg.Topic], string(msg.Payload))
			case <-deadline:
				t.Fatalf("no sentinel on sync/%s", client)
			}
		}
	}

	t.Run("read", func(t *testing.T) {
		subs := make([]*testbroker.Conn, len(clients))
		for i, w := range clients {
			subs[i] = dial(w)
			subs[i].Sub(t, "#", 1)
		}
		admin := dial(who{"admin", "adm-pub"})
		for _, tp := range topics {
			_, err := admin.Pub(t, tp, []byte("x"), 1)
			require.NoError(t, err)
		}
		for _, w := range clients {
			_, err := admin.Pub(t, "sync/"+w.client, []byte("x"), 1)
			require.NoError(t, err)
		}
		for i, w := range clients {
			got := collect(t, subs[i], w.client)
			for _, tp := range topics {
				_, mosq := got[tp]
				require.Equal(t, mosq, c.Allowed(w.user, w.client, "read", tp), "read %q by %+v: Mosquitto delivered = %v", tp, w, mosq)
			}
		}
	})

	t.Run("write", func(t *testing.T) {
		admin := dial(who{"admin", "adm-sub"})
		admin.Sub(t, "#", 1)
		for _, w := range clients {
			pub := dial(w)
			for _, tp := range topics {
				_, _ = pub.Pub(t, tp, []byte(w.client), 1)
			}
		}
		_, err := admin.Pub(t, "sync/adm-sub", []byte("x"), 1)
		require.NoError(t, err)
		got := collect(t, admin, "adm-sub")
		for _, w := range clients {
			for _, tp := range topics {
				mosq := slices.Contains(got[tp], w.client)
				require.Equal(t, mosq, c.Allowed(w.user, w.client, "write", tp), "write %q by %+v: Mosquitto accepted = %v", tp, w, mosq)
			}
		}
	})
	if t.Failed() {
		b, _ := os.ReadFile(filepath.Join(m.Dir, "mosquitto.log"))
		fmt.Println(string(b))
	}
}
