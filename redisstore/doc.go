// Package redisstore shares a broker's security state across a cluster of
// brokers through Redis (github.com/redis/go-redis/v9).
package redisstore
