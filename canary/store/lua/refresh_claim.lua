-- KEYS: claim. ARGV: owner, ttl (ms). Extends the claim only while owner still holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
