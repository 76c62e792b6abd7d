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
	guard := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(context.Context, *mqttsec.Client, mqttsec.Credentials) (*mqttsec.Identity, error) {
			return nil, mqttsec.ErrBadCredentials // your authenticator
		}),
		Authorizer: authz,
		// Only the identity holding a client ID may take it over, on any
		// broker of the cluster; claims are refused (0x88) while Redis is
		// unreachable.
		Registry: clientid.Bound(node.Registry(redisstore.RegistryConfig{}), binding),
		Events:   events,
	})
	node.Attach(guard) // takeovers and kicks from other brokers end sessions here

	// ... start the broker with the Guard (see package mochi) ...

	// An administrator ends alice's sessions on every broker.
	if _, err := node.Kick(context.Background(), redisstore.Subject("alice"), mqttsec.CodeAdministrativeAction); err != nil {
		log.Print(err) // Redis unreachable: the other brokers did not get it
	}
}
