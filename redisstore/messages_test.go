package redisstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/redisstore"
)

// Malformed or oversized messages on the cluster's channels are ignored
// (and reported); they end no session and stop nothing.
func TestMalformedMessages(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	a := newMember(t, rdb, p, redisstore.RegistryConfig{})
	s, err := a.connect("dev1", "alice")
	require.NoError(t, err)
	ctx := context.Background()
	for _, m := range []string{
		"", "1", "1|client|152", "1|client|1|x||dev1", "1|bogus|152|x||dev1", "9|client|152|x||dev1",
		"1|client|152|x||" + strings.Repeat("d", 1<<18), // too long: ignored
	} {
		require.NoError(t, rdb.Publish(ctx, p+"kick", m).Err())
	}
	for _, m := range []string{"", "{", `{"v":2}`, "null"} {
		require.NoError(t, rdb.Publish(ctx, p+"policy", m).Err())
	}
	require.Eventually(t, func() bool { return a.ev.count(mqttsec.EventWarning, "redis") >= 9 }, 5*time.Second, 5*time.Millisecond,
		a.ev.dump())
	a.notKicked(t, s)

	// The node still applies a real kick.
	require.NoError(t, rdb.Publish(ctx, p+"kick", "1|client|152|elsewhere||dev1").Err())
	a.waitKicked(t, s, mqttsec.CodeAdministrativeAction)
}
