-- Fencing: a coordinator whose lock expired while it stalled must not overwrite the newer
-- holder's writes, so a save carries its token and is refused when a larger one was stored.
-- The token saved last has its own key, so the check never decodes the record.
-- KEYS: record, saved fence, judge state, service, judge state's etag. ARGV: record JSON, fence,
-- ttl (0: keep for good), judge state JSON ('' leaves it as it is), rollout id.
-- The judge state's etag is the fence of the save that wrote it: a process that keeps the state
-- in memory uses its copy only while the etag is still the one it saved or read.
-- With a ttl (the rollout ended) the service is released when this rollout still holds it.
local saved = tonumber(redis.call('GET', KEYS[2]) or '0')
if saved > tonumber(ARGV[2]) then return 0 end
local ttl = tonumber(ARGV[3])
local function put(key, value)
  if ttl > 0 then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
end
put(KEYS[1], ARGV[1])
put(KEYS[2], ARGV[2])
if ARGV[4] ~= '' then
  put(KEYS[3], ARGV[4])
  put(KEYS[5], ARGV[2])
elseif ttl > 0 then
  redis.call('EXPIRE', KEYS[3], ttl)
  redis.call('EXPIRE', KEYS[5], ttl)
end
if ttl > 0 and redis.call('GET', KEYS[4]) == ARGV[5] then redis.call('DEL', KEYS[4]) end
return 1
