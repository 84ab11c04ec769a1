-- ARGV: prefix, id, secret hash, now, cap, number of added files, then per added file:
-- name, size, sha256, lower-cased name; then the removed names.
local id = ARGV[2]
local err = authorize(id, ARGV[3], tonumber(ARGV[4]))
if err then
  return err
end
local cap, nadd = tonumber(ARGV[5]), tonumber(ARGV[6])
local fk = P .. "files:" .. id
local first_removed = 7 + 4 * nadd
-- The count after the change, before anything is written.
local count = redis.call("HLEN", fk)
local gone = {}
for i = first_removed, #ARGV do
  local n = ARGV[i]
  if not gone[n] and redis.call("HEXISTS", fk, n) == 1 then
    gone[n] = true
    count = count - 1
  end
end
for i = 7, first_removed - 1, 4 do
  if gone[ARGV[i]] or redis.call("HEXISTS", fk, ARGV[i]) == 0 then
    count = count + 1
  end
end
if count > cap then
  return "overcap:" .. string.format("%d", count)
end
for i = first_removed, #ARGV do
  local v = redis.call("HGET", fk, ARGV[i])
  if v then
    unindex_file(id, ARGV[i], v)
  end
end
for i = 7, first_removed - 1, 4 do
  local v = redis.call("HGET", fk, ARGV[i])
  if v then
    unindex_file(id, ARGV[i], v)
  end
  index_file(id, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
end
return "ok:" .. string.format("%d", count)
