package redisstore_test

import (
	"context"
	"log"
	"log/slog"

	"github.com/casbin/casbin/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/clientid"
	"github.com/mqttsec/mqttsec/ratelimit"
	"github.com/mqttsec/mqttsec/redisstore"
)

// One broker of a cluster: the client-ID registry, the kicks and the
// Casbin policy are shared through Redis. Every broker runs the same code.
func Example_cluster() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()

	events := mqttsec.SlogSink(slog.Default())
	node, err := redisstore.New(rdb, redisstore.Config{Events: events})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	// The policy lives in a database all brokers share: give the
	// enforcer that database's adapter. The watcher makes every broker
	// reload the policy when one of them changes it.
	enforcer, err := casbin.NewEnforcer(acl.NewModel() /* , adapter */)
	if err != nil {
		log.Fatal(err)
	}
	authz, err := acl.NewCasbin(enforcer, acl.WithWatcher(node.Watcher()))
	if err != nil {
		log.Fatal(err)
	}

	binding, err := clientid.NewBinding("{username}-*")
	if err != nil {
		log.Fatal(err)
	}

	// Bans and the limits on CONNECT attempts and failed logins are the
	// cluster's; the per-connection limits stay in memory.
	banStore := node.BanStore(redisstore.BanConfig{})
	bans := ratelimit.NewBans(ratelimit.BansConfig{Store: banStore})
	limiter, err := ratelimit.New(ratelimit.Config{Bans: bans, NewStore: node.NewStore(redisstore.RateConfig{}), Events: events})
	if err != nil {
		log.Fatal(err)
	}

	guard := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(context.Context, *mqttsec.Client, mqttsec.Credentials) (*mqttsec.Identity, error) {
			return nil, mqttsec.ErrBadCredentials // your authenticator
		}),
		Authorizer: authz,
		// Only the identity holding a client ID may take it over, on any
		// broker of the cluster; claims are refused (0x88) while Redis is
		// unreachable.
		Registry: clientid.Bound(node.Registry(redisstore.RegistryConfig{}), binding),
		// CONNECTs are refused (0x88) while this broker's copy of the
		// ban list may be stale.
		Limiter: banStore.Limiter(limiter),
		Events:  events,
	})
	node.Attach(guard) // takeovers, kicks and bans from other brokers end sessions here
	bans.Attach(guard) // a ban added here ends the sessions it covers here
	if err := banStore.Follow(bans); err != nil {
		log.Print(err) // Redis unreachable: CONNECTs wait for the list
	}

	// ... start the broker with the Guard (see package mochi) ...

	// An administrator bans mallory on every broker (and ends her
	// sessions), and ends alice's sessions on every broker.
	ctx := context.Background()
	if err := bans.Add(ctx, ratelimit.Ban{Kind: ratelimit.BanSubject, Value: "mallory", Reason: "abuse"}); err != nil {
		log.Print(err) // in force here; the other brokers get it when Redis answers
	}
	if _, err := node.Kick(ctx, redisstore.Subject("alice"), mqttsec.CodeAdministrativeAction); err != nil {
		log.Print(err) // Redis unreachable: the other brokers did not get it
	}
}
