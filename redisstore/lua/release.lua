-- Releases a lease on the binding of one client ID (see claim.lua).
--
-- KEYS[1]  the binding
-- ARGV[1]  owner   ARGV[2]  token   ARGV[3]  keep, ms (0: the session ends)
-- ARGV[4]  the lease's seq
--
-- With keep > 0 the binding stays with the owner for keep (the broker
-- keeps the session), even when Redis lost the binding meanwhile (a
-- restart): nothing a node holds is lost. A binding another owner holds is
-- left alone. Returns 1 when the binding was changed, 0 otherwise.
local key = KEYS[1]
local owner, tok, keep, seq = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('HGET', key, 'o')
if not cur then
  if keep > 0 then
    local d = string.format('%d', now + keep)
    redis.call('HSET', key, 'o', owner, 'n', seq, 'k:' .. tok, d)
    redis.call('PEXPIREAT', key, d)
    return 1
  end
  return 0
end
if cur ~= owner then
  return 0
end
redis.call('HDEL', key, 'l:' .. tok)
if keep > 0 then
  redis.call('HSET', key, 'k:' .. tok, string.format('%d', now + keep))
end
local m = 0
local h = redis.call('HGETALL', key)
for i = 1, #h, 2 do
  local f, v = h[i], h[i + 1]
  local p = string.sub(f, 1, 2)
  if p == 'l:' or p == 'k:' then
    local d = tonumber(string.match(v, '^(%d+)'))
    if d ~= nil and d > now then
      if d > m then m = d end
    else
      redis.call('HDEL', key, f)
    end
  end
end
if m == 0 then
  redis.call('DEL', key)
else
  redis.call('PEXPIREAT', key, string.format('%d', m))
end
return 1
