-- KEYS: sealed, batches, missing[, interim, results, lookahead]. ARGV: ttl, expected batch ids...
-- Seals the window and returns the batches recorded before the seal; the others are missing.
-- With the last three keys (an interim rollback cuts the window short), the look-ahead results
-- of the missing batches join the window's results, since those batches will now be refused:
-- every probe slot is then counted once, from its batch record or else from the look-ahead.
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
local recorded = redis.call('SMEMBERS', KEYS[2])
local have = {}
for _, b in ipairs(recorded) do have[b] = true end
local missing = {}
local absent = {}
for i = 2, #ARGV do
  if not have[ARGV[i]] then
    missing[#missing + 1] = ARGV[i]
    absent[ARGV[i]] = true
  end
end
redis.call('DEL', KEYS[3])
add_chunked('SADD', KEYS[3], missing, 1)
if #missing > 0 then redis.call('EXPIRE', KEYS[3], ARGV[1]) end
if #KEYS >= 6 then
  local entries = redis.call('HGETALL', KEYS[4])
  local kept = 0
  for i = 1, #entries - 1, 2 do
    -- result id: batch id, then the probe's index and version
    local batch = string.match(entries[i], '^(.*):[^:]*:[^:]*$')
    if batch and absent[batch] then
      redis.call('RPUSH', KEYS[5], entries[i + 1])
      kept = kept + 1
    end
  end
  if kept > 0 then redis.call('EXPIRE', KEYS[5], ARGV[1]) end
  redis.call('SET', KEYS[6], kept, 'EX', ARGV[1])
end
return recorded
