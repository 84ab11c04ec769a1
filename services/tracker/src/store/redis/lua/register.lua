-- ARGV: prefix, id, addr, secret hash, previous secret hash, now, exp, then per file:
-- name, size, sha256, lower-cased name, pieces_root.
local id, now, exp = ARGV[2], tonumber(ARGV[6]), ARGV[7]
local rec = redis.call("HMGET", P .. "peer:" .. id, "secret", "exp")
if rec[1] then
  local left = tonumber(rec[2]) - now
  if left > 0 and (ARGV[5] == "" or ARGV[5] ~= rec[1]) then
    return "taken:" .. string.format("%d", left)
  end
  remove_peer(id)
end
redis.call("HSET", P .. "peer:" .. id, "addr", ARGV[3], "secret", ARGV[4], "exp", exp)
redis.call("ZADD", P .. "leases", exp, id)
for i = 8, #ARGV, 5 do
  index_file(id, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
end
return "ok"
