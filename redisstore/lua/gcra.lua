-- The generic cell rate algorithm on one key (see ratelimit.Rate): the key
-- holds the time, in microseconds of Redis's clock, at which the bucket is
-- full again, and expires then, so a full bucket costs no memory.
--
-- KEYS[1]  the bucket
-- ARGV[1]  emission interval T, µs (one token per T)
-- ARGV[2]  burst (the bucket's size)
-- ARGV[3]  n, the tokens asked for (0 only reports)
-- ARGV[4]  how far ahead of now the full time may run, µs, at least a
--          full bucket's worth (bounds the key's TTL)
--
-- Returns {allowed (0/1), remaining tokens, retry after µs}.
local key = KEYS[1]
local T, burst, n, maxdebt = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tau = burst * T
local tat = tonumber(redis.call('GET', key) or '0') or 0
if tat < now then
  tat = now
end
local need = math.min(n, burst) * T
local late = tat - now - (tau - need)
if late > 0 then
  return {0, math.floor(math.max(0, now + tau - tat) / T), late}
end
if n == 0 then
  return {1, math.floor((now + tau - tat) / T), 0}
end
local newtat = math.min(tat + n * T, now + math.max(maxdebt, tau))
redis.call('SET', key, string.format('%d', newtat), 'PXAT', string.format('%d', math.ceil(newtat / 1000)))
return {1, math.floor(math.max(0, now + tau - newtat) / T), 0}
