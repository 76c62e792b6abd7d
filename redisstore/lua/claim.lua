-- Claims, or re-asserts, a lease on the binding of one client ID.
--
-- KEYS[1]  the binding, a hash:
--            o          the owner: "<length of method>:<method><subject>"
--            n          the last claim's sequence number
--            l:<token>  a live lease: "<deadline ms> <seq>"
--            k:<token>  a session kept after its lease: "<deadline ms>"
--          Fields past their deadline are dropped on every touch, and the
--          key expires with its last deadline.
-- ARGV[1]  owner          ARGV[2]  token ("<node>.<counter>")
-- ARGV[3]  takeover mode: 0 owner, 1 deny, 2 allow
-- ARGV[4]  lease TTL, ms  ARGV[5]  most live leases of one ID
-- ARGV[6]  seq of the lease to re-assert (a refresh); 0 for a new claim
-- ARGV[7]  kick channel   ARGV[8]  kick reason code (decimal)
--
-- Returns {status, seq, resume, by}: status "ok", "taken" (a live lease
-- refuses the claim), "owned" (a kept session of another owner), "full",
-- or, for a refresh, "lost" (the lease was taken over; by is the token
-- that took it, if known).
local key = KEYS[1]
local owner, tok, mode = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ttl, maxl, rseq = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local chan, code = ARGV[7], ARGV[8]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local cur, nseq, mine = false, 0, nil
local live, kept = {}, {}
local h = redis.call('HGETALL', key)
for i = 1, #h, 2 do
  local f, v = h[i], h[i + 1]
  local p = string.sub(f, 1, 2)
  if f == 'o' then
    cur = v
  elseif f == 'n' then
    nseq = tonumber(v) or 0
  elseif p == 'l:' then
    local d, s = string.match(v, '^(%d+) (%d+)$')
    d, s = tonumber(d), tonumber(s)
    if d ~= nil and s ~= nil and d > now then
      if string.sub(f, 3) == tok then
        mine = s
      else
        live[#live + 1] = {string.sub(f, 3), d, s}
      end
    else
      redis.call('HDEL', key, f)
    end
  elseif p == 'k:' then
    local d = tonumber(v)
    if d ~= nil and d > now then
      kept[#kept + 1] = {string.sub(f, 3), d}
    else
      redis.call('HDEL', key, f)
    end
  end
end
if cur and mine == nil and #live == 0 and #kept == 0 then
  -- Nothing holds the binding any more.
  cur = false
  redis.call('DEL', key)
end

local function nodeof(tk)
  return string.match(tk, '^([^.]*)%.') or ''
end
local self = nodeof(tok)
-- kick tells the node holding lease tk to end its session. A node's own
-- broker handles a takeover on itself.
local function kick(tk)
  local nd = nodeof(tk)
  if nd ~= self then
    redis.call('PUBLISH', chan, '1|lease|' .. code .. '|' .. self .. '|' .. nd .. '|' .. tk)
  end
end

local resume, seq = 0, 0
if rseq > 0 then
  -- A refresh: the lease holds while its owner holds the ID and no newer
  -- claim took over.
  if cur and cur ~= owner then
    return {'lost', 0, 0, ''}
  end
  if mine == nil then
    if #live > 0 then
      return {'lost', 0, 0, live[1][1]}
    end
  else
    for _, l in ipairs(live) do
      if l[3] > mine then
        return {'lost', 0, 0, l[1]}
      end
    end
  end
  seq = rseq
  if seq > nseq then
    redis.call('HSET', key, 'n', seq)
  end
else
  if cur then
    if mode == 1 and #live > 0 then
      return {'taken', 0, 0, ''}
    end
    if cur == owner then
      if #live >= maxl then
        return {'full', 0, 0, ''}
      end
      resume = 1
      -- The newest connection of an identity takes over its older ones
      -- and ends its sessions kept elsewhere.
      for _, l in ipairs(live) do
        kick(l[1])
      end
      for _, k in ipairs(kept) do
        kick(k[1])
        redis.call('HDEL', key, 'k:' .. k[1])
      end
      kept = {}
    elseif mode == 2 then
      for _, l in ipairs(live) do
        kick(l[1])
        redis.call('HDEL', key, 'l:' .. l[1])
      end
      for _, k in ipairs(kept) do
        kick(k[1])
        redis.call('HDEL', key, 'k:' .. k[1])
      end
      live, kept = {}, {}
    elseif #live > 0 then
      return {'taken', 0, 0, ''}
    else
      return {'owned', 0, 0, ''}
    end
  end
  seq = nseq + 1
  redis.call('HSET', key, 'n', seq)
end
local d = now + ttl
redis.call('HSET', key, 'o', owner, 'l:' .. tok, string.format('%d %d', d, seq))
local m = d
for _, l in ipairs(live) do
  if l[2] > m then m = l[2] end
end
for _, k in ipairs(kept) do
  if k[2] > m then m = k[2] end
end
redis.call('PEXPIREAT', key, string.format('%d', m))
return {'ok', seq, resume, ''}
