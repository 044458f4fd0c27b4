-- KEYS: interim, sealed, log. ARGV: ttl, then result id and result JSON pairs.
-- Returns -1 when the window was already judged, else how many results were new: a probe slot's
-- id is the same in every delivery of its batch, so a re-run never adds it twice. A new result
-- is also appended to the log, so an interim check reads only what came since its last look.
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local new = 0
for i = 2, #ARGV - 1, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('RPUSH', KEYS[3], ARGV[i + 1])
    new = new + 1
  end
end
if #ARGV > 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[3], ARGV[1])
end
return new
