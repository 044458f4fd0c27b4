-- KEYS: interim, sealed. ARGV: ttl, then result id and result JSON pairs.
-- Returns -1 when the window was already judged, else how many results were new: a probe slot's
-- id is the same in every delivery of its batch, so a re-run never adds it twice.
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local new = 0
for i = 2, #ARGV - 1, 2 do
  new = new + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
if #ARGV > 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return new
