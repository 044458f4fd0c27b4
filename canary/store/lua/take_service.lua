-- KEYS: service. ARGV: new holder, the holder it may replace ('' for none).
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[2] and cur ~= ARGV[1] then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return false
