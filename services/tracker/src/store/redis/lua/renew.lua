-- ARGV: prefix, id, secret hash, now, new exp.
local err = authorize(ARGV[2], ARGV[3], tonumber(ARGV[4]))
if err then
  return err
end
redis.call("HSET", P .. "peer:" .. ARGV[2], "exp", ARGV[5])
redis.call("ZADD", P .. "leases", ARGV[5], ARGV[2])
return "ok"
