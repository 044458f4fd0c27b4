-- KEYS: sealed, record, judge state, judge state's etag, look-ahead log.
-- ARGV: first log position to read, the etag of the judge state the caller keeps, and '1' when
-- it keeps one (a state saved before etags, or none at all, has the etag '').
-- An interim check's reads in one step: {1} when the window is sealed, {0} when the record is
-- gone, else {0, record, etag, state, pushed...}. The state is sent only when its etag is not
-- the caller's (a state of hundreds of KB, every few seconds per rollout, was most of a look);
-- then it is '' (none saved), or the state itself.
if redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
local record = redis.call('GET', KEYS[2])
if not record then return {0} end
local etag = redis.call('GET', KEYS[4]) or ''
local state = ''
if ARGV[3] ~= '1' or etag ~= ARGV[2] then state = redis.call('GET', KEYS[3]) or '' end
local out = {0, record, etag, state}
for _, p in ipairs(redis.call('LRANGE', KEYS[5], tonumber(ARGV[1]), -1)) do out[#out + 1] = p end
return out
