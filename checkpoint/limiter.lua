-- A fleet-wide sliding-window rate limit (checkpoint/limiter.py): one log of reservations per limit,
-- each with a time (the score) and a cost in units (tokens; 0 for a limit on requests alone).
-- KEYS[1]: the log (sorted set, id -> time); KEYS[2]: the costs (hash, id -> units);
-- KEYS[3]: blocked until (a provider's 429 with Retry-After), a time; KEYS[4]: the next free turn of
-- a caller turned away (a time): each one turned away is given its own turn, one interval (window /
-- limit) after the last one given, so deferred steps come back spread at the rate the limit allows
-- instead of all at the moment the oldest reservation leaves the window.
-- ARGV[1]: the operation: reserve | settle | block | usage. Times come from Redis's own clock, so
-- every worker shares one clock. Numbers are returned as strings (Lua numbers would be truncated).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local op = ARGV[1]

local function expire(window)
  local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if #old > 0 then
    redis.call('HDEL', KEYS[2], unpack(old))
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  end
end

local function turn(wait, interval, window)
  -- The caller's turn: when room frees (now + wait), or after the turns already given, if later.
  local nxt = tonumber(redis.call('GET', KEYS[4]) or '0')
  local due = math.max(now + wait, nxt)
  redis.call('SET', KEYS[4], tostring(due + interval), 'PX', math.ceil((due + interval - now + window) * 1000))
  return tostring(due - now)
end

local function used()
  local total = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[2])) do total = total + tonumber(v) end
  return total
end

if op == 'reserve' then
  -- ARGV: window, request limit (0: none), unit limit (0: none), units, id
  local window, rlim, ulim, units, id = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
  local blocked = tonumber(redis.call('GET', KEYS[3]) or '0')
  if blocked > now then return {'0', 'blocked', tostring(blocked - now)} end
  expire(window)
  if rlim > 0 and redis.call('ZCARD', KEYS[1]) >= rlim then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {'0', 'requests', turn(tonumber(first[2]) + window - now, window / rlim, window)}
  end
  if ulim > 0 then
    if units > ulim then units = ulim end
    local total = used()
    if total + units > ulim then
      -- How long until enough of the oldest reservations leave the window.
      local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
      local freed, wait = 0, window
      for i = 1, #entries, 2 do
        freed = freed + tonumber(redis.call('HGET', KEYS[2], entries[i]) or '0')
        if total - freed + units <= ulim then wait = tonumber(entries[i + 1]) + window - now; break end
      end
      return {'0', 'units', turn(wait, window * units / ulim, window)}
    end
  end
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('HSET', KEYS[2], id, units)
  local ttl = math.ceil(window * 2000)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  return {'1', 'ok', '0'}
elseif op == 'settle' then
  -- ARGV: id, units. The reservation's real cost, counted from now (the provider saw the request
  -- after the reservation was made: restamping keeps this log at least as strict as the provider's).
  local id, units = ARGV[2], tonumber(ARGV[3])
  if redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], now, id)
    redis.call('HSET', KEYS[2], id, units)
  end
  return {'1', 'ok', '0'}
elseif op == 'block' then
  -- ARGV: seconds. Nobody reserves until then (the longest block wins).
  local untilt = now + tonumber(ARGV[2])
  local blocked = tonumber(redis.call('GET', KEYS[3]) or '0')
  if untilt > blocked then
    redis.call('SET', KEYS[3], tostring(untilt), 'PX', math.ceil(tonumber(ARGV[2]) * 1000) + 1000)
  end
  return {'1', 'ok', '0'}
else
  -- usage: ARGV: window. Requests and units in the window now, and seconds still blocked.
  expire(tonumber(ARGV[2]))
  local blocked = tonumber(redis.call('GET', KEYS[3]) or '0')
  return {tostring(redis.call('ZCARD', KEYS[1])), tostring(used()), tostring(math.max(blocked - now, 0))}
end
