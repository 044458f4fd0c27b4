-- KEYS: the monitor's tick key. ARGV: interval (s), ttl (s). On Redis's clock, so that beats and
-- workers on hosts whose clocks disagree still agree. Mirrors canary.monitor.next_tick: returns the
-- new tick time when due (and stores it), else nil; ticks keep their cadence (last + interval)
-- unless a whole interval was skipped, so a slow tick does not make the series drift.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '')
local nxt
if last == nil or now - last >= 2 * interval or now < last - interval then
  nxt = now
elseif now - last >= interval then
  nxt = last + interval
else
  return nil
end
local value = string.format('%.6f', nxt)
redis.call('SET', KEYS[1], value, 'EX', ARGV[2])
return value
