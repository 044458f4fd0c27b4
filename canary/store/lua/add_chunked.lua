-- Prepended to the scripts that add many values in one call (see USES in base.py): unpack() is
-- bounded by Lua's C stack, so list[first..] goes to ``cmd key`` a thousand values at a time.
local function add_chunked(cmd, key, list, first)
  local i = first
  while i <= #list do
    local j = math.min(i + 999, #list)
    redis.call(cmd, key, unpack(list, i, j))
    i = j + 1
  end
end
