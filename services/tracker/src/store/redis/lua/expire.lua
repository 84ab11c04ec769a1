-- ARGV: prefix, id, now. Removes the peer only if its lease is still over: of several
-- trackers sweeping at once, exactly one gets "ok" for it.
local exp = redis.call("ZSCORE", P .. "leases", ARGV[2])
if exp and tonumber(exp) <= tonumber(ARGV[3]) then
  remove_peer(ARGV[2])
  return "ok"
end
return "kept"
