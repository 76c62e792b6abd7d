-- Checks the binding of a session a node keeps (see claim.lua), after the
-- node's subscription was broken and it may have missed a kick.
--
-- KEYS[1]  the binding
-- ARGV[1]  owner   ARGV[2]  token   ARGV[3]  keep left, ms   ARGV[4]  seq
--
-- Returns 1 when the binding is still the kept session's (written again
-- when Redis lost it), 0 when another claim took it: the node then
-- discards the kept session.
local key = KEYS[1]
local owner, tok, keep, seq = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local cur = redis.call('HGET', key, 'o')
if not cur then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local d = string.format('%d', now + keep)
  redis.call('HSET', key, 'o', owner, 'n', seq, 'k:' .. tok, d)
  redis.call('PEXPIREAT', key, d)
  return 1
end
if cur == owner and redis.call('HEXISTS', key, 'k:' .. tok) == 1 then
  return 1
end
return 0
