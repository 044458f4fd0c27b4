-- KEYS: batches, results, sealed, meta. ARGV: batch id, ttl, meta JSON (or ''), results...
-- Returns -1 when the window was already judged (the batch is refused, so a judged window never
-- changes), 0 when the batch was recorded before, else how many batches the window now has.
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
  redis.call('EXPIRE', KEYS[4], ARGV[2])
end
add_chunked('RPUSH', KEYS[2], ARGV, 4)
if #ARGV >= 4 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return redis.call('SCARD', KEYS[1])
