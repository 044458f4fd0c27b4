-- A window's judgement, written once: the decision, its event, and the stable results it adds
-- to the service's history. A window sealed but not saved as judged (its coordinator died
-- between the two) is judged again when its task comes back; that judgement must neither add
-- the stable results a second time nor tell the decision twice, and it applies the decision
-- the first one told, so that the events and the record agree.
-- KEYS: verdict, events, history keys... ARGV: ttl, decision JSON, event time, events cap,
-- history cap, then for each history key: how many values, the values.
-- Returns the earlier decision JSON when there was one (nothing written), else false.
local first = redis.call('GET', KEYS[1])
if first then return first end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*',
  'type', 'decision', 't', ARGV[3], 'data', ARGV[2])
local at = 6
for k = 3, #KEYS do
  local n = tonumber(ARGV[at])
  local values = {}
  for i = 1, n do values[i] = ARGV[at + i] end
  add_chunked('RPUSH', KEYS[k], values, 1)
  redis.call('LTRIM', KEYS[k], -tonumber(ARGV[5]), -1)
  at = at + n + 1
end
return false
