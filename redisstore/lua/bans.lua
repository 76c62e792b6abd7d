-- Applies a change to the cluster's ban list and tells the other nodes.
--
-- KEYS[1]  the ban list: a hash, field "<kind>|<value>", value
--          "<until, unix ms; 0: no end>|<reason>"
-- ARGV[1]  channel   ARGV[2]  message
-- ARGV[3]  number of bans to set, then as many field, value pairs, then
--          the fields to delete
--
-- Bans that ended are dropped; the key expires with the last ban's end
-- (a ban without an end keeps it). Returns the number of bans in force.
local key = KEYS[1]
local nset = tonumber(ARGV[3])
local i = 4
for _ = 1, nset do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', key, ARGV[i])
  i = i + 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HGETALL', key)
local last, forever, count = 0, false, 0
for j = 1, #h, 2 do
  local u = tonumber(string.match(h[j + 1], '^(%d+)|'))
  if u == nil or (u > 0 and u <= now) then
    redis.call('HDEL', key, h[j])
  else
    count = count + 1
    if u == 0 then
      forever = true
    elseif u > last then
      last = u
    end
  end
end
if count == 0 then
  redis.call('DEL', key)
elseif forever then
  redis.call('PERSIST', key)
else
  redis.call('PEXPIREAT', key, string.format('%d', last))
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return count
