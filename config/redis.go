package config

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/clientid"
	"github.com/mqttsec/mqttsec/ratelimit"
	"github.com/mqttsec/mqttsec/redisstore"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// openRedis connects to the cluster's Redis and starts this broker's
// redisstore.Node. ctx bounds the first connection.
func (r *Runtime) openRedis(ctx context.Context) error {
	f, c := r.f, r.f.Redis
	if c == nil {
		return nil
	}
	opts := &redis.Options{Addr: c.Address, Username: c.Username, DB: c.DB}
	if c.PasswordFile != "" {
		data, err := os.ReadFile(f.Path(c.PasswordFile))
		if err != nil {
			return f.errAt(wrapf(ErrFile, "%w", err), "redis", "password_file")
		}
		opts.Password, _, _ = strings.Cut(string(data), "\n")
		opts.Password = strings.TrimSuffix(opts.Password, "\r")
	}
	if t := c.TLS; t != nil {
		tc, err := tlsconf.Config{CAFile: f.Path(t.CAFile), CertFile: f.Path(t.CertFile), KeyFile: f.Path(t.KeyFile),
			ServerName: t.ServerName, ALPN: []string{"redis"}}.Client()
		if err != nil {
			return f.errAt(wrapf(ErrFile, "%w", err), "redis", "tls")
		}
		opts.TLSConfig = tc
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return f.errAt(wrapf(ErrInvalid, "Redis at %q: %w", c.Address, err), "redis", "address")
	}
	node, err := redisstore.New(rdb, redisstore.Config{Prefix: c.Prefix, Events: r.g, Timeout: c.Timeout})
	if err != nil {
		_ = rdb.Close()
		return f.errAt(wrapf(ErrInvalid, "%w", err), "redis")
	}
	r.rdb, r.node = rdb, node
	return nil
}

// redisRegistry returns the cluster-wide registry.
func (r *Runtime) redisRegistry(takeover clientid.Takeover) mqttsec.Registry {
	c := r.f.Redis
	return r.node.Registry(redisstore.RegistryConfig{Takeover: takeover, LeaseTTL: c.LeaseTTL,
		MaxKeep: r.f.maxSessionExpiry(), InsecureFailOpen: c.InsecureFailOpen})
}

// redisRates sets the cluster's ban list and rate stores on cfg, and
// returns the ban store.
func (r *Runtime) redisRates(cfg *ratelimit.Config) *redisstore.BanStore {
	c := r.f.Redis
	bans := r.node.BanStore(redisstore.BanConfig{InsecureFailOpen: c.InsecureFailOpen})
	cfg.Bans = ratelimit.NewBans(ratelimit.BansConfig{Store: bans})
	cfg.NewStore = r.node.NewStore(redisstore.RateConfig{FailClosed: c.RateFailClosed})
	return bans
}

// attachRedis lets the cluster's kicks, takeovers and bans reach this
// broker's Guard.
//
// It then waits (at most readyWait, or until ctx ends) until this broker
// receives what the others publish and holds the cluster's current ban
// list: until then its Limiter refuses CONNECTs with 0x88.
func (r *Runtime) attachRedis(ctx context.Context) error {
	if r.node == nil {
		return nil
	}
	r.node.Attach(r.g)
	if err := r.banStore.Follow(r.limiter.Bans()); err != nil {
		return r.f.errAt(wrapf(ErrInvalid, "ban list: %w", err), "redis")
	}
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	err := r.node.Ready(ctx)
	for err == nil && !r.banStore.Fresh() {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err != nil {
		r.log.Warn("the cluster's state is not current yet: CONNECTs are refused (0x88) until it is", "error", err)
	}
	return nil
}

// readyWait bounds how long Open waits for the cluster's state.
const readyWait = 10 * time.Second

func (r *Runtime) closeRedis() error {
	if r.node == nil {
		return nil
	}
	return errors.Join(r.node.Close(), r.rdb.Close())
}
