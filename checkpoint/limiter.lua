-- A fleet-wide sliding-window rate limit (checkpoint/limiter.py): one log of reservations per limit,
-- each with a time (the score) and a cost in units (tokens; 0 for a limit on requests alone).
-- KEYS[1]: the log (sorted set, entry -> time); KEYS[2]: the costs (hash, entry -> units);
-- KEYS[3]: blocked until (a provider's 429 with Retry-After), a time;
-- KEYS[4]: the turns (sorted set, caller -> due time) of callers turned away, and KEYS[5] why.
-- A caller turned away gets a turn one interval (window / limit) after the last turn given, so the
-- steps deferred come back spread at the rate the limit allows, not all at once; while turns are
-- given out, a newcomer joins the end of the line instead of taking the room a turn-holder waits for.
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
  -- Turn-holders a window late never came back (their run ended): their turns lapse.
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window)
end

local function used()
  local total = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[2])) do total = total + tonumber(v) end
  return total
end

local function give_turn(caller, kind, wait, interval, window)
  local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
  local due = now + wait
  if #last > 0 and tonumber(last[2]) + interval > due then due = tonumber(last[2]) + interval end
  redis.call('ZADD', KEYS[4], due, caller)
  redis.call('SET', KEYS[5], kind)
  local ttl = math.ceil((due - now + window * 2) * 1000)
  redis.call('PEXPIRE', KEYS[4], ttl)
  redis.call('PEXPIRE', KEYS[5], ttl)
  return {'0', kind, tostring(due - now)}
end

if op == 'reserve' then
  -- ARGV: window, request limit (0: none), unit limit (0: none), units, caller (a step: its turn), entry
  local window, rlim, ulim, units = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local caller, entry = ARGV[6], ARGV[7]
  if ulim > 0 and units > ulim then units = ulim end
  local interval = (rlim > 0) and (window / rlim) or (window * units / ulim)
  local blocked = tonumber(redis.call('GET', KEYS[3]) or '0')
  if blocked > now then return {'0', 'blocked', tostring(blocked - now)} end
  expire(window)
  local mine = redis.call('ZSCORE', KEYS[4], caller)
  if mine then
    if tonumber(mine) > now + 0.01 then return {'0', redis.call('GET', KEYS[5]) or 'requests', tostring(tonumber(mine) - now)} end
    redis.call('ZREM', KEYS[4], caller)  -- its turn: it goes before any newcomer
  elseif redis.call('ZCARD', KEYS[4]) > 0 then
    return give_turn(caller, redis.call('GET', KEYS[5]) or 'requests', 0, interval, window)
  end
  if rlim > 0 and redis.call('ZCARD', KEYS[1]) >= rlim then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return give_turn(caller, 'requests', tonumber(first[2]) + window - now, interval, window)
  end
  if ulim > 0 then
    local total = used()
    if total + units > ulim then
      -- How long until enough of the oldest reservations leave the window.
      local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
      local freed, wait = 0, window
      for i = 1, #entries, 2 do
        freed = freed + tonumber(redis.call('HGET', KEYS[2], entries[i]) or '0')
        if total - freed + units <= ulim then wait = tonumber(entries[i + 1]) + window - now; break end
      end
      return give_turn(caller, 'units', wait, interval, window)
    end
  end
  redis.call('ZADD', KEYS[1], now, entry)
  redis.call('HSET', KEYS[2], entry, units)
  local ttl = math.ceil(window * 2000)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  return {'1', 'ok', '0'}
elseif op == 'settle' then
  -- ARGV: entry, units. The reservation's real cost, counted from now (the provider saw the request
  -- after the reservation was made: restamping keeps this log at least as strict as the provider's).
  local entry, units = ARGV[2], tonumber(ARGV[3])
  if redis.call('ZSCORE', KEYS[1], entry) then
    redis.call('ZADD', KEYS[1], now, entry)
    redis.call('HSET', KEYS[2], entry, units)
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
  -- usage: ARGV: window. Requests and units in the window now, seconds still blocked, turns given out.
  expire(tonumber(ARGV[2]))
  local blocked = tonumber(redis.call('GET', KEYS[3]) or '0')
  return {tostring(redis.call('ZCARD', KEYS[1])), tostring(used()), tostring(math.max(blocked - now, 0)),
          tostring(redis.call('ZCARD', KEYS[4]))}
end
