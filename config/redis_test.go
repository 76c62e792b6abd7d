package config_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/internal/testenv"
)

// needRedis returns the address of the Redis the tests share
// (MQTTSEC_REDIS, or 127.0.0.1:6379) and a key prefix of the test's own,
// whose keys are deleted when the test ends; it skips the test (fails it
// under CI=true) when no Redis answers.
func needRedis(t *testing.T) (addr, prefix string) {
	t.Helper()
	addr = os.Getenv("MQTTSEC_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		msg := fmt.Sprintf("redis does not answer on %s (%v); on Debian: apt-get install redis-server, or set MQTTSEC_REDIS", addr, err)
		if testenv.CI() {
			t.Fatal(msg + "; CI=true requires it")
		}
		t.Skip(msg)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix = "mqttsec-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if keys, _ := rdb.Keys(ctx, prefix+"*").Result(); len(keys) > 0 {
			_ = rdb.Del(ctx, keys...).Err()
		}
		_ = rdb.Close()
	})
	return addr, prefix
}

// TestOpenRedisCluster runs two brokers from the same file with a redis
// section: a client ID held on one broker cannot be taken by another user
// through the other, and failed logins are counted for the cluster.
func TestOpenRedisCluster(t *testing.T) {
	addr, prefix := needRedis(t)
	e := newEnv(t)
	doc := `listeners: [{address: "127.0.0.1:0"}]
auth: { password_file: passwd }
acl: { acl_file: aclfile }
ratelimit: { auth_failures: { max: 3 } }
redis: { address: "` + addr + `", prefix: "` + prefix + `" }
`
	_, a, _ := e.open(t, doc)
	_, b, _ := e.open(t, doc)

	alice, code := dial(t, a.Addr(0), "shared-1", "alice", nil)
	require.Zero(t, code)
	_, code = dial(t, b.Addr(0), "shared-1", "bob", nil)
	require.Equal(t, byte(0x85), code, "the ID is alice's on the other broker")
	code, err := alice.Pub(t, "devices/alice/x", []byte("x"), 1)
	require.NoError(t, err)
	require.Zero(t, code, "alice kept her connection")

	// Two failed logins on one broker and one on the other ban the address
	// on both.
	for i, srv := range []string{a.Addr(0), a.Addr(0), b.Addr(0)} {
		_, code := dial(t, srv, fmt.Sprintf("guess%d", i), "mallory", nil)
		require.Equal(t, byte(0x86), code)
	}
	require.Eventually(t, func() bool {
		_, ca := dial(t, a.Addr(0), "bob-a", "bob", nil)
		_, cb := dial(t, b.Addr(0), "bob-b", "bob", nil)
		return ca != 0 && cb != 0
	}, 10*time.Second, 50*time.Millisecond, "the address is slowed or banned on both brokers")
}
